import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { carrotReweight, describeCandidate } from "../../lib/carrot/carrot.ts";
import { disposeHead, fitHead } from "../../lib/carrot/head.ts";
import { selfInfluence } from "../../lib/carrot/influence.ts";
import { assertClose } from "../_assert.ts";
import {
  assertDetectorTrims,
  assertOutOfFoldTrimsOnly,
  assertTrimRows,
  trimOptions,
  trimProblem,
} from "./_trim_candidates.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

Deno.test("carrotReweight(): selfInfluenceTrim offers the trims by the ERM head's self-influence, graded one included", async () => {
  const data = trimProblem(),
    options = trimOptions,
    { lambda, numClasses } = options;
  const before = tf.memory().numTensors;
  const run = await carrotReweight(data.train, data.val, { ...options, selfInfluenceTrim: true });
  const labels = run.selection.rows.map((r) => r.label);
  assertTrimRows(run, "self-influence-trim");
  assert.equal(describeCandidate(labels[4]), "trim 10% by self-influence (ERM head, EK-FAC)");
  assert.equal(
    describeCandidate(labels[6]),
    "graded trim (mean of the trims at 10%/30%) by self-influence (ERM head, EK-FAC)",
  );
  // the scores are the ERM head's EK-FAC self-influences (λ given, so the ERM head is the plain fit at λ) ...
  const erm = await fitHead(data.train, { lambda, numClasses, tol: 1e-8 });
  assertClose(run.selfInfluences!, await selfInfluence(erm, data.train, data.train, { method: "ekfac" }), {
    rtol: 1e-3,
    atol: 1e-5,
    what: "self-influences",
  });
  disposeHead(erm);
  // ... and the candidates are the mass-keeping trims by them
  await assertDetectorTrims(run, data, run.selfInfluences!);
  disposeHead(run.fit);
  const off = await carrotReweight(data.train, data.val, { ...options, selfInfluenceTrim: false });
  assertOutOfFoldTrimsOnly(off);
  assert.equal(off.selfInfluences, undefined);
  disposeHead(off.fit);
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});
