import assert from "node:assert/strict";
import { lossTrimAlpha } from "../../lib/carrot/trim.ts";

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
