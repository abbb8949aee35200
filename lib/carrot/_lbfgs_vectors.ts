/**
 * The vector arithmetic of L-BFGS (private to `lib/carrot/`): the two-loop recursion (Nocedal & Wright, Numerical
 * Optimization, Alg. 7.4), differences of iterates and the inner products a line-search trial reads:
 *
 *   q ← g;  for i = k−1 … k−m:  a_i = ρ_i s_iᵀq,  q ← q − a_i y_i
 *   q ← γ M⁻¹ q
 *   for i = k−m … k−1:  b_i = ρ_i y_iᵀq,  q ← q + (a_i − b_i) s_i
 *   d = −c q   (= −c H_k g)
 *
 * Two implementations of the same arithmetic. On every backend, tfjs ops that stay on the device (no read). On
 * tfjs-wasm with a native BLAS, level-1 BLAS in the tensors' WASM memory (`nativeVectors`): one pass per dot or
 * axpy instead of two or three kernels with fresh outputs. The recursion is
 * memory-bound (4m passes over K(d+1) floats), so the passes saved are the time saved.
 */
import * as tf from "@tensorflow/tfjs";
import { nativeVectors } from "../native_blas.ts";

/** One curvature pair: s = x_{k+1} − x_k, y = ∇J(x_{k+1}) − ∇J(x_k), ρ = 1 / sᵀy. */
export interface CurvaturePair {
  /** s = x_{k+1} − x_k. */
  s: tf.Tensor2D;
  /** y = ∇J(x_{k+1}) − ∇J(x_k). */
  y: tf.Tensor2D;
  /** 1 / sᵀy. */
  rho: number;
}

const sumProduct = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(a, b));

/**
 * d = −c · H_k g (module JSDoc), owned by the caller. `gamma`: the scalar γ of H₀ = γM⁻¹ (none: 1);
 * `preconditioner`: v ↦ M⁻¹v (none: M = I); `native: false` forces the tfjs ops.
 */
export function twoLoopDirection(
  gradient: tf.Tensor2D,
  history: readonly CurvaturePair[],
  options: {
    gamma?: tf.Scalar;
    preconditioner?: (v: tf.Tensor2D) => tf.Tensor2D;
    c: number;
    native?: boolean;
  },
): tf.Tensor2D {
  const { gamma, preconditioner, c } = options;
  const vectors = options.native === false ? undefined : nativeVectors();
  if (!vectors) {
    return tf.tidy(() => {
      let q: tf.Tensor2D = gradient;
      const a: tf.Scalar[] = [];
      for (let i = history.length - 1; i >= 0; i--) {
        a[i] = tf.mul(history[i].rho, sumProduct(history[i].s, q));
        q = tf.sub(q, tf.mul(a[i], history[i].y));
      }
      if (preconditioner) q = preconditioner(q);
      if (gamma) q = tf.mul(gamma, q);
      for (let i = 0; i < history.length; i++) {
        const b = tf.mul(history[i].rho, sumProduct(history[i].y, q));
        q = tf.add(q, tf.mul(tf.sub(a[i], b), history[i].s));
      }
      return tf.mul(-c, q);
    });
  }
  let q = vectors.copy(gradient);
  const a: number[] = [];
  for (let i = history.length - 1; i >= 0; i--) {
    a[i] = history[i].rho * vectors.dot(history[i].s, q);
    vectors.axpy(-a[i], history[i].y, q);
  }
  if (preconditioner) {
    const p = preconditioner(q);
    q.dispose();
    q = vectors.copy(p);
    p.dispose();
  }
  // on tfjs-wasm the backend's memory is the host's: reading γ is a copy of 4 bytes, not a GPU→CPU transfer
  if (gamma) vectors.scale(gamma.dataSync()[0], q);
  for (let i = 0; i < history.length; i++) {
    const b = history[i].rho * vectors.dot(history[i].y, q);
    vectors.axpy(a[i] - b, history[i].s, q);
  }
  vectors.scale(-c, q);
  return q;
}

/** a − b, owned by the caller. */
export function difference(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  const vectors = nativeVectors();
  if (!vectors) return tf.sub(a, b);
  const out = vectors.copy(a);
  vectors.axpy(-1, b, out);
  return out;
}

/**
 * The values of `scalars` and the inner products aᵀb of `pairs`, in ONE call of `read`: on the device the products
 * are stacked with the scalars into one tensor; with native vectors they are computed in WASM memory and only the
 * scalars are read.
 */
export async function readWithInnerProducts(
  read: (tensors: tf.Tensor[]) => Promise<Float32Array[]>,
  scalars: tf.Scalar[],
  pairs: [tf.Tensor, tf.Tensor][],
): Promise<{ scalars: number[]; products: number[] }> {
  const vectors = nativeVectors();
  const packed = tf.tidy(() =>
    tf.stack([...scalars, ...(vectors ? [] : pairs.map(([a, b]) => sumProduct(a, b)))])
  );
  const [values] = await read([packed]).finally(() => packed.dispose());
  return {
    scalars: Array.from(values.subarray(0, scalars.length)),
    products: vectors
      ? pairs.map(([a, b]) => vectors.dot(a, b))
      : Array.from(values.subarray(scalars.length)),
  };
}
