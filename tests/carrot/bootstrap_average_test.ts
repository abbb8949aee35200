import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { bootstrapSelectionWeights } from "../../lib/carrot/bootstrap_average.ts";
import { carrotReweight } from "../../lib/carrot/carrot.ts";
import { CandidateScorer } from "../../lib/carrot/selection.ts";
import { gradedTrimAlpha, lossTrimAlpha } from "../../lib/carrot/trim.ts";
import { disposeHead } from "../../lib/carrot/head.ts";
import { assertClose, relMax } from "../_assert.ts";
import { assertScoredAlone, trimOptions, trimProblem } from "./_trim_candidates.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

/** π by enumerating every class-stratified resample (each class's n_k draws, n_k^n_k equally likely sequences). */
function exactWeights(losses: Float64Array[], labels: Int32Array): Float64Array {
  const classes = [...new Set(labels)].map((k) => [...labels.keys()].filter((j) => labels[j] === k));
  const pi = new Float64Array(losses.length);
  let total = 0;
  const walk = (c: number, counts: number[]) => {
    if (c === classes.length) {
      const sums = losses.map((l) => counts.reduce((s, n, j) => s + n * l[j], 0));
      pi[sums.indexOf(Math.min(...sums))]++; // indexOf: the earliest on ties
      total++;
      return;
    }
    const rows = classes[c], draws = rows.length ** rows.length;
    for (let sequence = 0; sequence < draws; sequence++) {
      const next = [...counts];
      for (let r = 0, s = sequence; r < rows.length; r++, s = Math.floor(s / rows.length)) {
        next[rows[s % rows.length]]++;
      }
      walk(c + 1, next);
    }
  };
  walk(0, labels.map(() => 0) as unknown as number[]);
  return pi.map((p) => p / total);
}

Deno.test("bootstrapSelectionWeights(): π matches the exact distribution over class-stratified resamples", () => {
  const labels = Int32Array.from([0, 1, 0, 1, 1, 2, 2]);
  const losses = [
    Float64Array.from([1.0, 0.2, 1.1, 0.9, 0.5, 0.7, 0.3]), // ERM
    Float64Array.from([0.6, 0.9, 0.8, 0.4, 0.6, 0.8, 0.2]),
    Float64Array.from([0.9, 0.3, 0.5, 0.8, 0.9, 0.1, 0.9]),
    Float64Array.from([0.6, 0.9, 0.8, 0.4, 0.6, 0.8, 0.2]), // a copy of candidate 1: ties go to the earliest
  ];
  const exact = exactWeights(losses, labels), replicates = 20000;
  assert.ok(exact[0] > 0.05 && exact[1] > 0.05 && exact[2] > 0.05, `a degenerate case: π ${exact}`);
  assert.equal(exact[3], 0);
  const pi = bootstrapSelectionWeights(losses, labels, { replicates, seed: 3 });
  assertClose(pi.reduce((s, p) => s + p, 0), 1, { rtol: 1e-12, what: "Σ π" });
  pi.forEach((p, c) => {
    const bound = 4 * Math.sqrt(exact[c] * (1 - exact[c]) / replicates) + 1e-12;
    assert.ok(Math.abs(p - exact[c]) <= bound, `π_${c} ${p} vs exact ${exact[c]} (4 s.e. ${bound})`);
  });
  assert.deepEqual(bootstrapSelectionWeights(losses, labels, { replicates, seed: 3 }), pi, "not seeded");
  // a candidate lower on every point wins every resample
  const dominant = losses.map((l, c) => c === 2 ? l.map((v) => v - 10) : l);
  assert.deepEqual([...bootstrapSelectionWeights(dominant, labels, { replicates: 50, seed: 0 })], [
    0,
    0,
    1,
    0,
  ]);
  assert.throws(() => bootstrapSelectionWeights(losses, labels, { replicates: 0, seed: 0 }), /replicates/);
  assert.throws(() => bootstrapSelectionWeights([], labels, { replicates: 5, seed: 0 }), /no candidates/);
  assert.throws(
    () => bootstrapSelectionWeights([losses[0].subarray(1)], labels, { replicates: 5, seed: 0 }),
    /candidate 0 has 6 losses for 7 labels/,
  );
});

Deno.test("carrotReweight(): bootstrapAverage refits at Σ π_c α_c over the candidates, with the fallback rule", async () => {
  const data = trimProblem(), before = tf.memory().numTensors, replicates = 400;
  const plain = await carrotReweight(data.train, data.val, { ...trimOptions, seed: 5 });
  const run = await carrotReweight(data.train, data.val, {
    ...trimOptions,
    bootstrapAverage: replicates,
    seed: 5,
  });
  // the candidates are the plain run's (ERM, trims at 10% and 30%, their graded mean); one row is appended
  const n = plain.selection.rows.length, labels = data.train.labels;
  assert.equal(n, 4);
  assert.deepEqual(run.selection.rows.slice(0, n), plain.selection.rows);
  assert.equal(run.selection.rows[n].label.weighting, "bootstrap mean");
  assert.equal(run.selection.best, n);
  const alphas = [
    new Float32Array(labels.length).fill(1),
    ...trimOptions.trimFractions.map((q) =>
      lossTrimAlpha(run.trimLosses!, labels, q, { keepClassMass: true })
    ),
    gradedTrimAlpha(run.trimLosses!, labels, trimOptions.trimFractions),
  ];
  // π from the candidates' per-point calibrated val losses, each refitted here
  const scorer = new CandidateScorer(data.train, data.val, { ...trimOptions, tol: 1e-8 });
  for (const alpha of alphas) await scorer.add({ alpha, label: {} });
  const pi = bootstrapSelectionWeights(scorer.pointLosses, data.val.labels, { replicates, seed: 5 });
  disposeHead((await scorer.finish()).fit);
  const weights = run.bootstrapWeights!;
  assert.ok(relMax(weights, pi) < 0.02, `π ${weights} vs recomputed ${pi}`);
  assert.ok(weights.filter((p) => p > 0).length >= 2, `one candidate took every resample: π ${weights}`);
  const mean = Float32Array.from(alphas[0], (_, i) => alphas.reduce((s, a, c) => s + weights[c] * a[i], 0));
  await assertScoredAlone(run, data, [n], [mean], trimOptions);
  assert.ok(relMax(run.alpha, run.selection.fallback ? alphas[0] : mean) < 1e-6, "α in use");
  assert.match(run.selection.reason, /^bootstrap-weighted mean α of the candidates \(400 class-stratified/);
  // a convex combination of mass-keeping weightings keeps every class's mass
  for (let c = 0; c < 8; c++) {
    const members = [...labels.keys()].filter((i) => labels[i] === c);
    assertClose(members.reduce((s, i) => s + run.alpha[i], 0), members.length, {
      rtol: 1e-4,
      what: `class ${c}`,
    });
  }
  await assert.rejects(
    carrotReweight(data.train, data.val, { ...trimOptions, bootstrapAverage: 1.5 }),
    /bootstrapAverage must be an integer ≥ 0, got 1.5/,
  );
  [plain.fit, run.fit].forEach(disposeHead);
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});
