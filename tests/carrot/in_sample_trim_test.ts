import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { carrotReweight } from "../../lib/carrot/carrot.ts";
import { disposeHead, fitHead, inSampleLosses } from "../../lib/carrot/head.ts";
import { readValues } from "../../lib/carrot/_reads.ts";
import { assertClose } from "../_assert.ts";
import { probabilities64 } from "../_reference_head.ts";
import { assertDetectorOption, trimOptions, trimProblem } from "./_trim_candidates.ts";

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

Deno.test("carrotReweight(): inSampleTrim offers the trims by the ERM head's in-sample losses, graded one included", () =>
  assertDetectorOption({
    option: "inSampleTrim",
    weighting: "in-sample-trim",
    described: {
      5: "trim 30% by in-sample loss (ERM head)",
      6: "graded trim (mean of the trims at 10%/30%) by in-sample loss (ERM head)",
    },
    scores: (run) => run.inSampleLosses,
    reference: inSampleLosses,
    tolerance: { rtol: 1e-3, atol: 1e-4 },
  }));

Deno.test("carrotReweight(): inSampleTrim without trimming fractions offers nothing", async () => {
  const data = trimProblem();
  const before = tf.memory().numTensors;
  const none = await carrotReweight(data.train, data.val, {
    ...trimOptions,
    inSampleTrim: true,
    trimFractions: [],
  });
  assert.deepEqual(none.selection.rows.map((r) => r.label.weighting), ["none"]);
  disposeHead(none.fit);
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});
