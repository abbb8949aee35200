/**
 * The attribution-consistency regulariser R(α): validation points of one class should be supported by consistent
 * sets of training points, and different classes by separable ones.
 *
 * Definition. For validation point j of class c_j, the positive representer contributions to its true-class logit,
 * a_i(x_j) = β_{i,c_j}(h_i·h_j) = α_i b_ij with b_ij = −(1/λ)(p_{i,c_j} − [y_i = c_j])(h_i·h_j), normalised into a
 * distribution over training points,
 *   q_j(i) = α_i b⁺_ij / S_j,   S_j = Σ_i α_i b⁺_ij,   b⁺ = max(b, 0),
 * and the agreement of two validation points is A_jl = ⟨q_j, q_l⟩. Then
 *   R(α) = mean_{c_j ≠ c_l} A_jl − mean_{j ≠ l, c_j = c_l} A_jl
 * (cross-class overlap minus within-class agreement; lower is better). Validation points with S_j = 0 drop out.
 *
 * Gradient. The probabilities p_i and the head W* are held fixed (b_ij is treated as a constant: the same
 * first-order simplification as the representer estimator, exact in the dependence through β's α_i factor):
 *   ∂q_j(i′)/∂α_i = (b⁺_ij/S_j)(δ_{ii′} − q_j(i′)),
 *   ∂R/∂α_i = 2 Σ_j (b⁺_ij/S_j) (Σ_l w_jl q_l(i) − Σ_l w_jl A_jl),
 * with w_jl = 1/N_cross across classes, −1/N_within within a class (j ≠ l), 0 on the diagonal. The class
 * structure of w makes every sum an [n, m]·[m, C] product: O(n·m·C), never an m×m matrix.
 */
import * as tf from "@tensorflow/tfjs";
import type { LabeledFeatures } from "./labeled_features.ts";
import { type HeadFit, headProbabilities } from "./head.ts";

/** R(α) and ∂R/∂α `[n]`. */
export interface Consistency {
  /** R(α). */
  value: number;
  /** ∂R/∂α `[n]`. */
  gradient: Float32Array;
}

/**
 * b `[n, m]`: b_ij = −(1/λ)(p_{i,c_j} − [y_i = c_j])(h_i·h_j), the α-free factor of the representer contribution of
 * training point i to validation point j's true-class logit, at the fit's probabilities.
 */
export function consistencyKernel(fit: HeadFit, train: LabeledFeatures, val: LabeledFeatures): tf.Tensor2D {
  return tf.tidy(() => {
    const residual = tf.sub(
      headProbabilities(fit, train.features),
      tf.oneHot(tf.tensor1d(train.labels, "int32"), fit.numClasses),
    );
    const valOneHot = tf.oneHot(tf.tensor1d(val.labels, "int32"), fit.numClasses).toFloat();
    const selected = tf.matMul(residual, valOneHot.transpose()); // r_{i, c_j}
    const kernel = tf.add(tf.matMul(train.features, val.features.transpose()), 1);
    return tf.mul(selected, tf.mul(kernel, -1 / fit.lambda)) as tf.Tensor2D;
  });
}

/** R and ∂R/∂α from the kernel b `[n, m]`, weights α and the validation labels (see the module JSDoc). */
export async function consistencyFromKernel(
  b: tf.Tensor2D,
  alpha: Float32Array,
  valLabels: Int32Array,
  numClasses: number,
): Promise<Consistency> {
  const m = valLabels.length;
  const counts = new Float64Array(numClasses);
  for (const c of valLabels) counts[c]++;
  const within = counts.reduce((s, v) => s + v * (v - 1), 0);
  const cross = m * m - counts.reduce((s, v) => s + v * v, 0);
  const wWithin = within > 0 ? -1 / within : 0, wCross = cross > 0 ? 1 / cross : 0;
  const out = tf.tidy(() => {
    const positive = tf.relu(b);
    const u = tf.mul(tf.tensor2d(alpha, [alpha.length, 1]), positive); // α_i b⁺_ij
    const total = tf.sum(u, 0, true); // S_j  [1, m]
    const safe = tf.where(tf.greater(total, 0), total, tf.onesLike(total));
    const present = tf.greater(total, 0).toFloat();
    const q = tf.mul(tf.div(u, safe), present); // [n, m]
    const yv = tf.oneHot(tf.tensor1d(valLabels, "int32"), numClasses).toFloat(); // [m, C]
    const classWeights = tf.add(tf.mul(tf.eye(numClasses), wWithin - wCross), wCross); // w(c, c′)
    // Σ_{l≠j} w_jl q_l = (Q Y_v W_c Y_vᵀ)_{·j} − w_jj q_j
    const qw = tf.sub(
      tf.matMul(tf.matMul(tf.matMul(q, yv), classWeights), yv.transpose()),
      tf.mul(q, wWithin),
    );
    const rowTerm = tf.sum(tf.mul(q, qw), 0, true); // Σ_l w_jl A_jl  [1, m]
    const value = tf.sum(rowTerm);
    const scaled = tf.mul(tf.div(positive, safe), present); // b⁺_ij / S_j
    const gradient = tf.mul(2, tf.sum(tf.mul(scaled, tf.sub(qw, rowTerm)), 1));
    return { value, gradient };
  });
  const [value, gradient] = await Promise.all([out.value.data(), out.gradient.data()]);
  tf.dispose([out.value, out.gradient]);
  return { value: value[0], gradient: gradient as Float32Array };
}

/** R(α) and ∂R/∂α at the fit (its α, λ, probabilities); see the module JSDoc for what is held fixed. */
export async function consistencyRegularizer(
  fit: HeadFit,
  train: LabeledFeatures,
  val: LabeledFeatures,
): Promise<Consistency> {
  const b = consistencyKernel(fit, train, val);
  try {
    return await consistencyFromKernel(b, fit.alpha, val.labels, fit.numClasses);
  } finally {
    b.dispose();
  }
}
