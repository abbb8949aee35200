import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../lib/backend.ts";
import { disposeHead, fitHead } from "../lib/carrot/head.ts";
import { tuneLambda } from "../lib/carrot/lambda.ts";
import { evaluateHead } from "../lib/carrot/metrics.ts";
import { Random } from "../lib/random.ts";
import { stratifiedSplitIndices, validationCoverage } from "../lib/split.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

/** `counts[c]` labels c, in class order. */
const labelsOf = (counts: number[]) => Int32Array.from(counts.flatMap((n, c) => Array(n).fill(c)));

Deno.test("validationCoverage() names classes with 0 and 1 validation images and says the consequence", () => {
  const coverage = validationCoverage(labelsOf([5, 5, 5, 5]), labelsOf([3, 1, 0, 2]), 4);
  assert.deepEqual(coverage.classesWithoutVal, [2]);
  assert.deepEqual(coverage.classesWithOneVal, [1]);
  assert.deepEqual(coverage.classesWithoutTrain, []);
  assert.equal(coverage.valSmallerThanClasses, false);
  assert.deepEqual(coverage.warnings, [
    "class 2 has no validation images: it does not enter L_val, λ tuning, CARROT's selection or the " +
    "validation metrics (its test accuracy is still reported)",
    "class 1 has a single validation image: its validation loss is one point's, so λ tuning and CARROT's " +
    "selection are noisy there (CARROT then falls back to α = 1 more often)",
  ]);
});

Deno.test("validationCoverage() is silent when every class has ≥ 2 validation and ≥ 1 training images", () => {
  const coverage = validationCoverage(labelsOf([4, 1, 9]), labelsOf([2, 2, 3]), 3);
  assert.deepEqual(coverage, {
    classesWithoutVal: [],
    classesWithOneVal: [],
    classesWithoutTrain: [],
    valSmallerThanClasses: false,
    warnings: [],
  });
});

Deno.test("validationCoverage() lists the first 10 classes, then 'and N more'", () => {
  const counts = Array.from({ length: 15 }, (_, c) => (c < 13 ? 1 : 2));
  const coverage = validationCoverage(labelsOf(Array(15).fill(3)), labelsOf(counts), 15);
  assert.deepEqual(coverage.classesWithOneVal, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  assert.match(coverage.warnings[0], /^classes 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 3 more have a single /);
  assert.match(coverage.warnings[0], /their validation loss is one point's/);
});

Deno.test("validationCoverage() warns when the validation set is smaller than K", () => {
  const coverage = validationCoverage(labelsOf([3, 3, 3, 3, 3]), labelsOf([2, 1, 0, 0, 0]), 5);
  assert.equal(coverage.valSmallerThanClasses, true);
  assert.deepEqual(coverage.classesWithoutVal, [2, 3, 4]);
  assert.equal(
    coverage.warnings[0],
    "the validation set (3 images) is smaller than the number of classes (5): at least 2 classes have no " +
      "validation evidence, so L_val, λ tuning and CARROT's selection reflect the other classes only",
  );
  assert.match(coverage.warnings[1], /^classes 2, 3, 4 have no validation images: they do not enter L_val/);
  assert.match(coverage.warnings[2], /^class 1 has a single validation image/);
});

Deno.test("validationCoverage() of an empty validation set: every class uncovered, one sentence", () => {
  const coverage = validationCoverage(labelsOf([2, 2, 2]), new Int32Array(0), 3);
  assert.deepEqual(coverage.classesWithoutVal, [0, 1, 2]);
  assert.deepEqual(coverage.classesWithOneVal, []);
  assert.equal(coverage.valSmallerThanClasses, true);
  assert.equal(coverage.warnings.length, 1);
  assert.match(coverage.warnings[0], /^the validation set is empty: no class enters L_val, λ tuning/);
});

Deno.test("validationCoverage() names classes absent from train; rejects labels outside 0..K−1", () => {
  const coverage = validationCoverage(labelsOf([4, 0, 4, 0]), labelsOf([2, 2, 2, 2]), 4);
  assert.deepEqual(coverage.classesWithoutTrain, [1, 3]);
  assert.deepEqual(coverage.warnings, [
    "classes 1, 3 have no training images: the head cannot learn them (their logits are only pushed down), " +
    "so they are almost never predicted",
  ]);
  assert.throws(
    () => validationCoverage(labelsOf([1, 1]), Int32Array.of(0, 2), 2),
    (e) => e instanceof RangeError && /val label 2 at row 1 is outside 0\.\.1/.test(e.message),
  );
  assert.throws(() => validationCoverage(labelsOf([1]), labelsOf([1]), 0), RangeError);
});

Deno.test("validationCoverage() after stratifiedSplitIndices: a class of 2 images leaves 1 for validation", () => {
  const labels = labelsOf([2, 10, 30]);
  const { train, val } = stratifiedSplitIndices(labels, { fraction: 0.1 }, 0);
  const pick = (rows: Int32Array) => Int32Array.from(rows, (i) => labels[i]);
  const coverage = validationCoverage(pick(train), pick(val), 3);
  assert.deepEqual(coverage.classesWithOneVal, [0, 1]); // round(0.1·2) → 1 (at least 1), round(0.1·10) = 1
  assert.deepEqual(coverage.classesWithoutVal, []);
});

Deno.test("a class whose training labels are all wrong: coverage, tuneLambda and fitHead stay finite", async () => {
  // 4 classes around separated means; every training image labelled 3 is drawn from class 0's mean, while the
  // validation images of class 3 are drawn from its own mean
  const rng = new Random(7), dim = 6, k = 4, perClass = 12;
  const means = Array.from({ length: k }, () => Array.from({ length: dim }, () => 3 * rng.normal()));
  const draw = (source: number[]) => source.flatMap((c) => means[c].map((m) => m + rng.normal()));
  const trainLabels = labelsOf(Array(k).fill(perClass));
  const trainSource = Array.from(trainLabels, (c) => (c === 3 ? 0 : c));
  const valLabels = labelsOf(Array(k).fill(4));
  const train = { features: tf.tensor2d(draw(trainSource), [trainLabels.length, dim]), labels: trainLabels };
  const val = {
    features: tf.tensor2d(draw(Array.from(valLabels)), [valLabels.length, dim]),
    labels: valLabels,
  };
  const before = tf.memory().numTensors;
  try {
    const coverage = validationCoverage(train.labels, val.labels, k);
    assert.deepEqual(coverage.warnings, [], "the pipeline cannot see wrong labels without ground truth");

    const tuned = await tuneLambda(train, val, { grid: [0.1, 1, 10], numClasses: k });
    assert.ok(Number.isFinite(tuned.lambda) && tuned.lambda > 0);
    for (const row of tuned.rows) {
      for (const [key, value] of Object.entries(row)) assert.ok(Number.isFinite(value), `${key} = ${value}`);
    }
    disposeHead(tuned.fit);

    const fit = await fitHead(train, { lambda: 1, numClasses: k });
    const weights = await fit.weights.data();
    assert.ok(weights.every(Number.isFinite), "weights finite");
    assert.ok(
      Number.isFinite(fit.loss) && Number.isFinite(fit.gradNorm),
      `J ${fit.loss}, ‖∇J‖ ${fit.gradNorm}`,
    );
    const metrics = await evaluateHead(fit, val);
    for (const [key, value] of Object.entries(metrics)) {
      assert.ok(Number.isFinite(value), `${key} = ${value}`);
    }
    disposeHead(fit);
    assert.equal(tf.memory().numTensors, before, "tensors leaked");
  } finally {
    tf.dispose([train.features, val.features]);
  }
});
