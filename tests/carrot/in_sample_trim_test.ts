import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { carrotReweight, describeCandidate } from "../../lib/carrot/carrot.ts";
import { disposeHead, fitHead, inSampleLosses } from "../../lib/carrot/head.ts";
import { readValues } from "../../lib/carrot/_reads.ts";
import { assertClose } from "../_assert.ts";
import { probabilities64 } from "../_reference_head.ts";
import {
  assertDetectorTrims,
  assertOutOfFoldTrimsOnly,
  assertTrimRows,
  trimOptions,
  trimProblem,
} from "./_trim_candidates.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

Deno.test("inSampleLosses(): −log p_{y_i} of a float64 softmax at the head's own W", async () => {
  const data = trimProblem(), { lambda, numClasses } = trimOptions;
  const fit = await fitHead(data.train, { lambda, numClasses, tol: 1e-8 });
  const before = tf.memory().numTensors;
  const losses = await inSampleLosses(fit, data.train);
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  const w = Float64Array.from(await readValues(fit.weights));
  const x = await readValues(data.train.features), d = data.train.features.shape[1];
  const expected = Float64Array.from(data.train.labels, (y, i) => {
    const h = Float64Array.from({ length: d + 1 }, (_, j) => j < d ? x[i * d + j] : 1);
    return -Math.log(probabilities64(w, h, numClasses)[y]);
  });
  assertClose(losses, expected, { rtol: 1e-4, atol: 1e-5, what: "in-sample losses" });
  disposeHead(fit);
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});

Deno.test("carrotReweight(): inSampleTrim offers the trims by the ERM head's in-sample losses, graded one included", async () => {
  const data = trimProblem(),
    options = trimOptions,
    { lambda, numClasses } = options;
  const before = tf.memory().numTensors;
  const run = await carrotReweight(data.train, data.val, { ...options, inSampleTrim: true });
  const labels = run.selection.rows.map((r) => r.label);
  assertTrimRows(run, "in-sample-trim");
  assert.equal(describeCandidate(labels[5]), "trim 30% by in-sample loss (ERM head)");
  assert.equal(
    describeCandidate(labels[6]),
    "graded trim (mean of the trims at 10%/30%) by in-sample loss (ERM head)",
  );
  // the losses are the ERM head's (λ given, so the ERM head is the plain fit at λ) ...
  const erm = await fitHead(data.train, { lambda, numClasses, tol: 1e-8 });
  assertClose(run.inSampleLosses!, await inSampleLosses(erm, data.train), {
    rtol: 1e-3,
    atol: 1e-4,
    what: "losses",
  });
  disposeHead(erm);
  // ... and the candidates are the mass-keeping trims by them
  await assertDetectorTrims(run, data, run.inSampleLosses!);
  disposeHead(run.fit);
  const off = await carrotReweight(data.train, data.val, { ...options, inSampleTrim: false });
  assertOutOfFoldTrimsOnly(off);
  assert.equal(off.inSampleLosses, undefined);
  disposeHead(off.fit);
  // without trimming fractions there is nothing to offer
  const none = await carrotReweight(data.train, data.val, {
    ...options,
    inSampleTrim: true,
    trimFractions: [],
  });
  assert.deepEqual(none.selection.rows.map((r) => r.label.weighting), ["none"]);
  disposeHead(none.fit);
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});
