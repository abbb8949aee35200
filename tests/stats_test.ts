import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Random } from "../lib/random.ts";
import {
  bootstrapInterval,
  formatMeanStd,
  kendallTau,
  meanStd,
  pearson,
  rank,
  spearman,
} from "../lib/stats.ts";
import { assertClose, fixturePath } from "./_assert.ts";

/** τ-b from its definition: Σ_{i<j} sign(x_i − x_j) sign(y_i − y_j) / sqrt(#pairs untied in x · #untied in y). */
function kendallBruteForce(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let sum = 0, untiedX = 0, untiedY = 0;
  for (let i = 0; i < x.length; i++) {
    for (let j = i + 1; j < x.length; j++) {
      sum += Math.sign(x[i] - x[j]) * Math.sign(y[i] - y[j]);
      if (x[i] !== x[j]) untiedX++;
      if (y[i] !== y[j]) untiedY++;
    }
  }
  return sum / Math.sqrt(untiedX * untiedY);
}

/** Average rank from its definition: 1 + #{j : v_j < v_i} + (#{j : v_j = v_i} − 1)/2. */
function naiveRanks(v: ArrayLike<number>): number[] {
  return Array.from(v, (vi) => {
    let below = 0, equal = 0;
    for (let j = 0; j < v.length; j++) {
      [below, equal] = [below + Number(v[j] < vi), equal + Number(v[j] === vi)];
    }
    return 1 + below + (equal - 1) / 2;
  });
}

/** r = (n Σxy − Σx Σy) / sqrt((n Σx² − (Σx)²)(n Σy² − (Σy)²)), the textbook one-pass form. */
function naivePearson(x: number[], y: number[]): number {
  const n = x.length, sum = (v: number[]) => v.reduce((a, b) => a + b, 0);
  const sxy = n * sum(x.map((xi, i) => xi * y[i])) - sum(x) * sum(y);
  return sxy /
    Math.sqrt((n * sum(x.map((v) => v * v)) - sum(x) ** 2) * (n * sum(y.map((v) => v * v)) - sum(y) ** 2));
}

/** Paired samples with a controllable number of distinct values (`levels` 0 = continuous) and some correlation. */
function tiedSample(n: number, levels: number, rng: Random): { x: Float64Array; y: Float64Array } {
  const draw = (v: number) => levels > 0 ? Math.floor(v * levels) : v;
  const x = new Float64Array(n), y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const u = rng.uniform();
    x[i] = draw(u);
    y[i] = draw((u + rng.uniform()) / 2);
  }
  return { x, y };
}

Deno.test("kendallTau() equals the O(n²) definition of τ-b on random data with ties", () => {
  const rng = new Random(7);
  for (const n of [2, 3, 10, 57, 200, 1000]) {
    for (const levels of [0, 2, 3, 10, 50]) {
      const { x, y } = tiedSample(n, levels, rng);
      const expected = kendallBruteForce(x, y);
      if (Number.isNaN(expected)) continue; // a constant draw at tiny n; covered by the NaN test below
      assertClose(kendallTau(x, y), expected, { atol: 1e-12, what: `τ-b n=${n} levels=${levels}` });
    }
  }
});

Deno.test("kendallTau() is NaN when a sample is constant, ±1 on monotone data, and handles ±Infinity", () => {
  assert.ok(Number.isNaN(kendallTau([3, 3, 3, 3], [3, 3, 3, 3])));
  assert.ok(Number.isNaN(kendallTau([1, 1, 1], [1, 2, 3])));
  assert.ok(Number.isNaN(kendallTau([1, 2, 3], [5, 5, 5])));
  assert.equal(kendallTau([1, 2, 3, 4], [10, 20, 30, 40]), 1);
  assert.equal(kendallTau([1, 2, 3, 4], [4, 3, 2, 1]), -1);
  // ±Infinity order like any other value: the same as finite stand-ins with the same order.
  const x = [-Infinity, 0, 1, Infinity, Infinity, 2], y = [0, 1, Infinity, 1, -Infinity, Infinity];
  const expected = kendallBruteForce([-9, 0, 1, 9, 9, 2], [0, 1, 9, 1, -9, 9]);
  assertClose(kendallTau(x, y), expected, { atol: 1e-15 });
  assertClose(spearman(x, y), spearman([-9, 0, 1, 9, 9, 2], [0, 1, 9, 1, -9, 9]), { atol: 1e-15 });
});

Deno.test("rank() gives average ranks and spearman() equals Pearson of naive average ranks", () => {
  assert.deepEqual(Array.from(rank([10, 30, 20, 30, 30, -1])), [2, 5, 3, 5, 5, 1]);
  const rng = new Random(11);
  for (const n of [2, 9, 100, 400]) {
    for (const levels of [0, 3, 20]) {
      const { x, y } = tiedSample(n, levels, rng);
      assert.deepEqual(Array.from(rank(x)), naiveRanks(x));
      const expected = naivePearson(naiveRanks(x), naiveRanks(y));
      if (Number.isNaN(expected)) continue;
      assertClose(spearman(x, y), expected, { atol: 1e-12, what: `ρ n=${n} levels=${levels}` });
    }
  }
});

Deno.test("spearman(), kendallTau(), pearson(), meanStd() and formatMeanStd() match hand values", () => {
  // x = [1, 2, 3], y = [1, 1, 2]: two concordant pairs, one tied in y → τ-b = 2/√(3·2); ranks of y 1.5, 1.5, 3.
  assertClose(kendallTau([1, 2, 3], [1, 1, 2]), 2 / Math.sqrt(6), { atol: 1e-15 });
  assertClose(spearman([1, 2, 3], [1, 1, 2]), Math.sqrt(3) / 2, { atol: 1e-15 });
  assertClose(pearson([1, 2, 3], [2, 4, 7]), 5 * Math.sqrt(3 / 76), { atol: 1e-15 });
  assert.ok(Number.isNaN(pearson([1, 2, 3], [4, 4, 4])));
  // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, Σ(x − x̄)² = 32, sample variance 32/7.
  const summary = meanStd(Float32Array.of(2, 4, 4, 4, 5, 5, 7, 9));
  assert.deepEqual(summary, { mean: 5, std: Math.sqrt(32 / 7), n: 8 });
  assert.equal(formatMeanStd({ mean: 0.812, std: 0.0041 }, { scale: 100 }), "81.2 ± 0.4");
  assert.equal(formatMeanStd(summary, { digits: 2 }), "5.00 ± 2.14");
});

Deno.test("spearman() and kendallTau() reproduce loo_rank_agreement of the influence fixtures to 1e-12", (t) => {
  const dir = fixturePath("influence");
  if (!dir) return void t.step({ name: "fixtures absent", ignore: true, fn: () => {} });
  const files = readdirSync(dir).filter((f) => f.endsWith(".json"));
  assert.ok(files.length > 0, `no *.json in ${dir}`);
  for (const file of files) {
    const fixture = JSON.parse(readFileSync(join(dir, file), "utf8"));
    const predicted: number[] = fixture.loo_predicted_change, actual: number[] = fixture.loo_actual_change;
    const expected = fixture.loo_rank_agreement;
    assertClose(spearman(predicted, actual), expected.spearman_rho, { atol: 1e-12, what: `${file} ρ` });
    assertClose(kendallTau(predicted, actual), expected.kendall_tau_b, { atol: 1e-12, what: `${file} τ-b` });
    assertClose(pearson(predicted, actual), expected.pearson_r, { atol: 1e-12, what: `${file} r` });
  }
});

Deno.test("bootstrapInterval() is deterministic by seed and covers the mean at about its level", () => {
  const rng = new Random(3);
  const mean = (s: Float64Array) => s.reduce((a, b) => a + b, 0) / s.length;
  const values = Float64Array.from({ length: 40 }, () => rng.normal());
  const a = bootstrapInterval(values, mean, { resamples: 500, seed: 5 });
  assert.deepEqual(bootstrapInterval(values, mean, { resamples: 500, seed: 5 }), a);
  assert.notDeepEqual(bootstrapInterval(values, mean, { resamples: 500, seed: 6 }), a);
  assert.equal(a.estimate, mean(values));
  assert.ok(a.low < a.estimate && a.estimate < a.high, JSON.stringify(a));
  // Percentile interval of the mean of 40 N(0, 1) draws: width ≈ 2·1.96/√40 ≈ 0.62, true mean 0 covered ≈ 93%.
  let covered = 0, width = 0;
  const trials = 200;
  for (let trial = 0; trial < trials; trial++) {
    const sample = Float64Array.from({ length: 40 }, () => rng.normal());
    const { low, high } = bootstrapInterval(sample, mean, { resamples: 400, level: 0.95, seed: trial });
    covered += Number(low <= 0 && 0 <= high);
    width += (high - low) / trials;
  }
  assert.ok(covered / trials > 0.85 && covered / trials < 0.99, `coverage ${covered / trials}`);
  assertClose(width, 2 * 1.96 / Math.sqrt(40), { rtol: 0.1, what: "mean interval width" });
});

Deno.test("stats functions throw RangeError on mismatched lengths, n < 2, NaN and bad bootstrap options", () => {
  assert.throws(() => spearman([1, 2, 3], [1, 2]), RangeError);
  assert.throws(() => kendallTau([1], [1]), RangeError);
  assert.throws(() => pearson([1, NaN], [1, 2]), /index 1 is NaN/);
  assert.throws(() => meanStd([1]), RangeError);
  assert.throws(() => rank([]), RangeError);
  const mean = (s: Float64Array) => s[0];
  assert.throws(() => bootstrapInterval([1, 2], mean, { level: 1 }), RangeError);
  assert.throws(() => bootstrapInterval([1, 2], mean, { resamples: 1.5 }), RangeError);
  assert.throws(() => bootstrapInterval([1, 2], () => NaN), /NaN on resample 0/);
});
