/**
 * The head's Hessian at W = 0 as a preconditioner (private to `lib/carrot/`).
 *
 * At W = 0 every p_i is uniform, so every A_i = diag p_i − p_i p_iᵀ = (I − 11ᵀ/K)/K and the Hessian is exactly a
 * Kronecker product plus the ridge: H(0) = (1/K) P_⊥ ⊗ C + λI with P_⊥ = I − 11ᵀ/K and C = Σ_i α_i h_i h_iᵀ — the
 * EK-FAC of `kroneckerInverse` (influence.ts) at W = 0, where its factorisation is exact. Its inverse needs no
 * eigendecomposition: on the class-mean direction (rows of W all equal, which leaves every softmax unchanged) H(0)
 * is λI, on the rest it is (C/K + λI), so
 *
 *   H(0)⁻¹ V = 1 v̄ᵀ / λ + (V − 1 v̄ᵀ) (C/K + λI)⁻¹,   v̄ = Vᵀ1 / K,
 *
 * one float64 Cholesky factorisation of the (d+1)×(d+1) matrix C/K + λI on the CPU and one [K, d+1]·[d+1, d+1]
 * product per application. The features' own scale and correlations (unstandardised pixels, a shared offset, the
 * bias column) are what make H ill-conditioned on MNIST-like problems, and C carries exactly that.
 */
import * as tf from "@tensorflow/tfjs";
import { choleskyFactor, lowerTriangularInverse } from "./_linalg.ts";
import { type ReadTally, readValues } from "./_reads.ts";
import type { HeadProblem } from "./_objective.ts";

/** v ↦ M⁻¹v on `[K, d+1]` or `[b, K, d+1]`, and its tensors' release. */
export interface HeadPreconditioner {
  /** M⁻¹ V (result owned by the caller). */
  apply<T extends tf.Tensor2D | tf.Tensor3D>(v: T): T;
  /** Frees the (d+1)×(d+1) factor. */
  dispose(): void;
}

/** H(0)⁻¹ of the module JSDoc for the problem's α, λ and K (one read: C). */
export async function hessianAtZeroInverse(
  problem: HeadProblem,
  tally?: ReadTally,
): Promise<HeadPreconditioner> {
  const [n, d] = problem.features.shape;
  const k = problem.oneHot.shape[1], width = d + 1, lambda = problem.lambda;
  const c = tf.tidy(() => {
    const h = tf.concat([problem.features, tf.ones([n, 1])], 1);
    return tf.matMul(tf.mul(problem.alpha, h).transpose(), h); // C = Σ α_i h_i h_iᵀ
  });
  const a = Float64Array.from(await readValues(c, tally));
  c.dispose();
  for (let q = 0; q < width * width; q++) a[q] /= k;
  for (let q = 0; q < width; q++) a[q * width + q] += lambda;
  const lowerInverse = lowerTriangularInverse(choleskyFactor(a, width), width); // (C/K + λI)⁻¹ = L⁻ᵀL⁻¹
  const inverse = tf.tidy(() => {
    const l = tf.tensor2d(Float32Array.from(lowerInverse), [width, width]);
    return tf.matMul(l.transpose(), l);
  });
  return {
    apply: <T extends tf.Tensor2D | tf.Tensor3D>(v: T): T =>
      tf.tidy(() => {
        const mean = tf.mean(v, -2, true); // v̄
        const centred = tf.sub(v, mean);
        const rows = tf.matMul(centred.reshape([-1, width]), inverse).reshape(v.shape);
        return tf.add(rows, tf.div(mean, lambda)) as T;
      }),
    dispose: () => inverse.dispose(),
  };
}
