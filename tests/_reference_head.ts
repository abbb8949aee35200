/**
 * A float64 reference for the head, in plain TypeScript, for tests only: dense objective, gradient, Hessian and a
 * damped Newton solver with Cholesky solves. vec(W) is row-major, index k·(d+1) + j (bias at j = d), as in the
 * shared fixtures. Sizes are small (K(d+1) ≤ a few hundred), so O((Kd)²) memory is fine here.
 */

/** A head problem in float64: rows x_i (without the constant), labels, α, λ, K. */
export interface Problem64 {
  x: Float64Array[];
  y: Int32Array;
  alpha: Float64Array;
  lambda: number;
  numClasses: number;
}

import { choleskySolve } from "../lib/carrot/_linalg.ts";

const withOne = (x: Float64Array) => Float64Array.from([...x, 1]);

/** Softmax probabilities of W h (W flat, row-major [K, d+1]). */
export function probabilities64(w: Float64Array, h: Float64Array, numClasses: number): Float64Array {
  const p = new Float64Array(numClasses);
  const dim = h.length;
  let max = -Infinity;
  for (let k = 0; k < numClasses; k++) {
    let z = 0;
    for (let j = 0; j < dim; j++) z += w[k * dim + j] * h[j];
    p[k] = z;
    max = Math.max(max, z);
  }
  let s = 0;
  for (let k = 0; k < numClasses; k++) s += p[k] = Math.exp(p[k] - max);
  for (let k = 0; k < numClasses; k++) p[k] /= s;
  return p;
}

/** J(W; α) and ∇J (flat). */
export function objective64(problem: Problem64, w: Float64Array): { value: number; gradient: Float64Array } {
  const { numClasses: kk, lambda } = problem;
  const gradient = w.map((v) => lambda * v);
  let value = 0;
  for (let k = 0; k < w.length; k++) value += 0.5 * lambda * w[k] * w[k];
  problem.x.forEach((xi, i) => {
    const h = withOne(xi), dim = h.length;
    const p = probabilities64(w, h, kk);
    value -= problem.alpha[i] * Math.log(p[problem.y[i]]);
    for (let k = 0; k < kk; k++) {
      const r = problem.alpha[i] * (p[k] - (k === problem.y[i] ? 1 : 0));
      for (let j = 0; j < dim; j++) gradient[k * dim + j] += r * h[j];
    }
  });
  return { value, gradient };
}

/** The dense Hessian Σ_i α_i (diag p_i − p_i p_iᵀ) ⊗ h_i h_iᵀ + λI, [P, P] row-major, P = K(d+1). */
export function hessian64(problem: Problem64, w: Float64Array): Float64Array {
  const kk = problem.numClasses, dim = problem.x[0].length + 1, size = kk * dim;
  const hess = new Float64Array(size * size);
  problem.x.forEach((xi, i) => {
    const h = withOne(xi);
    const p = probabilities64(w, h, kk);
    for (let k = 0; k < kk; k++) {
      for (let l = 0; l < kk; l++) {
        const c = problem.alpha[i] * ((k === l ? p[k] : 0) - p[k] * p[l]);
        if (c === 0) continue;
        for (let a = 0; a < dim; a++) {
          const row = (k * dim + a) * size + l * dim;
          for (let b = 0; b < dim; b++) hess[row + b] += c * h[a] * h[b];
        }
      }
    }
  });
  for (let q = 0; q < size; q++) hess[q * size + q] += problem.lambda;
  return hess;
}

/** Damped Newton from W = 0 to ‖∇J‖ ≤ 1e-12·max(1, ‖∇J(0)‖): the float64 minimiser W* (flat). */
export function fitHead64(problem: Problem64): Float64Array {
  const size = problem.numClasses * (problem.x[0].length + 1);
  let w = new Float64Array(size);
  let { value, gradient } = objective64(problem, w);
  const stop = 1e-12 * Math.max(1, Math.hypot(...gradient));
  for (let iteration = 0; iteration < 100 && Math.hypot(...gradient) > stop; iteration++) {
    const step = choleskySolve(hessian64(problem, w), size, gradient);
    for (let t = 1; t > 1e-10; t /= 2) {
      const trial = w.map((v, q) => v - t * step[q]);
      const next = objective64(problem, trial);
      if (next.value <= value) {
        [w, value, gradient] = [trial, next.value, next.gradient];
        break;
      }
    }
  }
  return w;
}
