import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { agreementMethods, attributionAgreement } from "../../lib/carrot/agreement.ts";
import { knnCosineScores } from "../../lib/carrot/knn.ts";
import { makeFineGrainedFeatures } from "../../lib/data/synthetic_features.ts";
import { assertClose } from "../_assert.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

Deno.test("attributionAgreement(): every method gets a row; exact influence tracks exact LOO best", async () => {
  const data = makeFineGrainedFeatures({
    numClasses: 6,
    groups: 2,
    dim: 12,
    perClass: { train: 20, val: 8, test: 1 },
    seed: 3,
  });
  const result = await attributionAgreement(data.train, data.val, {
    lambda: 3,
    looSample: 40,
    ldsSubsets: 8,
    seed: 1,
  });
  assert.deepEqual(result.rows.map((r) => r.method), agreementMethods);
  assert.equal(result.looUnconverged, 0);
  const row = (m: string) => result.rows.find((r) => r.method === m)!;
  for (const r of result.rows) {
    assert.ok(Number.isFinite(r.spearman) && Number.isFinite(r.kendall) && Number.isFinite(r.lds), r.method);
    assert.ok(r.seconds >= 0);
  }
  assert.ok(row("influence").spearman >= 0.9, `influence ρ = ${row("influence").spearman}`);
  for (const other of ["representer", "tracin-cp", "knn"]) {
    assert.ok(row("influence").spearman > row(other).spearman, `influence should beat ${other}`);
  }
  assert.ok(row("influence").lds > row("knn").lds, "LDS: influence vs knn");
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});

Deno.test("knnCosineScores() is the label-signed cosine similarity", async () => {
  const train = { features: tf.tensor2d([[1, 0], [0, 2], [1, 1]]), labels: Int32Array.from([0, 1, 0]) };
  const test = { features: tf.tensor2d([[2, 0]]), labels: Int32Array.from([0]) };
  assertClose(await knnCosineScores(train, test), [1, -0, Math.SQRT1_2], { atol: 1e-6 });
  tf.dispose([train.features, test.features]);
});
