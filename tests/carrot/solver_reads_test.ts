/**
 * Issue 15: reads are the cost model on WebGPU. Every GPU→CPU read of the solvers goes through `_reads.ts`
 * (checked by counting `Tensor.prototype.data` calls too), L-BFGS reads ≤ 1.5 times per iteration and block CG
 * ≤ 0.25 times, on every backend, with today's numerical tolerances; and the solvers' failure modes are detected,
 * reported and survived.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { disposeHead, fitHead } from "../../lib/carrot/head.ts";
import { testInfluence, validationAlphaGradient } from "../../lib/carrot/influence.ts";
import { blockConjugateGradient, type CgResult } from "../../lib/carrot/_cg.ts";
import { minimizeLbfgs } from "../../lib/carrot/_lbfgs.ts";
import { readCount, readPacked, readScalar, readValues } from "../../lib/carrot/_reads.ts";
import { fitHead64 } from "../_reference_head.ts";
import { alphaGradient64 } from "../_reference_influence.ts";
import { availableBackends, problemWithVal, randomProblem } from "../_problems.ts";
import { relMax } from "../_assert.ts";

const backends = await availableBackends();

/** Every `Tensor.data()` call of the process, helper or not: the helper's count must match it. */
let rawReads = 0;
const originalData = tf.Tensor.prototype.data;
tf.Tensor.prototype.data = function (this: tf.Tensor) {
  rawReads++;
  return originalData.call(this);
} as typeof originalData;

/** Runs `work` and returns its result with the reads counted by the helper and by the raw hook. */
async function counted<T>(work: () => Promise<T>): Promise<{ result: T; reads: number; raw: number }> {
  const [helper, raw] = [readCount(), rawReads];
  const result = await work();
  return { result, reads: readCount() - helper, raw: rawReads - raw };
}

Deno.test("readValues / readScalar / readPacked count one read each and return the values", async () => {
  await selectBackend("cpu", { quiet: true });
  const a = tf.tensor1d([1, 2, 3]), b = tf.scalar(7), c = tf.tensor1d([4, 5], "int32");
  const before = readCount();
  const tally = { reads: 0 };
  assert.deepEqual(Array.from(await readValues(a, tally)), [1, 2, 3]);
  assert.equal(await readScalar(b, tally), 7);
  const [x, y, z] = await readPacked([a, b, c], tally);
  assert.deepEqual([Array.from(x), Array.from(y), Array.from(z)], [[1, 2, 3], [7], [4, 5]]);
  assert.equal(readCount() - before, 3);
  assert.equal(tally.reads, 3);
  tf.dispose([a, b, c]);
});

for (const backend of ["cpu", "wasm", "webgpu"] as const) {
  // skipped only where navigator.gpu.requestAdapter() returns no adapter at all
  Deno.test({
    name:
      `fitHead reads ≤ 1.5 times per iteration on ${backend}, all through the counter, and matches float64`,
    ignore: !backends.includes(backend),
  }, async () => {
    await selectBackend(backend, { threads: 1, quiet: true });
    const specs = [
      { n: 150, dim: 6, numClasses: 4, lambda: 0.5, seed: 31 },
      { n: 200, dim: 12, numClasses: 5, lambda: 2, seed: 32 },
    ];
    for (const spec of specs) {
      const { train, alpha, problem64 } = randomProblem(spec);
      const ref = fitHead64(problem64);
      for (const preconditioner of ["none", "ekfac"] as const) {
        const run = await counted(() => fitHead(train, { lambda: spec.lambda, alpha, preconditioner }));
        const fit = run.result;
        const what = `${backend} seed ${spec.seed} ${preconditioner}`;
        assert.ok(fit.converged, `${what}: relative gradient ${fit.relativeGradNorm}`);
        assert.equal(run.reads, fit.reads, `${what}: HeadFit.reads`);
        assert.equal(run.raw, run.reads, `${what}: a read bypassed the counter`);
        assert.ok(
          fit.reads / fit.iterations <= 1.5,
          `${what}: ${fit.reads} reads / ${fit.iterations} iterations`,
        );
        assert.equal(fit.preconditioner, preconditioner);
        const w = (await fit.weights.data()) as Float32Array;
        const distance = Math.sqrt(w.reduce((s, v, q) => s + (v - ref[q]) ** 2, 0));
        const bound = fit.gradNorm / spec.lambda + 1e-6 * Math.hypot(...ref);
        assert.ok(distance <= bound, `${what}: ‖W − W*‖ = ${distance} > ${bound}`);
        assert.ok(relMax(w, ref) < 1e-3, `${what}: relative error ${relMax(w, ref)}`);
        disposeHead(fit);
      }
      tf.dispose(train.features);
    }
  });

  Deno.test({
    name:
      `block CG reads ≤ 0.25 times per iteration on ${backend} (plain and EK-FAC preconditioned) and matches float64`,
    ignore: !backends.includes(backend),
  }, async () => {
    await selectBackend(backend, { threads: 1, quiet: true });
    const spec = { n: 150, dim: 8, numClasses: 5, lambda: 0.5, seed: 62 };
    const p = problemWithVal(spec, 40);
    const fit = await fitHead(p.train, { lambda: spec.lambda, alpha: p.alpha, tol: 1e-7 });
    const g64 = alphaGradient64(p.problem64, fitHead64(p.problem64), p.xVal, p.val.labels);
    for (const preconditioner of ["none", "ekfac"] as const) {
      const what = `${backend} ${preconditioner}`;
      const run = await counted(() =>
        validationAlphaGradient(fit, p.train, p.val, { tol: 1e-8, preconditioner })
      );
      const g = run.result;
      assert.equal(run.raw, run.reads, `${what}: a read bypassed the counter`);
      assert.ok(
        g.cgReads / g.cgIterations <= 0.25,
        `${what}: ${g.cgReads} CG reads / ${g.cgIterations} iterations`,
      );
      assert.equal(g.cgPreconditioner.used, preconditioner === "ekfac");
      assert.equal(g.cgPreconditioner.failure, undefined, `${what}: EK-FAC was dropped`);
      assert.ok(g.cgResidual <= 1e-6, `${what}: residual ${g.cgResidual}`);
      assert.ok(relMax(g.gradient, g64) < 1e-3, `${what}: vs float64 reference ${relMax(g.gradient, g64)}`);
    }
    // block CG over several test points: per-column stopping by masks, still ≤ 0.25 reads per iteration
    const solves: Omit<CgResult, "solution">[] = [];
    const run = await counted(() =>
      testInfluence(fit, p.train, p.val, {
        topK: 3,
        blockSize: 16,
        tol: 1e-7,
        method: "exact",
        onCgSolve: (d) => solves.push(d),
      })
    );
    assert.equal(run.raw, run.reads, `${backend} testInfluence: a read bypassed the counter`);
    assert.equal(solves.length, 3);
    for (const solve of solves) {
      assert.ok(solve.reads / solve.iterations <= 0.25, `${backend}: ${solve.reads} / ${solve.iterations}`);
      assert.ok(
        Math.max(...solve.relativeResiduals) <= 1e-7,
        `${backend}: residuals ${solve.relativeResiduals}`,
      );
    }
    disposeHead(fit);
    p.dispose();
  });
}

/** H = diag(h) on vectors [b, n]. */
const diagonalOperator = (h: Float32Array) => {
  const d = tf.tensor1d(h);
  return { apply: (v: tf.Tensor) => tf.mul(v, d), dispose: () => d.dispose() };
};

Deno.test("block CG: a preconditioner that breaks CG is detected, reported and dropped; the solve still converges", async () => {
  await selectBackend("cpu", { quiet: true });
  const n = 100;
  const spread = diagonalOperator(Float32Array.from({ length: n }, (_, i) => 1 + i));
  const rhs = tf.randomNormal([2, n], 0, 1, "float32", 3);
  const cases: [string, (v: tf.Tensor) => tf.Tensor, CgResult["preconditioner"]["failure"]][] = [
    // M⁻¹ = −I: pᵀHp > 0 but rᵀM⁻¹r < 0
    ["negative definite", (v) => tf.neg(v), "non-positive curvature"],
    // M⁻¹ singular on half the coordinates: those residual components never move
    ["singular", (v) => tf.mul(v, tf.concat([tf.zeros([n / 2]), tf.ones([n / 2])])), "stall"],
  ];
  for (const [name, preconditioner, failure] of cases) {
    const result = await blockConjugateGradient(spread.apply, rhs, { tol: 1e-6, preconditioner });
    assert.equal(result.preconditioner.used, true);
    assert.equal(result.preconditioner.failure, failure, name);
    assert.ok(
      result.preconditioner.restartedAt! > 0 && result.preconditioner.restartedAt! < result.iterations,
    );
    assert.ok(Math.max(...result.relativeResiduals) <= 1e-6, `${name}: ${result.relativeResiduals}`);
    assert.ok(result.reads / result.iterations <= 0.25);
    result.solution.dispose();
  }
  // residual growth: a positive definite M⁻¹ that shrinks the stiff directions 1000× lets ‖r‖ grow > 100×
  const h = Float32Array.from({ length: 40 }, (_, i) => (i % 2 ? 1e6 : 1) * (1 + i / 40));
  const stiff = diagonalOperator(h);
  const m = tf.tensor1d(Float32Array.from(h, (v) => (v > 10 ? 1e-3 : 1)));
  const grown = await blockConjugateGradient(stiff.apply, tf.ones([1, 40]), {
    tol: 1e-6,
    maxIter: 400,
    preconditioner: (v) => tf.mul(v, m),
  });
  assert.equal(grown.preconditioner.failure, "residual growth");
  assert.ok(grown.relativeResiduals[0] <= 1e-6, `after the restart: ${grown.relativeResiduals[0]}`);
  // a good preconditioner (Jacobi on a diagonal H) is kept and converges at once
  const jacobi = await blockConjugateGradient(spread.apply, rhs, {
    preconditioner: (v) => tf.div(v, tf.range(1, n + 1)),
  });
  assert.deepEqual(jacobi.preconditioner, { used: true });
  assert.ok(jacobi.iterations <= 4);
  tf.dispose([rhs, m, grown.solution, jacobi.solution]);
  spread.dispose();
  stiff.dispose();
});

Deno.test("L-BFGS: pairs with sᵀy ≤ 0 in float32 are skipped and counted; a non-descent preconditioner is dropped", async () => {
  await selectBackend("cpu", { quiet: true });
  // past float32's floor (tol 1e-12) the curvature pairs are rounding noise: some have sᵀy ≤ 0
  let skipped = 0;
  for (const seed of [2, 3, 4]) {
    const { train, alpha } = randomProblem({ n: 200, dim: 8, numClasses: 4, lambda: 0.1, seed });
    const fit = await fitHead(train, { lambda: 0.1, alpha, tol: 1e-12, maxIter: 300 });
    assert.equal(fit.converged, false);
    assert.equal(fit.stopReason, "precision floor");
    assert.ok(fit.curvature.length <= 20);
    skipped += fit.skippedPairs;
    disposeHead(fit);
    tf.dispose(train.features);
  }
  assert.ok(skipped > 0, "no pair was skipped past the precision floor");
  // M⁻¹ = −I turns the first direction uphill: the run drops it and converges without it
  const target = tf.tensor2d([[1, -2, 3], [0.5, 4, -1]]);
  const quadratic = {
    evaluate: (x: tf.Tensor2D) =>
      tf.tidy(() => ({
        value: tf.mul(0.5, tf.sum(tf.square(tf.sub(x, target)))) as tf.Scalar,
        gradient: tf.sub(x, target) as tf.Tensor2D,
      })),
  };
  const x0 = tf.zeros([2, 3]) as tf.Tensor2D;
  const result = await minimizeLbfgs(quadratic, x0, {
    gradTol: 1e-5,
    maxIter: 50,
    preconditioner: (v) => tf.neg(v),
  });
  assert.equal(result.preconditionerDropped, true);
  assert.equal(result.stopReason, "gradient tolerance");
  assert.ok(relMax(await result.x.data(), await target.data()) < 1e-5);
  tf.dispose([target, x0, result.x, result.gradient, ...result.history.flatMap((h) => [h.s, h.y])]);
});
