import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { selectBackend } from "../../lib/backend.ts";
import { disposeHead, fitHead, headLogits } from "../../lib/carrot/head.ts";
import {
  exactHessian,
  hessianVectorProduct,
  testInfluence,
  validationAlphaGradient,
} from "../../lib/carrot/influence.ts";
import { alphaFiniteDifference, looExact } from "../../lib/carrot/loo.ts";
import { kendallTau, spearman } from "../../lib/stats.ts";
import { Random } from "../../lib/random.ts";
import { assertClose, fixturePath, relMax } from "../_assert.ts";
import { fitHead64, hessian64 } from "../_reference_head.ts";
import { alphaGradient64 } from "../_reference_influence.ts";
import { problemWithVal } from "../_problems.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

Deno.test("hessianVectorProduct() equals the dense float64 Hessian; CG converges within K(d+1) iterations", async () => {
  const p = problemWithVal({ n: 100, dim: 5, numClasses: 4, lambda: 0.7, seed: 51 }, 30);
  const fit = await fitHead(p.train, { lambda: 0.7, alpha: p.alpha });
  const w = Float64Array.from(await fit.weights.data());
  const dense = hessian64(p.problem64, w);
  const size = 4 * 6, rng = new Random(1);
  const v = Float64Array.from({ length: size * 3 }, () => rng.normal());
  const hv = await hessianVectorProduct(fit, p.train, tf.tensor3d(Float32Array.from(v), [3, 4, 6])).data();
  const expected = new Float64Array(size * 3);
  for (let b = 0; b < 3; b++) {
    for (let r = 0; r < size; r++) {
      for (let c = 0; c < size; c++) expected[b * size + r] += dense[r * size + c] * v[b * size + c];
    }
  }
  assert.ok(relMax(hv, expected) < 1e-5, `HVP relative error ${relMax(hv, expected)}`);
  const exact = await exactHessian(fit, p.train).data();
  assert.ok(relMax(exact, dense) < 1e-5, `exactHessian relative error ${relMax(exact, dense)}`);
  const result = await validationAlphaGradient(fit, p.train, p.val, { tol: 1e-6 });
  assert.ok(result.cgIterations <= size, `CG took ${result.cgIterations} > K(d+1) = ${size} iterations`);
  assert.ok(result.cgResidual <= 1e-6);
  assert.ok(
    result.eigenvalueEstimates.min >= 0.7 * (1 - 1e-3),
    `λ_min estimate ${result.eigenvalueEstimates.min} < λ`,
  );
  const eigen = (await import("../../lib/carrot/_linalg.ts")).symmetricEigen(dense, size).values;
  assertClose(result.eigenvalueEstimates.max, eigen[size - 1], { rtol: 1e-3, what: "λ_max estimate" });
  disposeHead(fit);
  p.dispose();
});

Deno.test("validationAlphaGradient() matches central finite differences with refits and the float64 reference", async () => {
  for (
    const spec of [
      { n: 80, dim: 4, numClasses: 3, lambda: 0.5, seed: 61 },
      { n: 150, dim: 8, numClasses: 5, lambda: 2, seed: 62 },
    ]
  ) {
    const p = problemWithVal(spec, 40);
    const fit = await fitHead(p.train, { lambda: spec.lambda, alpha: p.alpha, tol: 1e-7 });
    const g = await validationAlphaGradient(fit, p.train, p.val, { tol: 1e-8 });
    const g64 = alphaGradient64(p.problem64, fitHead64(p.problem64), p.xVal, p.val.labels);
    assert.ok(
      relMax(g.gradient, g64) < 1e-3,
      `seed ${spec.seed}: vs float64 reference ${relMax(g.gradient, g64)}`,
    );
    const indices = [0, 7, 19, 33];
    const fd = await alphaFiniteDifference(fit, p.train, p.val, indices, { tol: 1e-7, step: 0.05 });
    const picked = indices.map((i) => g.gradient[i]);
    assert.ok(relMax(picked, fd) < 1e-2, `seed ${spec.seed}: vs finite differences ${relMax(picked, fd)}`);
    const exact = await validationAlphaGradient(fit, p.train, p.val, { solver: "exact" });
    assert.ok(relMax(exact.gradient, g64) < 1e-3, `exact solver vs float64 ${relMax(exact.gradient, g64)}`);
    disposeHead(fit);
    p.dispose();
  }
});

Deno.test("validationAlphaGradient() warm-started from a nearby solution converges to the same g in fewer iterations", async () => {
  const spec = { n: 300, dim: 20, numClasses: 10, lambda: 0.5, seed: 64 };
  const p = problemWithVal(spec, 60);
  const fit = await fitHead(p.train, { lambda: spec.lambda, alpha: p.alpha, tol: 1e-7 });
  const cold = await validationAlphaGradient(fit, p.train, p.val, { tol: 1e-7, keepSolution: true });
  assert.deepEqual(cold.solution!.shape, [spec.numClasses, spec.dim + 1]);
  // at the solution itself: the first check already finds the residual below tolerance
  const atSolution = await validationAlphaGradient(fit, p.train, p.val, {
    tol: 1e-5,
    initialSolution: cold.solution,
  });
  assert.ok(atSolution.cgIterations <= 4, `from the solution: ${atSolution.cgIterations} iterations`);
  assert.ok(relMax(atSolution.gradient, cold.gradient) < 1e-4);
  // from the solution of a nearby α (a reweighting step's situation): same g, fewer iterations than from 0
  const nearbyAlpha = p.alpha.map((a, i) => a * (i % 3 === 0 ? 0.9 : 1.05));
  const nearby = await fitHead(p.train, { lambda: spec.lambda, alpha: nearbyAlpha, tol: 1e-7 });
  const fromZero = await validationAlphaGradient(nearby, p.train, p.val, { tol: 1e-7 });
  const warm = await validationAlphaGradient(nearby, p.train, p.val, {
    tol: 1e-7,
    initialSolution: cold.solution,
  });
  assert.equal(cold.solution!.isDisposed, false); // not consumed
  assert.ok(
    relMax(warm.gradient, fromZero.gradient) < 1e-4,
    `warm vs cold ${relMax(warm.gradient, fromZero.gradient)}`,
  );
  assert.ok(
    warm.cgIterations < fromZero.cgIterations,
    `warm ${warm.cgIterations} vs cold ${fromZero.cgIterations} iterations`,
  );
  assert.equal(warm.solution, undefined); // only kept when asked
  cold.solution!.dispose();
  [fit, nearby].forEach(disposeHead);
  p.dispose();
});

const influenceDir = fixturePath("influence");

Deno.test({
  name:
    "validationAlphaGradient() reproduces the NumPy/SciPy influence fixtures and their LOO rank agreement",
  ignore: !influenceDir,
}, async () => {
  for (const file of readdirSync(influenceDir!).filter((f) => f.endsWith(".json"))) {
    const fx = JSON.parse(readFileSync(join(influenceDir!, file), "utf8"));
    const { X, y, a, X_val, y_val } = fx.data;
    const train = { features: tf.tensor2d(X as number[][]), labels: Int32Array.from(y) };
    const val = { features: tf.tensor2d(X_val as number[][]), labels: Int32Array.from(y_val) };
    const fit = await fitHead(train, {
      lambda: fx.lambda,
      alpha: Float32Array.from(a),
      numClasses: fx.K,
      tol: 1e-7,
    });
    const g = await validationAlphaGradient(fit, train, val, { tol: 1e-8 });
    const expected = fx.influence_dLval_da as number[];
    assert.ok(relMax(g.gradient, expected) < 1e-3, `${file}: relative error ${relMax(g.gradient, expected)}`);
    // the fixture's rank statistics are exact functions of its stored changes
    const agreement = fx.loo_rank_agreement;
    assertClose(
      spearman(fx.loo_predicted_change, fx.loo_actual_change),
      agreement.spearman_rho ?? agreement.spearman,
      { atol: 1e-12 },
    );
    assertClose(
      kendallTau(fx.loo_predicted_change, fx.loo_actual_change),
      agreement.kendall_tau_b ?? agreement.kendall,
      { atol: 1e-12 },
    );
    // our own predicted and exact LOO on the fixture problem
    const indices = Array.from({ length: fx.n }, (_, i) => i);
    const loo = await looExact(fit, train, val, indices, { tol: 1e-7 });
    assert.equal(loo.unconverged, 0);
    assertClose(loo.valLossChange, fx.loo_actual_change, { atol: 2e-5, what: `${file} exact LOO` });
    const predicted = indices.map((i) => g.predictedLooChange(i));
    assertClose(
      spearman(predicted, loo.valLossChange),
      spearman(fx.loo_predicted_change, fx.loo_actual_change),
      { atol: 0.02 },
    );
    tf.dispose([train.features, val.features]);
    disposeHead(fit);
  }
});

Deno.test("influence-predicted LOO agrees with exact LOO on a 300-point problem (Spearman ≥ 0.9)", async () => {
  const p = problemWithVal({ n: 300, dim: 10, numClasses: 5, lambda: 1, seed: 71, separation: 0.6 }, 100);
  const fit = await fitHead(p.train, { lambda: 1, alpha: p.alpha, tol: 1e-7 });
  const g = await validationAlphaGradient(fit, p.train, p.val, { tol: 1e-8 });
  const indices = Array.from({ length: 300 }, (_, i) => i);
  const loo = await looExact(fit, p.train, p.val, indices, { tol: 1e-7 });
  const rho = spearman(indices.map((i) => g.predictedLooChange(i)), loo.valLossChange);
  console.log(
    `300-point problem: Spearman(predicted, exact LOO) = ${rho.toFixed(4)}, ${
      loo.refitsPerSecond.toFixed(1)
    } refits/s`,
  );
  assert.ok(rho >= 0.9, `Spearman ${rho}`);
  disposeHead(fit);
  p.dispose();
});

async function identityHessianScores(
  fit: Awaited<ReturnType<typeof fitHead>>,
  train: { features: tf.Tensor2D; labels: Int32Array },
  test: { features: tf.Tensor2D; labels: Int32Array },
) {
  const scores = tf.tidy(() => {
    const residual = (data: typeof train) =>
      tf.sub(
        tf.softmax(headLogits(fit, data.features)),
        tf.oneHot(tf.tensor1d(data.labels, "int32"), fit.numClasses).toFloat(),
      );
    const kernel = tf.add(tf.matMul(train.features, test.features.transpose()), 1);
    return tf.neg(tf.mul(tf.matMul(residual(train), residual(test).transpose()), kernel));
  });
  const out = (await scores.data()) as Float32Array;
  scores.dispose();
  return out;
}

Deno.test("testInfluence(): exact block-CG equals the dense solve, is invariant to block size, EK-FAC agrees in rank", async () => {
  const p = problemWithVal({ n: 120, dim: 6, numClasses: 4, lambda: 0.5, seed: 81 }, 9);
  const fit = await fitHead(p.train, { lambda: 0.5, alpha: p.alpha, tol: 1e-7 });
  const collect = async (options: Parameters<typeof testInfluence>[3]) => {
    const matrix = new Float32Array(120 * 9);
    const result = await testInfluence(fit, p.train, p.val, {
      ...options,
      onBlock: (start, scores, b) => {
        for (let i = 0; i < 120; i++) {
          for (let j = 0; j < b; j++) matrix[i * 9 + start + j] = scores[i * b + j];
        }
      },
    });
    return { result, matrix };
  };
  const exact = await collect({ topK: 5, blockSize: 4, tol: 1e-8 });
  const single = await collect({ topK: 5, blockSize: 9, tol: 1e-8 });
  assert.ok(relMax(exact.matrix, single.matrix) < 1e-4, "block size changes scores");
  // dense reference: I(i, x) = −∇ℓ_xᵀ H⁻¹ ∇ℓ_i, via the fixed-point identity of validationAlphaGradient on a one-point "val"
  for (const j of [0, 4, 8]) {
    const one = {
      features: p.val.features.slice([j, 0], [1, -1]) as tf.Tensor2D,
      labels: p.val.labels.slice(j, j + 1),
    };
    const g = await validationAlphaGradient(fit, p.train, one, { solver: "exact" });
    const column = Float32Array.from({ length: 120 }, (_, i) => exact.matrix[i * 9 + j]);
    assert.ok(relMax(column, g.gradient) < 1e-3, `test point ${j}: ${relMax(column, g.gradient)}`);
    const order = Array.from(g.gradient).map((v, i) => [v, i]).sort((x, y) => x[0] - y[0]);
    assert.deepEqual(exact.result[j].proponents.map((q) => q.index), order.slice(0, 5).map((o) => o[1]));
    assert.deepEqual(
      exact.result[j].opponents.map((q) => q.index),
      order.slice(-5).reverse().map((o) => o[1]),
    );
    one.features.dispose();
  }
  const ekfac = await collect({ topK: 5, blockSize: 4, method: "ekfac" });
  const rhos = Array.from(
    { length: 9 },
    (_, j) =>
      spearman(
        Array.from({ length: 120 }, (_, i) => ekfac.matrix[i * 9 + j]),
        Array.from({ length: 120 }, (_, i) => exact.matrix[i * 9 + j]),
      ),
  );
  const meanRho = rhos.reduce((s, r) => s + r, 0) / rhos.length;
  // baseline: H ≈ λI, i.e. I(i, x) ∝ −∇ℓ_x·∇ℓ_i = −((p_x − e_x)·(p_i − e_i))(h_x·h_i)
  const baseline = await identityHessianScores(fit, p.train, p.val);
  const baseRhos = Array.from(
    { length: 9 },
    (_, j) =>
      spearman(
        Array.from({ length: 120 }, (_, i) => baseline[i * 9 + j]),
        Array.from({ length: 120 }, (_, i) => exact.matrix[i * 9 + j]),
      ),
  );
  const baseMean = baseRhos.reduce((s, r) => s + r, 0) / baseRhos.length;
  console.log(
    `test influence vs exact, mean Spearman: EK-FAC ${meanRho.toFixed(4)} (min ${
      Math.min(...rhos).toFixed(4)
    }), ` +
      `H ≈ λI baseline ${baseMean.toFixed(4)}`,
  );
  assert.ok(meanRho > 0.6 && meanRho > baseMean, `EK-FAC mean Spearman ${meanRho}, baseline ${baseMean}`);
  const before = tf.memory().numTensors;
  await testInfluence(fit, p.train, p.val, { method: "ekfac" });
  await validationAlphaGradient(fit, p.train, p.val);
  assert.equal(tf.memory().numTensors, before, "leaked tensors");
  disposeHead(fit);
  p.dispose();
});
