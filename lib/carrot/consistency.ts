/**
 * Attribution-consistency regularisers R(α): validation points should be supported, through the representer
 * contributions a_i(x) = β_i (h_i·h_x) of Theorem A, by training points that agree with them. RRO adds γR to L_val
 * (`reweight.ts`). Three forms, chosen by `ConsistencyOptions.form`:
 *
 * "pairwise" (the default, the original definition). For validation point j of class c_j, the positive
 * contributions to its true-class logit, a_i(x_j) = β_{i,c_j}(h_i·h_j) = α_i b_ij with
 * b_ij = −(1/λ)(p_{i,c_j} − [y_i = c_j])(h_i·h_j + 1), normalised into a distribution over training points,
 *   q_j(i) = α_i b⁺_ij / S_j,   S_j = Σ_i α_i b⁺_ij,   b⁺ = max(b, 0),
 * and the agreement of two validation points is A_jl = ⟨q_j, q_l⟩. Then
 *   R(α) = mean_{c_j ≠ c_l} A_jl − mean_{j ≠ l, c_j = c_l} A_jl
 * (cross-class overlap minus within-class agreement; lower is better). Validation points with S_j = 0 drop out.
 *
 * "pairwise-cosine". The same with the L2 normalisation q̂_j = α ∘ b⁺_{·j} / ‖α ∘ b⁺_{·j}‖₂, so A_jl is the
 * cosine of the two contribution vectors: invariant to how concentrated a support is (two identical supports
 * have A_jl = 1 however few points carry them), where ⟨q_j, q_l⟩ of L1-normalised supports grows as the mass
 * concentrates (it is the Herfindahl index Σ_i q(i)² when q_j = q_l).
 *
 * "own-class". The share of x_j's positive support that comes from other classes. Class c's training points
 * contribute T_j(c) = Σ_{i: y_i = c} a_{i,c}(x_j) = Σ_{i: y_i = c} α_i v_ij to logit c at x_j, with
 * v_ij = (1/λ)(1 − p_{i,y_i})(h_i·h_j + 1) (each point's vote for its own label); with π_j(c) = T_j(c)⁺ / Σ_c T_j(c)⁺,
 *   R(α) = mean_j (1 − π_j(c_j))
 * over the validation points with Σ_c T_j(c)⁺ > 0. The positive part is taken per class total, so the zero-mean
 * kernel values of unrelated classes cancel instead of accumulating.
 *
 * Gradients. The probabilities p_i and the head W* are held fixed (b and v are treated as constants: the same
 * first-order simplification as the representer estimator, exact in the dependence through β's α_i factor).
 * With w_jl = 1/N_cross across classes, −1/N_within within a class (j ≠ l), 0 on the diagonal, and û_j the
 * normalised support (q_j or q̂_j, with norm N_j = S_j or ‖α ∘ b⁺_{·j}‖₂):
 *   pairwise:         ∂R/∂α_i = 2 Σ_j (b⁺_ij/N_j) (Σ_l w_jl û_l(i) − Σ_l w_jl A_jl),
 *   pairwise-cosine:  ∂R/∂α_i = 2 Σ_j (b⁺_ij/N_j) (Σ_l w_jl û_l(i) − û_j(i) Σ_l w_jl A_jl),
 *   own-class:        ∂R/∂α_i = −(1/m′) Σ_j [T_j(y_i) > 0] v_ij ([y_i = c_j] − π_j(c_j)) / Σ_c T_j(c)⁺,
 * (m′ the validation points kept; the positive part is differentiated away from its kink). The class structure
 * of w makes every pairwise sum an [n, m]·[m, C] product: O(n·m·C), never an m×m matrix.
 *
 * Diagnosis (issue 13; `bench/consistency.ts`: `makeFineGrainedFeatures`, seeds 0–2, within-group label noise
 * 0.2 / 0.4, 5 or 30 validation points per class, ERM head at the tuned λ; ranges over those four settings of the
 * mean over seeds). "pairwise" pushes the harmful points *up*: the AUROC of ∂R/∂α for the mislabelled points is
 * 0.28–0.41 (g = ∂L_val/∂α: 0.71–0.84), the mean ∂R/∂α is −1.5e−5 on mislabelled vs +3.8e−6 on clean points
 * (noise 0.2, 5 val/class), its within-class correlation with the residual 1 − p_{i,y_i} is −0.38 to −0.64 (g:
 * +0.19 to +0.38), and its cosine with g is −0.12 to +0.28. Mechanism: (i) 96–97% of the positive mass b⁺ comes
 * from points labelled c_j, weighted by their residual, and mislabelled points have a larger one (0.60–0.64 vs
 * 0.32–0.37 at noise 0.2), so they carry 27–29% of that mass while being 20% of the points; (ii) the kernel barely
 * separates siblings (mean h_i·h_j + 1 ≈ 77 within a true class, 71 within a group, ≈ 0 across groups), so a
 * within-group flip supports the validation points of its observed label almost as well as a clean point does;
 * (iii) ⟨q_j, q_l⟩ of L1-normalised supports rewards concentration (∂R/∂α_i < 0 wherever i's share q_j(i) exceeds
 * the agreement), so R up-weights the largest contributors, the high-residual points. (iii) is the cause of the
 * sign: "pairwise-cosine", which differs only in the normalisation, has residual correlation +0.05 to +0.14 and
 * AUROC 0.53–0.57, but little signal (cosine with g 0.16–0.23) at a larger scale (‖∂R‖/‖g‖ 0.21–0.26 against
 * 0.02–0.05). "own-class" points the right way: AUROC 0.59–0.63, cosine with g 0.35–0.46, ‖∂R‖/‖g‖ 0.036–0.047
 * (so γ = 10 keeps the experiment's scale), though weaker than g alone. No form, nor g, sees the shortcut points
 * (AUROC 0.48–0.55): on these data they do not hurt the clean validation split.
 *
 * Accuracy (RRO, exact influence, ρ = 0.5, 20 outer steps, test top-1, mean of seeds 0–2, change against γ = 0
 * in points; a throwaway run, not a bench), for 5 / 10 / 30 validation points per class:
 *   noise 0.2:  "pairwise" γ = 10  −1.6 / −4.2 / −5.9;  "pairwise-cosine" γ = 1.5 (same scale)  −0.4 / −1.7 / −2.1;
 *               "own-class" γ = 10  +1.2 / +0.5 / −0.4;
 *   noise 0.4:  "pairwise" −2.5 / −4.5 / −5.4;  "pairwise-cosine" −2.0 / −2.6 / −3.0;  "own-class" −0.2 / −1.1 / −1.0.
 * So "own-class" removes most of the harm and helps a little only with few validation points at moderate noise;
 * once the validation split is informative, g alone is better. Use `{ form: "own-class" }` with γ ≈ 10 in that
 * regime, γ = 0 otherwise, and never "pairwise" (still the default only so that existing callers and kernels keep
 * their meaning).
 */
import * as tf from "@tensorflow/tfjs";
import type { LabeledFeatures } from "./labeled_features.ts";
import { type HeadFit, headProbabilities } from "./head.ts";
import { readPacked } from "./_reads.ts";

/** R(α) and ∂R/∂α `[n]`. */
export interface Consistency {
  /** R(α). */
  value: number;
  /** ∂R/∂α `[n]`. */
  gradient: Float32Array;
}

/** Which regulariser (see the module JSDoc). */
export type ConsistencyForm = "pairwise" | "pairwise-cosine" | "own-class";

/** Options of the consistency functions. */
export interface ConsistencyOptions {
  /** The form of R (default "pairwise", the original definition). */
  form?: ConsistencyForm;
  /**
   * Observed training labels y `[n]`: required by `consistencyFromKernel` for "own-class" (the kernel alone does not
   * say which class each vote goes to); `consistencyRegularizer` passes the train split's.
   */
  trainLabels?: Int32Array;
}

/**
 * The α-free kernel `[n, m]` of a form: b_ij = −(1/λ)(p_{i,c_j} − [y_i = c_j])(h_i·h_j + 1) (the factor of the
 * representer contribution of training point i to validation point j's true-class logit) for the pairwise forms,
 * v_ij = (1/λ)(1 − p_{i,y_i})(h_i·h_j + 1) (i's vote for its own label at x_j) for "own-class"; at the fit's
 * probabilities.
 */
export function consistencyKernel(
  fit: HeadFit,
  train: LabeledFeatures,
  val: LabeledFeatures,
  options: ConsistencyOptions = {},
): tf.Tensor2D {
  const form = checkForm(options.form);
  return tf.tidy(() => {
    const residual = tf.sub(
      headProbabilities(fit, train.features),
      tf.oneHot(tf.tensor1d(train.labels, "int32"), fit.numClasses),
    ); // p_i − e_{y_i}  [n, K]
    const kernel = tf.add(tf.matMul(train.features, val.features.transpose()), 1); // h_i·h_j + 1  [n, m]
    if (form === "own-class") {
      const own = tf.sum(
        tf.mul(residual, tf.oneHot(tf.tensor1d(train.labels, "int32"), fit.numClasses)),
        1,
        true,
      );
      return tf.mul(kernel, tf.mul(own, -1 / fit.lambda)) as tf.Tensor2D; // −(p_{i,y_i} − 1)/λ · k
    }
    const valOneHot = tf.oneHot(tf.tensor1d(val.labels, "int32"), fit.numClasses).toFloat();
    const selected = tf.matMul(residual, valOneHot.transpose()); // r_{i, c_j}
    return tf.mul(selected, tf.mul(kernel, -1 / fit.lambda)) as tf.Tensor2D;
  });
}

function checkForm(form: ConsistencyForm | undefined): ConsistencyForm {
  const f = form ?? "pairwise";
  if (f !== "pairwise" && f !== "pairwise-cosine" && f !== "own-class") {
    throw new RangeError(
      `consistency: unknown form ${JSON.stringify(form)}; use "pairwise", "pairwise-cosine" or "own-class"`,
    );
  }
  return f;
}

/** R and ∂R/∂α from the kernel `[n, m]` of the form, weights α and the validation labels (see the module JSDoc). */
export async function consistencyFromKernel(
  b: tf.Tensor2D,
  alpha: Float32Array,
  valLabels: Int32Array,
  numClasses: number,
  options: ConsistencyOptions = {},
): Promise<Consistency> {
  const form = checkForm(options.form);
  const [n, m] = b.shape;
  if (alpha.length !== n || valLabels.length !== m) {
    throw new RangeError(
      `consistencyFromKernel: kernel is [${n}, ${m}] but α has ${alpha.length} and valLabels ${valLabels.length} ` +
        "entries; they must match its rows and columns",
    );
  }
  const out = form === "own-class"
    ? ownClass(b, alpha, valLabels, numClasses, options.trainLabels)
    : pairwise(b, alpha, valLabels, numClasses, form === "pairwise-cosine");
  const [value, gradient] = await readPacked([out.value, out.gradient]);
  tf.dispose([out.value, out.gradient]);
  return { value: value[0], gradient: gradient as Float32Array };
}

/** The pairwise forms: L1-normalised supports (`cosine` false) or L2-normalised ones (`cosine` true). */
function pairwise(
  b: tf.Tensor2D,
  alpha: Float32Array,
  valLabels: Int32Array,
  numClasses: number,
  cosine: boolean,
) {
  const m = valLabels.length;
  const counts = new Float64Array(numClasses);
  for (const c of valLabels) counts[c]++;
  const within = counts.reduce((s, v) => s + v * (v - 1), 0);
  const cross = m * m - counts.reduce((s, v) => s + v * v, 0);
  const wWithin = within > 0 ? -1 / within : 0, wCross = cross > 0 ? 1 / cross : 0;
  return tf.tidy(() => {
    const positive = tf.relu(b);
    const u = tf.mul(tf.tensor2d(alpha, [alpha.length, 1]), positive); // α_i b⁺_ij
    const total = cosine ? tf.sqrt(tf.sum(tf.square(u), 0, true)) : tf.sum(u, 0, true); // N_j  [1, m]
    const safe = tf.where(tf.greater(total, 0), total, tf.onesLike(total));
    const present = tf.greater(total, 0).toFloat();
    const q = tf.mul(tf.div(u, safe), present); // û  [n, m]
    const yv = tf.oneHot(tf.tensor1d(valLabels, "int32"), numClasses).toFloat(); // [m, C]
    const classWeights = tf.add(tf.mul(tf.eye(numClasses), wWithin - wCross), wCross); // w(c, c′)
    // Σ_{l≠j} w_jl û_l = (Û Y_v W_c Y_vᵀ)_{·j} − w_jj û_j
    const qw = tf.sub(
      tf.matMul(tf.matMul(tf.matMul(q, yv), classWeights), yv.transpose()),
      tf.mul(q, wWithin),
    );
    const rowTerm = tf.sum(tf.mul(q, qw), 0, true); // Σ_l w_jl A_jl  [1, m]
    const value = tf.sum(rowTerm);
    const scaled = tf.mul(tf.div(positive, safe), present); // b⁺_ij / N_j
    const centre = cosine ? tf.mul(q, rowTerm) : rowTerm;
    const gradient = tf.mul(2, tf.sum(tf.mul(scaled, tf.sub(qw, centre)), 1));
    return { value, gradient };
  });
}

/** The "own-class" form from the votes v `[n, m]`. */
function ownClass(
  v: tf.Tensor2D,
  alpha: Float32Array,
  valLabels: Int32Array,
  numClasses: number,
  trainLabels: Int32Array | undefined,
) {
  if (!trainLabels || trainLabels.length !== alpha.length) {
    throw new RangeError(
      `consistencyFromKernel: form "own-class" needs options.trainLabels with one label per training point ` +
        `(${alpha.length}), got ${trainLabels ? trainLabels.length : "none"}`,
    );
  }
  return tf.tidy(() => {
    const yt = tf.oneHot(tf.tensor1d(trainLabels, "int32"), numClasses).toFloat(); // [n, C]
    const yv = tf.oneHot(tf.tensor1d(valLabels, "int32"), numClasses).toFloat(); // [m, C]
    const votes = tf.matMul(yt, tf.mul(tf.tensor2d(alpha, [alpha.length, 1]), v), true); // T  [C, m]
    const positive = tf.relu(votes);
    const total = tf.sum(positive, 0, true); // Σ_c T_j(c)⁺  [1, m]
    const present = tf.greater(total, 0).toFloat();
    const safe = tf.where(tf.greater(total, 0), total, tf.onesLike(total));
    const share = tf.div(tf.sum(tf.mul(positive, yv.transpose()), 0, true), safe); // π_j(c_j)  [1, m]
    const kept = tf.maximum(tf.sum(present), 1);
    const value = tf.div(tf.sum(tf.mul(tf.sub(1, share), present)), kept);
    const active = tf.matMul(yt, tf.greater(votes, 0).toFloat()); // [T_j(y_i) > 0]  [n, m]
    const same = tf.matMul(yt, yv, false, true); // [y_i = c_j]  [n, m]
    const perPair = tf.mul(tf.mul(active, v), tf.div(tf.sub(same, share), safe));
    const gradient = tf.div(tf.neg(tf.sum(tf.mul(perPair, present), 1)), kept);
    return { value, gradient };
  });
}

/**
 * R(α) and ∂R/∂α at the fit (its α, λ, probabilities) for `options.form` (default "pairwise"); see the module JSDoc
 * for what is held fixed.
 */
export async function consistencyRegularizer(
  fit: HeadFit,
  train: LabeledFeatures,
  val: LabeledFeatures,
  options: ConsistencyOptions = {},
): Promise<Consistency> {
  const b = consistencyKernel(fit, train, val, options);
  try {
    return await consistencyFromKernel(b, fit.alpha, val.labels, fit.numClasses, {
      ...options,
      trainLabels: options.trainLabels ?? train.labels,
    });
  } finally {
    b.dispose();
  }
}
