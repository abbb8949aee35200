import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { disposeHead, fitHead } from "../../lib/carrot/head.ts";
import { evaluateHead } from "../../lib/carrot/metrics.ts";
import {
  evaluateHeadWithTemperature,
  fitTemperature,
  fitTemperatureFromLogits,
} from "../../lib/carrot/temperature.ts";
import { Random } from "../../lib/random.ts";
import { assertClose } from "../_assert.ts";
import { randomProblem } from "../_problems.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

/** Reference L(T) = (1/m) Σ_j [logsumexp(z_j / T) − z_{j,y_j} / T] in float64, written independently. */
function nll64(z: Float32Array, labels: Int32Array, numClasses: number, temperature: number): number {
  let total = 0;
  for (let j = 0; j < labels.length; j++) {
    const row = Array.from(z.subarray(j * numClasses, (j + 1) * numClasses), (v) => v / temperature);
    const max = Math.max(...row);
    total += max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0)) - row[labels[j]];
  }
  return total / labels.length;
}

/** Logits z_jk = scale·N(0, 1) and labels drawn from softmax(z_j / trueT). */
function calibrationProblem(
  { m, numClasses, scale, trueT, seed }: {
    m: number;
    numClasses: number;
    scale: number;
    trueT: number;
    seed: number;
  },
): { logits: Float32Array; labels: Int32Array } {
  const rng = new Random(seed);
  const logits = Float32Array.from({ length: m * numClasses }, () => scale * rng.normal());
  const labels = new Int32Array(m);
  for (let j = 0; j < m; j++) {
    const row = Array.from(logits.subarray(j * numClasses, (j + 1) * numClasses), (v) => v / trueT);
    const max = Math.max(...row);
    const w = row.map((v) => Math.exp(v - max));
    let u = rng.uniform() * w.reduce((s, v) => s + v, 0), k = 0;
    while (k < numClasses - 1 && (u -= w[k]) > 0) k++;
    labels[j] = k;
  }
  return { logits, labels };
}

Deno.test("fitTemperatureFromLogits() returns a stationary minimum: dL/dT ≈ 0, L(T) ≤ L(T(1±5%)) and L(1)", () => {
  for (const [trueT, scale, seed] of [[2.5, 4, 1], [0.6, 1, 2], [1, 3, 3]]) {
    const { logits, labels } = calibrationProblem({ m: 3000, numClasses: 7, scale, trueT, seed });
    const { temperature: t, nllBefore, nllAfter } = fitTemperatureFromLogits(logits, labels, 7);
    const at = (temperature: number) => nll64(logits, labels, 7, temperature);
    const h = 1e-5 * t;
    const derivative = (at(t + h) - at(t - h)) / (2 * h);
    const scaleOfDerivative = Math.abs((at(1 + 1e-4) - at(1 - 1e-4)) / 2e-4) + Math.abs(at(t) / t);
    assert.ok(
      Math.abs(derivative) <= 1e-7 * scaleOfDerivative,
      `dL/dT at T = ${t}: ${derivative} (scale ${scaleOfDerivative})`,
    );
    assert.ok(at(t) <= at(t * 1.05) && at(t) <= at(t * 0.95), `T = ${t} is not a local minimum`);
    assert.ok(at(t) <= at(1), `L(T*) = ${at(t)} > L(1) = ${at(1)}`);
    assertClose(nllBefore, at(1), { rtol: 1e-12, what: "nllBefore" });
    assertClose(nllAfter, at(t), { rtol: 1e-12, what: "nllAfter" });
  }
});

Deno.test("fitTemperatureFromLogits() recovers T = 2.5 from labels sampled from softmax(z / 2.5) (m = 20000, K = 10)", () => {
  const { logits, labels } = calibrationProblem({ m: 20000, numClasses: 10, scale: 4, trueT: 2.5, seed: 7 });
  const { temperature, nllBefore, nllAfter } = fitTemperatureFromLogits(logits, labels, 10);
  assertClose(temperature, 2.5, { atol: 0.1, what: "T*" });
  assert.ok(nllAfter < nllBefore, `NLL did not drop: ${nllBefore} → ${nllAfter}`);
});

Deno.test("fitTemperatureFromLogits() is scale-equivariant: fitting c·z gives c·T", () => {
  const { logits, labels } = calibrationProblem({ m: 2000, numClasses: 5, scale: 2, trueT: 1.5, seed: 11 });
  const base = fitTemperatureFromLogits(logits, labels, 5);
  // c = 4 and 0.25 scale float32 exactly; c = 3 rounds each logit (relative 6e-8).
  for (const [c, rtol] of [[4, 1e-10], [0.25, 1e-10], [3, 1e-6]]) {
    const scaled = fitTemperatureFromLogits(logits.map((v) => c * v), labels, 5);
    assertClose(scaled.temperature, c * base.temperature, { rtol, what: `T*(${c}·z)` });
    assertClose(scaled.nllAfter, base.nllAfter, { rtol: rtol + 1e-12, what: `L at T*(${c}·z)` });
  }
});

Deno.test("fitTemperatureFromLogits() clamps to minT on separable logits, to maxT on anti-correlated ones, T = 1 on flat ones", () => {
  const labels = Int32Array.from([0, 1, 2, 1]);
  // Every label is the argmax with a margin: L decreases as T → 0, so T* is the lower end of the box.
  const separable = Float32Array.from([5, 0, 0, 0, 3, -1, 1, 0, 4, -2, 9000, 0]);
  const low = fitTemperatureFromLogits(separable, labels, 3);
  assert.equal(low.temperature, 0.05);
  assert.ok(
    Number.isFinite(low.nllAfter) && low.nllAfter <= low.nllBefore,
    `${low.nllAfter} > ${low.nllBefore}`,
  );
  assert.equal(fitTemperatureFromLogits(separable, labels, 3, { minT: 0.2 }).temperature, 0.2);
  // Every label is the argmin: the best T is as large as allowed (uniform predictions).
  const wrong = separable.map((v) => -v);
  assert.equal(fitTemperatureFromLogits(wrong, labels, 3).temperature, 20);
  assert.equal(fitTemperatureFromLogits(wrong, labels, 3, { maxT: 7 }).temperature, 7);
  const flat = fitTemperatureFromLogits(new Float32Array(12).fill(2), labels, 3);
  assert.deepEqual(flat, { temperature: 1, nllBefore: Math.log(3), nllAfter: Math.log(3) });
});

Deno.test("fitTemperatureFromLogits() rejects empty splits, bad labels, lengths, logits and boxes", () => {
  const z = Float32Array.from([1, 0, 0, 1]), y = Int32Array.from([0, 1]);
  const cases: [() => unknown, RegExp][] = [
    [() => fitTemperatureFromLogits(new Float32Array(0), new Int32Array(0), 3), /split is empty/],
    [() => fitTemperatureFromLogits(z, Int32Array.from([0, 2]), 2), /label 2 at row 1 is outside 0..1/],
    [() => fitTemperatureFromLogits(z, Int32Array.from([-1, 0]), 2), /label -1 at row 0/],
    [() => fitTemperatureFromLogits(z, y, 3), /4 logits for 2 labels × 3 classes/],
    [() => fitTemperatureFromLogits(Float32Array.from([1, 0, NaN, 1]), y, 2), /logit row 1 contains NaN/],
    [() => fitTemperatureFromLogits(z, y, 2, { minT: 0 }), /0 < minT < maxT/],
    [() => fitTemperatureFromLogits(z, y, 2, { minT: 3, maxT: 2 }), /0 < minT < maxT/],
  ];
  for (const [call, message] of cases) {
    assert.throws(
      call,
      (e: Error) => e instanceof RangeError && message.test(e.message),
      `expected ${message}`,
    );
  }
});

Deno.test("evaluateHeadWithTemperature() equals evaluateHead() at T = 1 and keeps accuracy at any T", async () => {
  const { train } = randomProblem({ n: 300, dim: 6, numClasses: 4, lambda: 0.1, seed: 5, uniform: true });
  const val = randomProblem({ n: 200, dim: 6, numClasses: 4, lambda: 0.1, seed: 6, uniform: true }).train;
  const fit = await fitHead(train, { lambda: 0.1 });
  const plain = await evaluateHead(fit, val);
  assert.deepEqual(await evaluateHeadWithTemperature(fit, val, 1), plain);
  for (const t of [0.3, 0.8, 2, 7]) {
    const scaled = await evaluateHeadWithTemperature(fit, val, t);
    assert.equal(scaled.accuracy, plain.accuracy, `accuracy at T = ${t}`);
    assert.equal(scaled.perClassAccuracy, plain.perClassAccuracy, `per-class accuracy at T = ${t}`);
    assert.ok(
      Number.isFinite(scaled.ece) && Number.isFinite(scaled.nll),
      `T = ${t}: ${JSON.stringify(scaled)}`,
    );
  }
  const { temperature, nllBefore, nllAfter } = await fitTemperature(fit, val);
  assertClose(nllBefore, plain.nll, { rtol: 1e-5, what: "nllBefore vs evaluateHead nll" });
  const after = await evaluateHeadWithTemperature(fit, val, temperature);
  assertClose(after.nll, nllAfter, { rtol: 1e-5, what: "nllAfter vs evaluated nll" });
  assert.ok(after.nll <= plain.nll + 1e-6, `NLL rose: ${plain.nll} → ${after.nll}`);
  disposeHead(fit);
  tf.dispose([train.features, val.features]);
});

Deno.test("fitTemperature() and evaluateHeadWithTemperature() reject bad splits and temperatures", async () => {
  const { train } = randomProblem({ n: 60, dim: 3, numClasses: 3, lambda: 1, seed: 8, uniform: true });
  const fit = await fitHead(train, { lambda: 1 });
  const empty = { features: tf.zeros([0, 3]) as tf.Tensor2D, labels: new Int32Array(0) };
  const wide = { features: tf.zeros([2, 4]) as tf.Tensor2D, labels: Int32Array.from([0, 1]) };
  const badLabel = { features: tf.zeros([2, 3]) as tf.Tensor2D, labels: Int32Array.from([0, 3]) };
  const cases: [() => Promise<unknown>, RegExp][] = [
    [() => fitTemperature(fit, empty), /fitTemperature: the split is empty/],
    [() => evaluateHeadWithTemperature(fit, empty, 1), /evaluateHeadWithTemperature: the split is empty/],
    [() => fitTemperature(fit, wide), /d = 4, the head expects d = 3/],
    [() => fitTemperature(fit, badLabel), /label 3 at row 1 is outside 0..2/],
    [() => evaluateHeadWithTemperature(fit, train, 0), /temperature must be finite and > 0, got 0/],
    [() => evaluateHeadWithTemperature(fit, train, NaN), /got NaN/],
  ];
  for (const [call, message] of cases) {
    await assert.rejects(
      call,
      (e: Error) => e instanceof RangeError && message.test(e.message),
      `${message}`,
    );
  }
  disposeHead(fit);
  tf.dispose([train.features, empty.features, wide.features, badLabel.features]);
});

Deno.test("fitTemperature() and evaluateHeadWithTemperature() leak no tensors", async () => {
  const { train } = randomProblem({ n: 120, dim: 4, numClasses: 3, lambda: 0.5, seed: 4, uniform: true });
  const fit = await fitHead(train, { lambda: 0.5 });
  const before = tf.memory().numTensors;
  const { temperature } = await fitTemperature(fit, train);
  await evaluateHeadWithTemperature(fit, train, temperature);
  assert.equal(tf.memory().numTensors, before, "leaked tensors");
  disposeHead(fit);
  tf.dispose(train.features);
});
