/**
 * Block conjugate gradient for H S = B with a symmetric positive definite operator (private to `lib/carrot/`).
 *
 * The b right-hand sides are independent CG runs that share every operator application (one batched
 * Hessian-vector product per iteration). Each column stops when ‖r_j‖ ≤ tol·‖b_j‖; its Lanczos tridiagonal is
 * recovered from the CG coefficients (T_jj = 1/α_j + β_{j−1}/α_{j−1}, T_{j,j+1} = √β_j / α_j; Saad, Iterative
 * Methods for Sparse Linear Systems, §6.7.3), whose extreme Ritz values estimate H's extreme eigenvalues.
 */
import * as tf from "@tensorflow/tfjs";
import { yieldToEventLoop } from "../_yield.ts";
import { tridiagonalEigenvalues } from "./_linalg.ts";

/** Options of `blockConjugateGradient`. */
export interface CgOptions {
  /** Relative residual tolerance per column (default 1e-6). */
  tol?: number;
  /** Iteration cap (default: the dimension, at which exact arithmetic CG terminates). */
  maxIter?: number;
}

/** The solution and per-column diagnostics. */
export interface CgResult {
  /** S `[b, ...]`, owned by the caller. */
  solution: tf.Tensor;
  iterations: number;
  /** Final ‖r_j‖ / ‖b_j‖ per column. */
  relativeResiduals: Float64Array;
  /** ‖r‖/‖b‖ after each iteration, for column 0. */
  residualHistory: number[];
  /** Extreme Ritz values of column 0's Lanczos tridiagonal: estimates of λ_min(H), λ_max(H). */
  eigenvalueEstimates: { min: number; max: number };
}

const rowSums = (t: tf.Tensor, b: number) => tf.sum(t.reshape([b, -1]), 1, true); // [b, 1]

/** Solves H S = B for B `[b, ...]` with `apply(V)` = H V on the same shape; see the module JSDoc. */
export async function blockConjugateGradient(
  apply: (v: tf.Tensor) => tf.Tensor,
  rhs: tf.Tensor,
  options: CgOptions = {},
): Promise<CgResult> {
  const b = rhs.shape[0];
  const dimension = rhs.size / b;
  const tol = options.tol ?? 1e-6, maxIter = options.maxIter ?? dimension;
  const shape = [b, ...Array(rhs.rank - 1).fill(1)];
  let x = tf.zerosLike(rhs);
  let r = rhs.clone();
  let p = rhs.clone();
  let rr = tf.tidy(() => rowSums(tf.square(r), b)); // [b, 1]
  const rhsNorm = Float64Array.from(await rr.data(), Math.sqrt);
  const relative = Float64Array.from(rhsNorm, (v) => (v > 0 ? 1 : 0));
  const history: number[] = [];
  const alphas: number[] = [], betas: number[] = [];
  let iterations = 0;
  while (iterations < maxIter && relative.some((v) => v > tol)) {
    await yieldToEventLoop(); // Ctrl-C during long solves
    const done = tf.tensor2d(Float32Array.from(relative, (v) => (v > tol ? 1 : 0)), [b, 1]);
    const next = tf.tidy(() => {
      const hp = apply(p);
      const curvature = rowSums(tf.mul(p, hp), b);
      // converged or zero columns keep their iterate: step 0 (and no division by a zero curvature)
      const step = tf.mul(done, tf.divNoNan(rr, curvature));
      const x1 = tf.add(x, tf.mul(step.reshape(shape), p));
      const r1 = tf.sub(r, tf.mul(step.reshape(shape), hp));
      const rr1 = rowSums(tf.square(r1), b);
      const beta = tf.divNoNan(rr1, rr);
      const p1 = tf.add(r1, tf.mul(beta.reshape(shape), p));
      return { x1, r1, rr1, p1, step, beta };
    });
    done.dispose();
    const [stepValues, betaValues, rrValues] = await Promise.all([
      next.step.data(),
      next.beta.data(),
      next.rr1.data(),
    ]);
    tf.dispose([x, r, p, rr, next.step, next.beta]);
    [x, r, p, rr] = [next.x1, next.r1, next.p1, next.rr1];
    iterations++;
    for (let j = 0; j < b; j++) if (rhsNorm[j] > 0) relative[j] = Math.sqrt(rrValues[j]) / rhsNorm[j];
    if (stepValues[0] > 0) {
      alphas.push(stepValues[0]);
      betas.push(betaValues[0]);
    }
    history.push(relative[0]);
  }
  tf.dispose([r, p, rr]);
  const diagonal = alphas.map((a, j) => 1 / a + (j > 0 ? betas[j - 1] / alphas[j - 1] : 0));
  const offDiagonal = alphas.slice(0, -1).map((a, j) => Math.sqrt(betas[j]) / a);
  const ritz = diagonal.length ? tridiagonalEigenvalues(diagonal, offDiagonal) : Float64Array.of(NaN);
  return {
    solution: x,
    iterations,
    relativeResiduals: relative,
    residualHistory: history,
    eigenvalueEstimates: { min: ritz[0], max: ritz[ritz.length - 1] },
  };
}
