/**
 * The weighted, L2-regularised softmax head objective and its derivatives (private to `lib/carrot/`).
 *
 *   J(W; α) = Σ_i α_i ℓ_i(W) + (λ/2)‖W‖²_F,   ℓ_i = logsumexp(W h_i) − (W h_i)_{y_i},   h_i = [x_i; 1]
 *   ∇J     = Σ_i α_i (p_i − e_{y_i}) h_iᵀ + λW
 *   H V    = Σ_i α_i [(diag p_i − p_i p_iᵀ) V h_i] h_iᵀ + λV
 *
 * W is `[K, d+1]` with the bias in the last column. The constant column is never materialised: logits are
 * X Wₓᵀ + b and gradients split into Rᵀ X and the column sums of R, so memory stays O(nK + Kd) beyond X.
 * Products use explicit transposes (tfjs-wasm's own `matMul` runs with transpose flags ~25× slower), except where
 * tfjs-wasm's products run on a native BLAS (`native_blas.ts`): there the flags are free and an explicit transpose
 * or an axis-0 sum of [n, K] costs more than the product itself.
 */
import * as tf from "@tensorflow/tfjs";
import { nativeBlasStatus } from "../native_blas.ts";

/** The data of one head problem, as tensors ready for the objective. */
export interface HeadProblem {
  /** X `[n, d]` (not owned). */
  features: tf.Tensor2D;
  /** Y `[n, K]`, the one-hot labels. */
  oneHot: tf.Tensor2D;
  /** α as a column `[n, 1]`. */
  alpha: tf.Tensor2D;
  /** λ. */
  lambda: number;
}

/** Builds the one-hot and α tensors; the caller disposes them with `disposeProblem`. */
export function makeProblem(
  features: tf.Tensor2D,
  labels: Int32Array,
  alpha: Float32Array,
  numClasses: number,
  lambda: number,
): HeadProblem {
  return tf.tidy(() => ({
    features,
    oneHot: tf.oneHot(tf.tensor1d(labels, "int32"), numClasses).toFloat() as tf.Tensor2D,
    alpha: tf.tensor2d(alpha, [alpha.length, 1]),
    lambda,
  }));
}

/** Frees the tensors `makeProblem` created (not the features). */
export function disposeProblem(problem: HeadProblem): void {
  problem.oneHot.dispose();
  problem.alpha.dispose();
}

/** z = W [x; 1] for every row: `[n, K]`. */
export function logits(weights: tf.Tensor2D, features: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const d = features.shape[1];
    const [wx, b] = tf.split(weights, [d, 1], 1);
    return tf.add(tf.matMul(features, wx.transpose()), b.reshape([1, -1])) as tf.Tensor2D;
  });
}

/** Σ_i r_i h_iᵀ = [Rᵀ X, Rᵀ 1] for a residual matrix R `[n, K]`: `[K, d+1]`. */
export function residualOuter(residual: tf.Tensor2D, features: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    if (tf.getBackend() === "wasm" && nativeBlasStatus().active) { // both as products with transpose flags
      const ones = tf.ones([residual.shape[0], 1]);
      return tf.concat(
        [tf.matMul(residual, features, true), tf.matMul(residual, ones, true)],
        1,
      ) as tf.Tensor2D;
    }
    return tf.concat(
      [tf.matMul(residual.transpose(), features), tf.sum(residual, 0).reshape([-1, 1])],
      1,
    ) as tf.Tensor2D;
  });
}

/**
 * J(W; α) and ∇J at W from its logits z = W[x; 1] `[n, K]` (not consumed): the shared tail of every
 * evaluation, in few passes over [n, K] — one softmax kernel, and ℓ_i = lse_i − z_{i,y_i} with
 * lse_i = max_k z_ik − log max_k p_ik (the largest probability is exp(max z − lse) ≥ 1/K, so its log is safe).
 */
function objectiveFromLogits(
  problem: HeadProblem,
  weights: tf.Tensor2D,
  z: tf.Tensor2D,
): { value: tf.Scalar; gradient: tf.Tensor2D } {
  return tf.tidy(() => {
    const p = tf.softmax(z);
    const logSumExp = tf.sub(tf.max(z, 1, true), tf.log(tf.max(p, 1, true)));
    const loss = tf.sub(logSumExp, tf.sum(tf.mul(problem.oneHot, z), 1, true)); // [n, 1]
    const regulariser = tf.mul(0.5 * problem.lambda, tf.sum(tf.square(weights)));
    const value = tf.add(tf.sum(tf.mul(problem.alpha, loss)), regulariser) as tf.Scalar;
    const residual = tf.mul(problem.alpha, tf.sub(p, problem.oneHot)) as tf.Tensor2D;
    const gradient = tf.add(
      residualOuter(residual, problem.features),
      tf.mul(problem.lambda, weights),
    ) as tf.Tensor2D;
    return { value, gradient };
  });
}

/** J(W; α) as a scalar tensor and ∇J `[K, d+1]`. */
export function objectiveAndGradient(
  problem: HeadProblem,
  weights: tf.Tensor2D,
): { value: tf.Scalar; gradient: tf.Tensor2D } {
  return tf.tidy(() => objectiveFromLogits(problem, weights, logits(weights, problem.features)));
}

/** An evaluation that keeps its logits z = W[x; 1] `[n, K]` as `cache` = [z] for the line search (owned by the caller). */
export interface LogitEvaluation {
  value: tf.Scalar;
  gradient: tf.Tensor2D;
  /** [z]. */
  cache: tf.Tensor2D[];
}

/** `objectiveAndGradient` that also returns the logits. */
export function evaluateWithLogits(problem: HeadProblem, weights: tf.Tensor2D): LogitEvaluation {
  return tf.tidy(() => {
    const z = logits(weights, problem.features);
    const { value, gradient } = objectiveFromLogits(problem, weights, z);
    return { value, gradient, cache: [z] };
  });
}

/**
 * The line W + t·D from a point with logits z₀, for the line search of `minimizeLbfgs`. Logits are affine in W, so
 * one product z_D = D[x; 1] gives them on the whole line, z(t) = z₀ + t·z_D, and `at(t, W + tD)` for a scalar tensor
 * t is a full evaluation without a forward product. `slopeAtUnit` = φ′(1) = ∇J(W + D)ᵀD =
 * Σ_i α_i (p_i(1) − e_{y_i})ᵀ z_{D,i} + λ⟨W + D, D⟩ costs O(nK) beyond z_D. (z_D is computed, not taken as a
 * difference of logits: near the optimum D is tiny and z₁ − z₀ would be all rounding.)
 */
export function lineThrough(
  problem: HeadProblem,
  weights: tf.Tensor2D,
  start: tf.Tensor2D[],
  direction: tf.Tensor2D,
): { slopeAtUnit: tf.Scalar; at(t: tf.Scalar, point: tf.Tensor2D): LogitEvaluation; dispose(): void } {
  const [startLogits] = start;
  const [directionLogits, slopeAtUnit] = tf.tidy(() => {
    const zd = logits(direction, problem.features);
    const residual = tf.mul(problem.alpha, tf.sub(tf.softmax(tf.add(startLogits, zd)), problem.oneHot));
    const slope = tf.add(
      tf.sum(tf.mul(residual, zd)),
      tf.mul(problem.lambda, tf.sum(tf.mul(tf.add(weights, direction), direction))),
    ) as tf.Scalar;
    return [zd, slope] as const;
  });
  return {
    slopeAtUnit,
    at: (t, point) =>
      tf.tidy(() => {
        const z = tf.add(startLogits, tf.mul(t, directionLogits)) as tf.Tensor2D;
        const { value, gradient } = objectiveFromLogits(problem, point, z);
        return { value, gradient, cache: [z] };
      }),
    dispose: () => tf.dispose([directionLogits, slopeAtUnit]),
  };
}

/** ∇J at W = 0 (p_i uniform), the scale the relative stopping criterion is measured against. */
export function gradientAtZero(problem: HeadProblem): tf.Tensor2D {
  return tf.tidy(() => {
    const k = problem.oneHot.shape[1];
    const residual = tf.mul(problem.alpha, tf.sub(tf.scalar(1 / k), problem.oneHot)) as tf.Tensor2D;
    return residualOuter(residual, problem.features);
  });
}

/**
 * H V for a batch of directions V `[b, K, d+1]` at the probabilities P `[n, K]` of the current W (exact: for
 * softmax cross-entropy with a linear head the Gauss–Newton matrix is the Hessian):
 *   (H V)_j = Σ_i α_i [(diag p_i − p_i p_iᵀ) V_j h_i] h_iᵀ + λ V_j.
 * The b directions share two 2-D products ([n, d]·[d, bK] and [bK, n]·[n, d]), so block solvers cost little more
 * than single ones.
 */
export function hessianVectorProductBatch(
  problem: HeadProblem,
  probabilities: tf.Tensor2D,
  v: tf.Tensor3D,
): tf.Tensor3D {
  return tf.tidy(() => {
    const [b, k, width] = v.shape;
    const n = problem.features.shape[0];
    const zv = logits(v.reshape([b * k, width]) as tf.Tensor2D, problem.features).reshape([n, b, k]); // V_j h_i
    const p = probabilities.reshape([n, 1, k]);
    const pzv = tf.mul(p, zv);
    const r = tf.mul(problem.alpha.reshape([n, 1, 1]), tf.sub(pzv, tf.mul(p, tf.sum(pzv, 2, true))));
    const outer = residualOuter(r.reshape([n, b * k]) as tf.Tensor2D, problem.features).reshape([
      b,
      k,
      width,
    ]);
    return tf.add(outer, tf.mul(problem.lambda, v)) as tf.Tensor3D;
  });
}
