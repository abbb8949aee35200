import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { disposeHead, fitHead, type HeadFit } from "../../lib/carrot/head.ts";
import {
  chooseHessianSolver,
  directFactorBytes,
  factorHessian,
  HessianNotPositiveDefiniteError,
  solverCosts,
  type SolverReport,
} from "../../lib/carrot/direct.ts";
import { selfInfluence, testInfluence, type TestInfluenceOptions } from "../../lib/carrot/influence.ts";
import { choleskySolve } from "../../lib/carrot/_linalg.ts";
import type { LabeledFeatures } from "../../lib/carrot/labeled_features.ts";
import { Random } from "../../lib/random.ts";
import { hessian64 } from "../_reference_head.ts";
import { randomProblem } from "../_problems.ts";
import { assertClose, relMax } from "../_assert.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

/** Train and test splits drawn from the same class means; α ~ U[0.5, 1.5] on train. */
function problem(
  spec: { n: number; dim: number; numClasses: number; lambda: number; seed: number },
  m: number,
) {
  const full = randomProblem({ ...spec, n: spec.n + m });
  const split = (start: number, count: number): LabeledFeatures => ({
    features: full.train.features.slice([start, 0], [count, spec.dim]) as tf.Tensor2D,
    labels: full.train.labels.slice(start, start + count),
  });
  const train = split(0, spec.n), test = split(spec.n, m);
  full.train.features.dispose();
  const problem64 = {
    ...full.problem64,
    x: full.problem64.x.slice(0, spec.n),
    y: train.labels,
    alpha: Float64Array.from(full.alpha.slice(0, spec.n)),
  };
  return {
    train,
    test,
    alpha: full.alpha.slice(0, spec.n),
    problem64,
    dispose: () => tf.dispose([train.features, test.features]),
  };
}

/** All scores I `[n, t]` (train-major) of `testInfluence` and the solver report. */
async function scoreMatrix(
  fit: HeadFit,
  train: LabeledFeatures,
  test: LabeledFeatures,
  options: TestInfluenceOptions,
) {
  const n = train.labels.length, t = test.labels.length, matrix = new Float32Array(n * t);
  let report: SolverReport | undefined;
  await testInfluence(fit, train, test, {
    ...options,
    onBlock: (start, scores, b) => {
      for (let i = 0; i < n; i++) for (let j = 0; j < b; j++) matrix[i * t + start + j] = scores[i * b + j];
    },
    onSolver: (r) => report = r,
  });
  assert.ok(report, "onSolver was not called");
  return { matrix, report };
}

Deno.test("factorHessian() solves H X = G like the float64 dense Cholesky reference, for any tiling", async () => {
  const p = problem({ n: 150, dim: 8, numClasses: 5, lambda: 0.7, seed: 91 }, 0);
  const fit = await fitHead(p.train, { lambda: 0.7, alpha: p.alpha, tol: 1e-7 });
  const k = 5, width = 9, size = k * width, b = 3, rng = new Random(2);
  const g = Float64Array.from({ length: b * size }, () => rng.normal());
  // reference: the float64 Hessian at the fit's (float32) weights, solved by float64 Cholesky
  const dense = hessian64(p.problem64, Float64Array.from(await fit.weights.data()));
  const columns = new Float64Array(size * b); // [size, b]
  for (let j = 0; j < b; j++) for (let q = 0; q < size; q++) columns[q * b + j] = g[j * size + q];
  const x64 = choleskySolve(dense, size, columns, b);
  const expected = Float64Array.from(
    { length: b * size },
    (_, t) => x64[(t % size) * b + Math.floor(t / size)],
  );
  const before = tf.memory().numTensors;
  // 9 = one tile per class; 4 → 3 tiles of 3 per class; 5 → 2 uneven tiles (4, 5) per class; chunkFloats 500:
  // the assembly in chunks of 55 samples and 1 class
  const cases: [number, number | undefined][] = [[9, undefined], [4, undefined], [5, 500]];
  for (const [tileSize, chunkFloats] of cases) {
    const factor = await factorHessian(fit, p.train, { tileSize, chunkFloats, tol: 1e-7 });
    const rhs = tf.tensor3d(Float32Array.from(g), [b, k, width]);
    const x = await factor.solve(rhs);
    const error = relMax(await x.data(), expected);
    assert.ok(error < 1e-5, `tileSize ${tileSize}: relative error ${error} vs float64 Cholesky`);
    const { diagnostics } = factor;
    assert.equal(diagnostics.method, "direct");
    assert.equal(diagnostics.tiles, k * Math.ceil(width / tileSize));
    assert.equal(diagnostics.damping, 0);
    assert.ok(diagnostics.minPivotRatio >= 1 - 1e-3, `smallest pivot ${diagnostics.minPivotRatio}·λ < λ`);
    // the float32 Hessian-vector product bounds the measurable residual at ~1e-6 for a random G
    assert.ok(diagnostics.relativeResidual <= 1e-5, `residual ${diagnostics.relativeResidual}`);
    assert.equal(diagnostics.bytes, directFactorBytes(fit, p.train, { tileSize, chunkFloats }));
    tf.dispose([rhs, x]);
    factor.dispose();
  }
  assert.equal(tf.memory().numTensors, before, "leaked tensors");
  disposeHead(fit);
  p.dispose();
});

Deno.test('testInfluence() and selfInfluence(): method "direct" equals "exact" (CG at tol 1e-8); "auto" measures CG on the first block, factors past the break-even and says why', async () => {
  const p = problem({ n: 120, dim: 6, numClasses: 4, lambda: 0.5, seed: 81 }, 9);
  const fit = await fitHead(p.train, { lambda: 0.5, alpha: p.alpha, tol: 1e-7 });
  const exact = await scoreMatrix(fit, p.train, p.test, {
    topK: 5,
    blockSize: 4,
    tol: 1e-8,
    method: "exact",
    preconditioner: "none",
  });
  assert.deepEqual(exact.report, { requested: "exact", method: "exact", reason: "requested" });
  const before = tf.memory().numTensors;
  const direct = await scoreMatrix(fit, p.train, p.test, {
    topK: 5,
    blockSize: 4,
    method: "direct",
    direct: { tileSize: 3 },
  });
  assert.ok(
    relMax(direct.matrix, exact.matrix) < 1e-4,
    `direct vs CG ${relMax(direct.matrix, exact.matrix)}`,
  );
  assert.equal(direct.report.method, "direct");
  assert.equal(direct.report.reason, "requested");
  assert.equal(direct.report.direct?.solves, 3); // 9 test points in blocks of 4
  assert.ok(direct.report.direct!.relativeResidual <= 1e-5); // the default refinement target
  // the cost model: n = 120, d + 1 = 7, K = 4, N = 28 — direct 120·7²·(4·5/2) + 28³/6, CG per solve and iteration
  // 2·120·7·4
  const costs = solverCosts(fit, p.train, 9, 100);
  assertClose(costs.direct, 120 * 49 * 10 + 28 ** 3 / 6, { rtol: 1e-12 });
  assert.equal(costs.cg, 9 * 100 * 2 * 120 * 7 * 4);
  // "auto" (also the default) measures: the first block runs block CG up to the break-even ⌈F / (9 c)⌉ = 2
  // iterations, at which CG for the 9 points would cost as much as factoring; CG needs more here, so H is factored
  // and solves all three blocks
  const breakEven = Math.ceil(costs.direct / (9 * 2 * 120 * 7 * 4));
  assert.equal(breakEven, 2);
  for (const options of [{ method: "auto" as const }, {}]) {
    const cgRuns: number[] = [];
    const auto = await scoreMatrix(fit, p.train, p.test, {
      ...options,
      blockSize: 4,
      onCgSolve: (d) => cgRuns.push(d.iterations),
    });
    assert.deepEqual(cgRuns, [breakEven]);
    assert.equal(auto.report.method, "direct");
    assert.equal(
      auto.report.reason,
      "first block by block CG: not converged in 2 iterations, the break-even against factorising H " +
        "(≈ 0.0000625 GMAC for 9 solves): direct",
    );
    assert.equal(auto.report.direct?.solves, 3);
    assert.ok(relMax(auto.matrix, exact.matrix) < 1e-4, `auto vs CG ${relMax(auto.matrix, exact.matrix)}`);
  }
  // a well-conditioned H (λ = 50) and one point: CG converges below its break-even ⌈F / c⌉ = 10 and stays
  const easy = await fitHead(p.train, { lambda: 50, alpha: p.alpha, tol: 1e-7 });
  const one = {
    features: p.test.features.slice([0, 0], [1, -1]) as tf.Tensor2D,
    labels: p.test.labels.subarray(0, 1),
  };
  const cgRuns: number[] = [];
  const stays = await scoreMatrix(easy, p.train, one, { onCgSolve: (d) => cgRuns.push(d.iterations) });
  const easyExact = await scoreMatrix(easy, p.train, one, { method: "exact", tol: 1e-8 });
  assert.equal(cgRuns.length, 1);
  assert.ok(cgRuns[0] <= 10, `${cgRuns[0]} CG iterations`);
  assert.deepEqual(stays.report, {
    requested: "auto",
    method: "exact",
    reason: `first block by block CG: ${cgRuns[0]} iterations ≤ 10, the break-even against factorising H ` +
      "(≈ 0.0000625 GMAC for 1 solves): block CG",
  });
  assert.ok(
    relMax(stays.matrix, easyExact.matrix) < 1e-4,
    `stays vs CG ${relMax(stays.matrix, easyExact.matrix)}`,
  );
  one.features.dispose();
  disposeHead(easy);
  // with an iteration estimate the costs are compared up front
  const estimated = await scoreMatrix(fit, p.train, p.test, { direct: { cgIterationsEstimate: 100 } });
  assert.equal(estimated.report.method, "direct");
  assert.match(
    estimated.report.reason,
    /^K\(d\+1\) = 28 ≤ maxSize 16384; factorising H ≈ 0\.0000625 GMAC, block CG for 9 solves at ~100 iterations ≈ 0\.00605 GMAC$/,
  );
  const oneSolve = await chooseHessianSolver(fit, p.train, "auto", {
    rightHandSides: 1,
    cgIterationsEstimate: 1,
  });
  assert.equal(oneSolve.factor, undefined);
  assert.equal(oneSolve.report.method, "exact");
  assert.match(
    oneSolve.report.reason,
    /block CG for 1 solves at ~1 iterations ≈ 0\.00000672 GMAC: block CG$/,
  );
  const selfExact = await selfInfluence(fit, p.train, p.train, { blockSize: 50, tol: 1e-8, method: "exact" });
  let selfReport: SolverReport | undefined;
  const selfDirect = await selfInfluence(fit, p.train, p.train, {
    method: "direct",
    onSolver: (r) => selfReport = r,
  });
  assert.ok(relMax(selfDirect, selfExact) < 1e-4, `self-influence ${relMax(selfDirect, selfExact)}`);
  assert.equal(selfReport?.method, "direct");
  assert.equal(tf.memory().numTensors, before, "leaked tensors");
  disposeHead(fit);
  p.dispose();
});

Deno.test("factorHessian(): a Hessian that is not positive definite in float32 is damped and reported, or falls back to CG", async () => {
  // rank-3 features copied into 12 scaled columns: with λ = 1e-9, 9 curvatures of H are λ in exact arithmetic and
  // far below float32's resolution of its ~10³-sized entries
  const n = 90, rng = new Random(5), base = 3, dim = 12;
  const rows = new Float32Array(n * dim), labels = Int32Array.from({ length: n }, (_, i) => i % 3);
  for (let i = 0; i < n; i++) {
    const z = Array.from({ length: base }, (_, q) => rng.normal() + (q === labels[i] ? 2 : 0));
    for (let c = 0; c < dim; c++) rows[i * dim + c] = 3 * (1 + c / 7) * z[c % base];
  }
  const train = { features: tf.tensor2d(rows, [n, dim]), labels };
  const fitted = await fitHead(train, { lambda: 1 });
  const fit = { ...fitted, lambda: 1e-9 }; // the same W, a tiny λ: H = PSD part + 1e-9 I
  const before = tf.memory().numTensors;
  const factor = await factorHessian(fit, train, { tileSize: 4 });
  const { diagnostics } = factor;
  assert.ok(diagnostics.dampingRetries >= 1, "the failed pivot was not detected");
  assert.ok(diagnostics.damping > 0, "no damping reported");
  assert.ok(diagnostics.minPivotRatio >= 0.5, `accepted a pivot ${diagnostics.minPivotRatio}·(λ + δ)`);
  const g = tf.tidy(() => tf.randomNormal([2, 3, dim + 1], 0, 1, "float32", 3)) as tf.Tensor3D;
  const x = await factor.solve(g);
  assert.ok((await x.data()).every(Number.isFinite), "non-finite solution");
  // refinement cannot remove δ ≫ λ along the 9 flat directions: the residual it reached is reported, not hidden
  assert.ok(diagnostics.relativeResidual > 1e-3 && Number.isFinite(diagnostics.relativeResidual));
  tf.dispose([g, x]);
  factor.dispose();
  await assert.rejects(
    () => factorHessian(fit, train, { tileSize: 4, maxDampingRetries: 0 }),
    (error: unknown) => error instanceof HessianNotPositiveDefiniteError && error.damping === 0,
  );
  const chosen = await chooseHessianSolver(fit, train, "direct", { tileSize: 4, maxDampingRetries: 0 });
  assert.equal(chosen.factor, undefined);
  assert.equal(chosen.report.method, "exact");
  assert.match(chosen.report.reason, /not positive definite in float32.*: block CG$/);
  const damped = await chooseHessianSolver(fit, train, "auto", { tileSize: 4 });
  assert.equal(damped.report.method, "direct");
  assert.match(damped.report.reason, /damping δ = .* in the factor/);
  damped.factor!.dispose();
  assert.equal(tf.memory().numTensors, before, "leaked tensors");
  disposeHead(fitted);
  train.features.dispose();
});

Deno.test("factorHessian() refuses a factorisation over the memory budget; testInfluence falls back to CG and says so", async () => {
  const p = problem({ n: 60, dim: 5, numClasses: 3, lambda: 1, seed: 7 }, 4);
  const fit = await fitHead(p.train, { lambda: 1, alpha: p.alpha, tol: 1e-7 });
  const bytes = directFactorBytes(fit, p.train);
  // 4 · [trapezoid (18 + 12 + 6)·6 + 2·18·6 + 2K(d+1)² + min(2²⁴, n(d+1)K) + 2n(d+1)]
  assert.equal(bytes, 4 * (216 + 216 + 216 + 1080 + 720));
  await assert.rejects(() => factorHessian(fit, p.train, { memoryBudget: bytes - 1 }), /memoryBudget/);
  const before = tf.memory().numTensors;
  const exact = await scoreMatrix(fit, p.train, p.test, { tol: 1e-8, method: "exact" });
  const refused = await scoreMatrix(fit, p.train, p.test, {
    method: "direct",
    tol: 1e-8,
    direct: { memoryBudget: bytes - 1 },
  });
  assert.equal(refused.report.method, "exact");
  assert.match(refused.report.reason, /needs ≈ .* > memoryBudget .*: block CG/);
  assert.deepEqual(refused.matrix, exact.matrix);
  const small = await scoreMatrix(fit, p.train, p.test, { method: "auto", direct: { maxSize: 17 } });
  assert.deepEqual(small.report, {
    requested: "auto",
    method: "exact",
    reason: "K(d+1) = 18 > maxSize 17: block CG",
  });
  assert.equal(tf.memory().numTensors, before, "leaked tensors");
  disposeHead(fit);
  p.dispose();
});

Deno.test('testInfluence(): the "auto" preconditioner runs CG block 1 plain, block 2 with EK-FAC, then keeps the cheaper', async () => {
  // 40 test points in 10 blocks of 4; multiply-adds per solve and iteration: the HVP 2 n (d+1) K, the EK-FAC
  // inverse 2 (K (d+1)² + K² (d+1))
  const cases = [
    { n: 120, dim: 10, k: 4, lambda: 1, ekfac: true }, // EK-FAC cuts the iterations enough to pay for itself
    { n: 60, dim: 30, k: 10, lambda: 10, ekfac: false }, // a well-conditioned H: it does not
  ];
  for (const { n, dim, k, lambda, ekfac } of cases) {
    const width = dim + 1, hvp = 2 * n * width * k, apply = 2 * (k * width ** 2 + k ** 2 * width);
    const full = randomProblem({ n: n + 40, dim, numClasses: k, lambda, seed: 5 });
    const train = {
      features: full.train.features.slice([0, 0], [n, -1]) as tf.Tensor2D,
      labels: full.train.labels.slice(0, n),
    };
    const test = {
      features: full.train.features.slice([n, 0], [40, -1]) as tf.Tensor2D,
      labels: full.train.labels.slice(n),
    };
    const fit = await fitHead(train, { lambda, alpha: full.alpha.slice(0, n), tol: 1e-7 });
    const before = tf.memory().numTensors;
    const runs: { iterations: number; used: boolean }[] = [];
    const raced = await scoreMatrix(fit, train, test, {
      method: "exact",
      blockSize: 4,
      onCgSolve: (d) => runs.push({ iterations: d.iterations, used: d.preconditioner.used }),
    });
    const plain = await scoreMatrix(fit, train, test, {
      method: "exact",
      blockSize: 4,
      preconditioner: "none",
    });
    const few = await scoreMatrix(fit, train, test, { method: "exact", blockSize: 6 }); // 7 blocks: no race
    assert.equal(few.report.cgPreconditioner, undefined);
    assert.equal(tf.memory().numTensors, before, "leaked tensors");
    assert.equal(runs.length, 10);
    assert.deepEqual(runs.slice(0, 2).map((r) => r.used), [false, true]);
    // the choice follows the cost model on the recorded iteration counts
    const chosen = runs[1].iterations * (hvp + apply) < runs[0].iterations * hvp;
    assert.equal(chosen, ekfac, `${runs.map((r) => r.iterations)}`);
    assert.deepEqual(runs.slice(2, 10).map((r) => r.used), Array(8).fill(chosen));
    assert.match(
      raced.report.cgPreconditioner ?? "",
      new RegExp(
        `^block 1 plain: ${runs[0].iterations} iterations .*; block 2 EK-FAC-preconditioned: ` +
          `${runs[1].iterations} iterations .*: ${ekfac ? "EK-FAC" : "none"} for the rest$`,
      ),
    );
    assert.equal(plain.report.cgPreconditioner, undefined);
    assert.ok(
      relMax(raced.matrix, plain.matrix) < 1e-4,
      `raced vs plain ${relMax(raced.matrix, plain.matrix)}`,
    );
    disposeHead(fit);
    tf.dispose([full.train.features, train.features, test.features]);
  }
});
