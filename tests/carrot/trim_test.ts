import assert from "node:assert/strict";
import { gradedTrimAlpha, lossTrimAlpha } from "../../lib/carrot/trim.ts";

Deno.test("lossTrimAlpha(): drops the highest-loss fraction of every class, optionally keeping class mass", () => {
  // class 0: 10 points with losses 0..9; class 1: 5 points with losses 4, 3, 2, 1, 0 (interleaved)
  const labels = new Int32Array(15), losses = new Float64Array(15);
  for (let i = 0; i < 15; i++) {
    labels[i] = i % 3 === 2 ? 1 : 0;
  }
  let a = 0, b = 4;
  labels.forEach((c, i) => losses[i] = c === 0 ? a++ : b--);
  const plain = lossTrimAlpha(losses, labels, 0.2);
  labels.forEach((c, i) => {
    const dropped = c === 0 ? losses[i] >= 8 : losses[i] >= 4; // round(0.2·10) = 2, round(0.2·5) = 1
    assert.equal(plain[i], dropped ? 0 : 1, `point ${i} (class ${c}, loss ${losses[i]})`);
  });
  const kept = lossTrimAlpha(losses, labels, 0.2, { keepClassMass: true });
  for (const c of [0, 1]) {
    const mass = [...kept.keys()].filter((i) => labels[i] === c).reduce((s, i) => s + kept[i], 0);
    assert.ok(Math.abs(mass - (c === 0 ? 10 : 5)) < 1e-5, `class ${c} mass ${mass}`);
  }
  assert.deepEqual(lossTrimAlpha(losses, labels, 0), new Float32Array(15).fill(1));
  assert.throws(() => lossTrimAlpha(losses, labels, 1), /fraction must lie in \[0, 1\)/);
  assert.throws(() => lossTrimAlpha(losses.subarray(1), labels, 0.1), /14 losses for 15 labels/);
});

Deno.test("gradedTrimAlpha(): the mean of the mass-keeping trims; weights fall in steps with the loss rank", () => {
  // class 0: 10 points, losses 9..0 (point i has loss 9 − i); class 1: 5 points, losses 0..4
  const labels = Int32Array.from({ length: 15 }, (_, i) => i < 10 ? 0 : 1);
  const losses = Float64Array.from(labels, (c, i) => c === 0 ? 9 - i : i - 10);
  const fractions = [0.1, 0.2, 0.3];
  const graded = gradedTrimAlpha(losses, labels, fractions);
  const trims = fractions.map((q) => lossTrimAlpha(losses, labels, q, { keepClassMass: true }));
  const mean = Float32Array.from(labels, (_, i) => trims.reduce((s, t) => s + t[i], 0) / 3);
  assert.deepEqual(graded, mean);
  // class 0 drops 1, 2, 3 points at q = 0.1, 0.2, 0.3, keeping the rest at 10/9, 10/8, 10/7
  const expected0 = [0, 10 / 9 / 3, (10 / 9 + 10 / 8) / 3, ...Array(7).fill((10 / 9 + 10 / 8 + 10 / 7) / 3)];
  expected0.forEach((a, i) => assert.ok(Math.abs(graded[i] - a) < 1e-6, `point ${i}: ${graded[i]} vs ${a}`));
  // class 1 (5 points) drops Math.round(q · 5) points: 1, 1, 2 (round half up)
  const drops = fractions.map((q) => Math.round(q * 5));
  for (let r = 0; r < 5; r++) {
    const i = 14 - r; // rank r by loss (highest first)
    const a = drops.reduce((s, k) => s + (r < k ? 0 : 5 / (5 - k)), 0) / 3;
    assert.ok(Math.abs(graded[i] - a) < 1e-6, `class 1, rank ${r}: ${graded[i]} vs ${a}`);
  }
  for (const c of [0, 1]) {
    const mass: number = [...graded.keys()].filter((i) => labels[i] === c).reduce((s, i) => s + graded[i], 0);
    assert.ok(Math.abs(mass - (c === 0 ? 10 : 5)) < 1e-5, `class ${c} mass ${mass}`);
  }
  assert.throws(() => gradedTrimAlpha(losses, labels, []), /fractions is empty/);
});
