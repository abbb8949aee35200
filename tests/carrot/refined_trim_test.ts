import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { carrotReweight, describeCandidate } from "../../lib/carrot/carrot.ts";
import { refinedTrimLosses } from "../../lib/carrot/refined_trim.ts";
import { outOfFoldLosses } from "../../lib/carrot/crossfit.ts";
import { gradedTrimAlpha, lossTrimAlpha, meanAlpha } from "../../lib/carrot/trim.ts";
import { disposeHead } from "../../lib/carrot/head.ts";
import { assertLossesClose, lossesWithoutOwnFold } from "./_out_of_fold.ts";
import { assertDropsMislabelled, assertScoredAlone, trimOptions, trimProblem } from "./_trim_candidates.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

let byHand: Promise<{ first: Float64Array; graded: Float32Array; expected: Float64Array }> | undefined;

/**
 * Of `trimProblem()` with `trimOptions`, by hand (fold assignment seed 0), computed once for both tests: the
 * out-of-fold losses at α ≡ 1, their graded trim, and the out-of-fold losses of heads refitted at that trim.
 */
function handMadeLosses() {
  byHand ??= (async () => {
    const data = trimProblem(), { lambda, folds, trimFractions: fractions } = trimOptions;
    const ones = new Float32Array(data.train.labels.length).fill(1);
    const first = await lossesWithoutOwnFold(data.train, ones, { folds, seed: 0, lambda });
    const graded = gradedTrimAlpha(first, data.train.labels, fractions);
    const expected = await lossesWithoutOwnFold(data.train, graded, { folds, seed: 0, lambda });
    tf.dispose([data.train.features, data.val.features, data.test.features]);
    return { first, graded, expected };
  })();
  return byHand;
}

Deno.test("refinedTrimLosses(): each point's loss under its fold's head refitted at the graded trim's α, by hand", async () => {
  const data = trimProblem(), { lambda, numClasses, folds, trimFractions: fractions } = trimOptions;
  const { first, graded, expected } = await handMadeLosses();
  const before = tf.memory().numTensors;
  const refined = await refinedTrimLosses(data.train, first, fractions, [0], {
    lambda,
    numClasses,
    folds,
    tol: 1e-7,
  });
  assertLossesClose(refined, expected, "refined losses");
  assert.ok(
    expected.some((l, i) => Math.abs(l - first[i]) > 1e-2),
    "the refitted judges should change the losses",
  );
  // two fold assignments: the mean of each one's refined losses
  const second = await lossesWithoutOwnFold(data.train, graded, { folds, seed: 1, lambda });
  assertLossesClose(
    await refinedTrimLosses(data.train, first, fractions, [0, 1], { lambda, numClasses, folds, tol: 1e-7 }),
    expected.map((l, i) => (l + second[i]) / 2),
    "mean over seeds 0, 1",
  );
  await assert.rejects(refinedTrimLosses(data.train, first, [], [0], { lambda }), /fractions is empty/);
  await assert.rejects(
    outOfFoldLosses(data.train, [0], { lambda, alpha: new Float32Array(3) }),
    /alpha has 3 entries for 200 training points/,
  );
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});

Deno.test("carrotReweight(): refinedTrim ranks the trims, graded one included, by the refined out-of-fold losses", async () => {
  const data = trimProblem(),
    options = trimOptions,
    { lambda, numClasses, trimFractions: fractions } = options;
  const { first, expected } = await handMadeLosses();
  const before = tf.memory().numTensors;
  const run = await carrotReweight(data.train, data.val, { ...options, refinedTrim: true });
  const labels = run.selection.rows.map((r) => r.label);
  assert.deepEqual(labels.map((l) => l.weighting), ["none", "trim", "trim", "graded-trim"]);
  assert.ok(labels.slice(1).every((l) => l.refined === 1), "every trim is labelled refined");
  assert.equal(
    describeCandidate(labels[2]),
    "trim 30% by out-of-fold loss of heads fitted at the first graded trim",
  );
  // trimLosses are the refined losses of the first ranking (the paths' fold assignment, seed 0) ...
  assertLossesClose(run.trimLosses!, expected, "trimLosses");
  // ... and each candidate, scored alone, gets its row's calibrated val loss
  const trims = fractions.map((q) =>
    lossTrimAlpha(run.trimLosses!, data.train.labels, q, { keepClassMass: true })
  );
  await assertScoredAlone(run, data, [1, 2, 3], [...trims, meanAlpha(trims)], { lambda, numClasses });
  assertDropsMislabelled(trims[1], data.train.mislabeled);
  disposeHead(run.fit);
  // off (the default): the first ranking, unlabelled
  const off = await carrotReweight(data.train, data.val, options);
  assert.ok(off.selection.rows.slice(1).every((r) => r.label.refined === undefined));
  assertLossesClose(off.trimLosses!, first, "trimLosses without refinedTrim");
  disposeHead(off.fit);
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});
