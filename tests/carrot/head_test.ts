import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { selectBackend } from "../../lib/backend.ts";
import { disposeHead, fitHead, frobeniusNorm, headLogits } from "../../lib/carrot/head.ts";
import { assertClose, fixturePath, maxAbsDiff } from "../_assert.ts";
import { fitHead64 } from "../_reference_head.ts";
import { randomProblem } from "../_problems.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

async function weightsOf(w: tf.Tensor): Promise<Float32Array> {
  return (await w.data()) as Float32Array;
}

/** ‖A − B‖_F / ‖B‖_F. */
function relativeFrobenius(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) [num, den] = [num + (a[i] - b[i]) ** 2, den + b[i] ** 2];
  return Math.sqrt(num / den);
}

const headFixtures = fixturePath("head");

Deno.test({
  name: "fitHead() matches the SciPy float64 fixture head/small.json within the strong-convexity bound",
  ignore: !headFixtures,
}, async () => {
  const dir = headFixtures!;
  const fx = JSON.parse(readFileSync(join(dir, "small.json"), "utf8"));
  const { X, y, a } = fx.data;
  const features = tf.tensor2d(X as number[][]);
  const train = { features, labels: Int32Array.from(y) };
  const fit = await fitHead(train, { lambda: fx.lambda, alpha: Float32Array.from(a) });
  const wRef = (fx.W_ref as number[][]).flat();
  const w = await weightsOf(fit.weights);
  assert.ok(fit.converged, `not converged: ${fit.relativeGradNorm}`);
  const distance = Math.sqrt(w.reduce((s, v, i) => s + (v - wRef[i]) ** 2, 0));
  assert.ok(distance <= fit.gradNorm / fit.lambda + 1e-5, `‖W − W_ref‖ = ${distance} > ‖∇J‖/λ`);
  assert.ok(relativeFrobenius(w, wRef) <= 1e-3, `relative error ${relativeFrobenius(w, wRef)}`);
  const testX = tf.tensor2d(fx.data.X_test as number[][]);
  const logits = await headLogits(fit, testX).data();
  const ref = fx.test_logits_first50 as number[][];
  for (let t = 0; t < ref.length; t++) {
    const row = Array.from(logits.subarray(t * 6, t * 6 + 6));
    assert.equal(
      row.indexOf(Math.max(...row)),
      ref[t].indexOf(Math.max(...ref[t])),
      `prediction of test ${t}`,
    );
  }
  tf.dispose([features, testX]);
  disposeHead(fit);
});

Deno.test({
  name: "fitHead() matches the SciPy float64 fixture head/medium (n=2000, d=64, K=20)",
  ignore: !headFixtures,
}, async () => {
  const dir = join(headFixtures!, "medium");
  const meta = JSON.parse(readFileSync(join(dir, "medium.json"), "utf8"));
  const raw = (f: string) => readFileSync(join(dir, f));
  const xBuf = raw("X_f32.bin"),
    yBuf = raw("y_i32.bin"),
    aBuf = raw("a_f64.bin"),
    wBuf = raw("W_ref_f64.bin");
  const X = new Float32Array(xBuf.buffer, xBuf.byteOffset, xBuf.byteLength / 4);
  const labels = new Int32Array(yBuf.buffer.slice(yBuf.byteOffset, yBuf.byteOffset + yBuf.byteLength));
  const alpha = Float32Array.from(
    new Float64Array(aBuf.buffer.slice(aBuf.byteOffset, aBuf.byteOffset + aBuf.byteLength)),
  );
  const wRef = new Float64Array(wBuf.buffer.slice(wBuf.byteOffset, wBuf.byteOffset + wBuf.byteLength));
  const n = labels.length, d = X.length / n, k = wRef.length / (d + 1);
  assert.equal(d, 64);
  const features = tf.tensor2d(X, [n, d]);
  const fit = await fitHead({ features, labels }, { lambda: meta.lambda, alpha, numClasses: k });
  const w = await weightsOf(fit.weights);
  const rel = relativeFrobenius(w, wRef);
  assert.ok(rel <= 1e-3, `relative Frobenius error ${rel}`);
  const distance = Math.sqrt(w.reduce((s, v, i) => s + (v - wRef[i]) ** 2, 0));
  assert.ok(
    distance <= fit.gradNorm / fit.lambda + 1e-4,
    `‖W − W_ref‖ = ${distance}, ‖∇J‖/λ = ${fit.gradNorm / fit.lambda}`,
  );
  // identical predictions on the training rows
  const z = await headLogits(fit, features).data();
  const zRef = tf.tidy(() =>
    tf.matMul(
      tf.concat([features, tf.ones([n, 1])], 1),
      tf.tensor2d(Float32Array.from(wRef), [k, d + 1]).transpose(),
    )
  );
  const pred = await tf.argMax(tf.tensor2d(z, [n, k]), 1).data();
  const predRef = await tf.argMax(zRef, 1).data();
  assert.deepEqual(Array.from(pred), Array.from(predRef));
  tf.dispose([features, zRef]);
  disposeHead(fit);
});

Deno.test("fitHead() agrees with the float64 TypeScript Newton reference on random problems", async () => {
  for (
    const spec of [
      { n: 120, dim: 5, numClasses: 3, lambda: 0.3, seed: 1 },
      { n: 200, dim: 12, numClasses: 5, lambda: 2, seed: 2 },
      { n: 90, dim: 8, numClasses: 4, lambda: 0.05, seed: 3, uniform: true },
    ]
  ) {
    const { train, alpha, problem64 } = randomProblem(spec);
    const fit = await fitHead(train, { lambda: spec.lambda, alpha });
    const w = await weightsOf(fit.weights);
    const ref = fitHead64(problem64);
    assert.ok(fit.converged, `seed ${spec.seed}: relative gradient ${fit.relativeGradNorm}`);
    // λ-strong convexity: ‖W − W*‖_F ≤ ‖∇J(W)‖_F / λ, plus float32 rounding of W itself
    const distance = Math.sqrt(w.reduce((s, v, q) => s + (v - ref[q]) ** 2, 0));
    const bound = fit.gradNorm / spec.lambda + 1e-6 * Math.hypot(...ref);
    assert.ok(distance <= bound, `seed ${spec.seed}: ‖W − W*‖ = ${distance} > ${bound}`);
    assert.ok(
      relativeFrobenius(w, ref) < 1e-3,
      `seed ${spec.seed}: relative error ${relativeFrobenius(w, ref)}`,
    );
    tf.dispose(train.features);
    disposeHead(fit);
  }
});

Deno.test("fitHead() weights are real: α·c ≡ λ/c, α_i = 0 ≡ removal, duplication ≡ α_i = 2", async () => {
  const spec = { n: 150, dim: 6, numClasses: 4, lambda: 1, seed: 7 };
  const { train, alpha, rows } = randomProblem(spec);
  const solve = async (features: tf.Tensor2D, labels: Int32Array, a: Float32Array, lambda: number) => {
    const fit = await fitHead({ features, labels }, { lambda, alpha: a, tol: 1e-7, numClasses: 4 });
    const w = await weightsOf(fit.weights);
    disposeHead(fit);
    return w;
  };
  const base = await solve(train.features, train.labels, alpha, 1);
  // scaling: J(W; cα, λ) = c·J(W; α, λ/c)
  const scaled = await solve(train.features, train.labels, alpha.map((a) => 3 * a), 3);
  assertClose(scaled, base, { atol: 2e-4, what: "α·3 with λ·3" });
  // removal: α_0 = 0 equals dropping row 0
  const zeroed = alpha.slice();
  zeroed[0] = 0;
  const removedFeatures = tf.tensor2d(rows.subarray(spec.dim), [spec.n - 1, spec.dim]);
  const a = await solve(train.features, train.labels, zeroed, 1);
  const b = await solve(removedFeatures, train.labels.subarray(1), alpha.subarray(1), 1);
  assertClose(a, b, { atol: 2e-4, what: "α_0 = 0 vs removal" });
  assert.ok(maxAbsDiff(a, base) > 1e-3, "removing a point must change W");
  // duplication: row 5 twice with α = (α_5, α_5) equals α_5 doubled
  const dupFeatures = tf.concat([train.features, train.features.slice([5, 0], [1, -1])]) as tf.Tensor2D;
  const dupLabels = Int32Array.from([...train.labels, train.labels[5]]);
  const c = await solve(dupFeatures, dupLabels, Float32Array.from([...alpha, alpha[5]]), 1);
  const doubled = alpha.slice();
  doubled[5] *= 2;
  const d = await solve(train.features, train.labels, doubled, 1);
  assertClose(c, d, { atol: 2e-4, what: "duplicate vs α_5·2" });
  tf.dispose([train.features, removedFeatures, dupFeatures]);
});

Deno.test("fitHead() warm start from a previous fit converges in a few iterations", async () => {
  const { train, alpha } = randomProblem({ n: 400, dim: 16, numClasses: 6, lambda: 0.5, seed: 11 });
  const cold = await fitHead(train, { lambda: 0.5, alpha });
  const changed = alpha.map((a, i) => a * (1 + 0.02 * Math.sin(i)));
  const warm = await fitHead(train, { lambda: 0.5, alpha: changed, init: cold });
  const recold = await fitHead(train, { lambda: 0.5, alpha: changed });
  assert.ok(warm.converged && recold.converged);
  assert.ok(warm.iterations * 2 <= recold.iterations, `warm ${warm.iterations} vs cold ${recold.iterations}`);
  assertClose(await weightsOf(warm.weights), await weightsOf(recold.weights), {
    atol: 1e-3,
    what: "warm vs cold",
  });
  tf.dispose(train.features);
  [cold, warm, recold].forEach(disposeHead);
});

Deno.test("fitHead() reports gradNorm truthfully and never claims convergence it did not reach", async () => {
  const { train, alpha, problem64 } = randomProblem({ n: 100, dim: 4, numClasses: 3, lambda: 0.5, seed: 5 });
  const capped = await fitHead(train, { lambda: 0.5, alpha, maxIter: 2 });
  assert.equal(capped.converged, false);
  assert.equal(capped.stopReason, "max iterations");
  const grad = (await import("../_reference_head.ts")).objective64(
    problem64,
    Float64Array.from(await weightsOf(capped.weights)),
  );
  assertClose(capped.gradNorm, Math.hypot(...grad.gradient), { rtol: 1e-3, what: "gradNorm" });
  const tight = await fitHead(train, { lambda: 0.5, alpha, tol: 1e-12 });
  assert.equal(tight.converged, tight.relativeGradNorm <= 1e-12);
  if (!tight.converged) assert.equal(tight.stopReason, "precision floor");
  tf.dispose(train.features);
  disposeHead(capped);
  disposeHead(tight);
});

Deno.test("fitHead() rejects bad inputs with errors that name the problem", async () => {
  const features = tf.tensor2d([[0, 1], [1, 0], [1, 1]]);
  const labels = Int32Array.from([0, 1, 0]);
  const cases: [Record<string, unknown>, RegExp, Int32Array?, tf.Tensor2D?][] = [
    [{ lambda: 0 }, /lambda must be/],
    [{ lambda: -1 }, /lambda must be/],
    [{ lambda: NaN }, /lambda must be/],
    [{ lambda: 1, alpha: Float32Array.from([1, -1, 1]) }, /alpha\[1\] = -1/],
    [{ lambda: 1, alpha: Float32Array.from([1, NaN, 1]) }, /alpha\[1\] = NaN/],
    [{ lambda: 1, alpha: Float32Array.from([1, 1]) }, /alpha has 2 entries for 3 rows/],
    [{ lambda: 1, numClasses: 2 }, /label 5 at row 2 is outside 0\.\.1/, Int32Array.from([0, 1, 5])],
    [{ lambda: 1 }, /3 labels for 2 feature rows/, labels, tf.tensor2d([[0, 1], [1, 0]])],
    [{ lambda: 1 }, /feature row 1 contains NaN or Inf/, labels, tf.tensor2d([[0, 1], [NaN, 0], [1, 1]])],
    [{ lambda: 1, init: tf.zeros([2, 2]) }, /init has shape \[2,2\], expected \[2,3\]/],
  ];
  for (const [options, message, y, x] of cases) {
    await assert.rejects(
      fitHead({ features: x ?? features, labels: y ?? labels }, options as { lambda: number }),
      (e: Error) => e instanceof RangeError && message.test(e.message),
      `expected ${message}`,
    );
  }
});

Deno.test("fitHead() leaks no tensors", async () => {
  const { train, alpha } = randomProblem({ n: 80, dim: 5, numClasses: 3, lambda: 1, seed: 9 });
  const before = tf.memory().numTensors;
  const fit = await fitHead(train, { lambda: 1, alpha });
  const refit = await fitHead(train, { lambda: 1, alpha, init: fit });
  disposeHead(fit);
  disposeHead(refit);
  assert.equal(tf.memory().numTensors, before);
  assert.ok((await frobeniusNorm(train.features)) > 0);
  tf.dispose(train.features);
});

Deno.test("fitHead lets the event loop run during a long fit (Ctrl-C and timers are not held off)", async () => {
  const { train } = randomProblem({ n: 6000, dim: 256, numClasses: 80, lambda: 0.01, seed: 3 });
  let timerAt = Infinity;
  const timer = setTimeout(() => (timerAt = performance.now()), 0);
  const start = performance.now();
  const fit = await fitHead(train, { lambda: 0.01, tol: 1e-7 });
  const end = performance.now();
  clearTimeout(timer);
  // without yielding, every await in the solver is a microtask and the timer fires only after fitHead returns
  assert.ok(end - start > 250, `the fit took ${(end - start).toFixed(0)} ms; the check needs a longer one`);
  assert.ok(
    timerAt < end - 100,
    `timer at ${(timerAt - start).toFixed(0)} ms of ${(end - start).toFixed(0)} ms`,
  );
  disposeHead(fit);
  tf.dispose(train.features);
});
