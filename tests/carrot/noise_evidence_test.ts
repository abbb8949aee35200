import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { noiseRateEvidence, noiseRateFromErrors } from "../../lib/carrot/noise_evidence.ts";
import { noiseEvidenceZ } from "../../lib/carrot/incumbent.ts";
import { type HeadFit, headLogits } from "../../lib/carrot/head.ts";
import type { LabeledFeatures } from "../../lib/carrot/labeled_features.ts";
import { assertClose } from "../_assert.ts";
import { gateProblem, trimProblem } from "./_trim_candidates.ts";
import { withFoldHeadsByHand } from "./_out_of_fold.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

const dispose = (data: { train: LabeledFeatures; val: LabeledFeatures; test: LabeledFeatures }) =>
  tf.dispose([data.train.features, data.val.features, data.test.features]);

Deno.test("noiseRateFromErrors(): q̂ = (e_tr − e_val)/(1 − e_val) and its standard error, by hand; bad inputs refused", () => {
  const { rate, standardError } = noiseRateFromErrors(0.5, 100, 0.4, 50);
  assertClose(rate, 0.1 / 0.6, { rtol: 1e-12, what: "q̂" });
  assertClose(standardError, Math.sqrt(0.25 / 100 + 0.24 / 50) / 0.6, { rtol: 1e-12, what: "s.e." });
  // train predicted better than val: a negative estimate, never evidence
  assert.ok(noiseRateFromErrors(0.2, 100, 0.3, 50).rate < 0);
  assert.deepEqual(noiseRateFromErrors(0.9, 10, 1, 10), { rate: 0, standardError: Infinity });
  assert.throws(() => noiseRateFromErrors(1.2, 10, 0.1, 10), /\[0, 1\]/);
  assert.throws(() => noiseRateFromErrors(0.2, 0, 0.1, 10), /n, m ≥ 1/);
});

/** How many rows of `data` the head's argmax gets wrong, by hand. */
async function wrongByHand(fit: HeadFit, data: LabeledFeatures): Promise<number> {
  const argmax = tf.tidy(() => headLogits(fit, data.features).argMax(1));
  const predicted = await argmax.data();
  argmax.dispose();
  return data.labels.filter((y, j) => predicted[j] !== y).length;
}

Deno.test("noiseRateEvidence(): the fold heads' error rates on their held-out training points and on val, by hand", async () => {
  const data = trimProblem(), lambda = 0.5;
  const before = tf.memory().numTensors;
  let trainWrong = 0, valWrong = 0;
  const ones = new Float32Array(data.train.labels.length).fill(1);
  await withFoldHeadsByHand(data.train, ones, { folds: 3, seed: 0, lambda }, async (fit, _heldOut, test) => {
    trainWrong += await wrongByHand(fit, test);
    valWrong += await wrongByHand(fit, data.val);
  });
  const evidence = await noiseRateEvidence(data.train, data.val, {
    lambda,
    numClasses: 8,
    folds: 3,
    tol: 1e-7,
  });
  const n = data.train.labels.length, m = data.val.labels.length;
  assert.equal(evidence.trainError, trainWrong / n);
  assert.equal(evidence.valError, valWrong / (3 * m));
  assert.deepEqual(
    { rate: evidence.rate, standardError: evidence.standardError },
    noiseRateFromErrors(trainWrong / n, n, valWrong / (3 * m), m),
  );
  assert.deepEqual([evidence.n, evidence.m], [n, m]);
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  await assert.rejects(
    noiseRateEvidence(data.train, { ...data.val, labels: new Int32Array(0) }, { lambda }),
    /validation split is empty/,
  );
  dispose(data);
});

Deno.test("noiseRateEvidence(): no evidence on clean labels with a large val, evidence near the rate at noise 0.4", async () => {
  const clean = gateProblem(0), noisy = gateProblem(0.4);
  const options = { lambda: 1, numClasses: 10, folds: 3 };
  const quiet = await noiseRateEvidence(clean.train, clean.val, options);
  assert.ok(quiet.rate <= noiseEvidenceZ * quiet.standardError, `clean labels: ${JSON.stringify(quiet)}`);
  const loud = await noiseRateEvidence(noisy.train, noisy.val, options);
  assert.ok(loud.rate > noiseEvidenceZ * loud.standardError, `noise 0.4: ${JSON.stringify(loud)}`);
  assert.ok(loud.rate > 0.2 && loud.rate < 0.6, `q̂ ${loud.rate} far from the rate 0.4`);
  dispose(clean);
  dispose(noisy);
});
