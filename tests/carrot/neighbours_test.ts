import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { neighbourDisagreement, neighbourTrimScores } from "../../lib/carrot/neighbours.ts";
import { carrotReweight, describeCandidate } from "../../lib/carrot/carrot.ts";
import { lossTrimAlpha, meanAlpha } from "../../lib/carrot/trim.ts";
import { disposeHead } from "../../lib/carrot/head.ts";
import {
  assertDropsMislabelled,
  assertScoredAlone,
  assertTrimRows,
  trimOptions,
  trimProblem,
} from "./_trim_candidates.ts";
import { Random } from "../../lib/random.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

/** m_i by brute force in float64: sort every other point by the cosine of the centred features. */
function referenceCounts(x: Float64Array[], labels: Int32Array, k: number): Int32Array {
  const d = x[0].length, mean = new Float64Array(d);
  for (const row of x) row.forEach((v, j) => mean[j] += v / x.length);
  const unit = x.map((row) => {
    const c = row.map((v, j) => v - mean[j]), norm = Math.hypot(...c);
    return c.map((v) => v / norm);
  });
  const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, v, j) => s + v * b[j], 0);
  return Int32Array.from(labels, (y, i) => {
    const others = [...labels.keys()].filter((j) => j !== i);
    others.sort((a, b) => dot(unit[i], unit[b]) - dot(unit[i], unit[a]));
    return others.slice(0, k).filter((j) => labels[j] !== y).length;
  });
}

Deno.test("neighbourDisagreement(): the counts of a float64 brute force, in one block and in many", async () => {
  const random = new Random(3), n = 60, d = 6, k = 7;
  const x = Array.from({ length: n }, () => Float64Array.from({ length: d }, () => random.normal()));
  const labels = Int32Array.from({ length: n }, (_, i) => i % 4);
  const features = tf.tensor2d(x.flatMap((row) => [...row]), [n, d]);
  const before = tf.memory().numTensors;
  const expected = referenceCounts(x, labels, k);
  assert.deepEqual(await neighbourDisagreement({ features, labels }, k), expected);
  // 12 blocks of 5 rows, and blocks of 7 rows, which do not divide n
  assert.deepEqual(await neighbourDisagreement({ features, labels }, k, { blockBytes: 5 * 4 * n }), expected);
  assert.deepEqual(await neighbourDisagreement({ features, labels }, k, { blockBytes: 7 * 4 * n }), expected);
  // k ≥ n is cut to n − 1: every other point is a neighbour, so m_i counts the points of other classes
  assert.deepEqual(
    await neighbourDisagreement({ features, labels }, 500),
    Int32Array.from(labels, () => n - n / 4),
  );
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  await assert.rejects(() => neighbourDisagreement({ features, labels }, 0), /k must be an integer ≥ 1/);
  features.dispose();
});

Deno.test("neighbourDisagreement(): a point among the other class's cluster gets every neighbour's disagreement", async () => {
  // two tight clusters; one point of the first cluster carries the second cluster's label
  const random = new Random(5), n = 20;
  const rows = Array.from(
    { length: n },
    (_, i) => [i < 10 ? 1 : -1, 0.01 * random.normal(), 0.01 * random.normal()],
  );
  const labels = Int32Array.from({ length: n }, (_, i) => (i < 10 ? 0 : 1));
  labels[3] = 1;
  const features = tf.tensor2d(rows.flat(), [n, 3]);
  const counts = await neighbourDisagreement({ features, labels }, 5);
  assert.equal(counts[3], 5);
  for (let i = 0; i < n; i++) if (i !== 3) assert.ok(counts[i] <= 1, `point ${i}: ${counts[i]}`);
  features.dispose();
});

Deno.test("neighbourTrimScores(): order by the count, then by the loss", () => {
  const counts = Int32Array.from([2, 2, 1, 0, 1]), losses = [0.5, 3, 9, 0, 0.1];
  const scores = neighbourTrimScores(counts, losses);
  const order = [...scores.keys()].sort((a, b) => scores[b] - scores[a]);
  assert.deepEqual(order, [1, 0, 2, 4, 3]);
  scores.forEach((s, i) => assert.ok(s >= counts[i] && s < counts[i] + 1));
  assert.throws(() => neighbourTrimScores(counts, [1]), /5 counts for 1 losses/);
});

Deno.test("carrotReweight(): neighbourK offers the trims by k-NN disagreement, graded one included; 0 offers none", async () => {
  const data = trimProblem(), options = trimOptions;
  const before = tf.memory().numTensors;
  const run = await carrotReweight(data.train, data.val, { ...options, neighbourK: 6 });
  const labels = run.selection.rows.map((r) => r.label);
  assertTrimRows(run, "knn-trim");
  assert.equal(
    describeCandidate(labels[4]),
    "trim 10% by k-NN label disagreement (k 6; ties by out-of-fold loss)",
  );
  assert.equal(
    describeCandidate(labels[6]),
    "graded trim (mean of the trims at 10%/30%) by k-NN label disagreement (k 6; ties by out-of-fold loss)",
  );
  // the candidates are the mass-keeping trims by the scores of neighbours.ts: each α, scored alone, gets its row's
  // calibrated validation loss
  const counts = await neighbourDisagreement(data.train, 6);
  assert.deepEqual(run.neighbourCounts, counts);
  const scores = neighbourTrimScores(counts, run.trimLosses!);
  const trims = [0.1, 0.3].map((q) => lossTrimAlpha(scores, data.train.labels, q, { keepClassMass: true }));
  await assertScoredAlone(run, data, [4, 5, 6], [...trims, meanAlpha(trims)], { lambda: 0.5, numClasses: 8 });
  // better than chance: the points the k-NN trim at 30% drops are mislabelled more often than train's points are
  assertDropsMislabelled(trims[1], data.train.mislabeled);
  disposeHead(run.fit);
  const off = await carrotReweight(data.train, data.val, { ...options, neighbourK: 0 });
  assert.deepEqual(off.selection.rows.map((r) => r.label.weighting), ["none", "trim", "trim", "graded-trim"]);
  disposeHead(off.fit);
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  await assert.rejects(
    () => carrotReweight(data.train, data.val, { ...options, neighbourK: 1.5 }),
    /neighbourK must be an integer ≥ 0, got 1.5/,
  );
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});
