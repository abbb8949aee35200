/**
 * The α-weighted training loss of CARROT's fine-tuning and its gradient through the backbone:
 *   L(θ) = Σ_i α_i CE_ε(f_θ(x_i), y_i) / A,   CE_ε(z, y) = −Σ_k [(1 − ε) 1{k = y} + ε/K] log softmax(z)_k,
 * with label smoothing ε and normaliser A (Σ_i α_i of the micro-batch, or of the whole batch when micro-batches
 * are accumulated: their gradients then add up to the batch's). Differentiated by tfjs autodiff through
 * `timmForward`, so the gradients are with respect to the timm-layout parameters. With attribute supervision the
 * head predicts G attributes (groups of logits, one softmax each) and CE_ε is the sum over the groups.
 */
import * as tf from "@tensorflow/tfjs";
import { type TimmConfig, timmForward } from "../models/registry.ts";

/** The model being trained: its config and its parameters in timm layout. */
export interface TrainableModel {
  /** Architecture config with a head (numClasses ≥ 1). */
  config: TimmConfig;
  /** timm key → trainable variable in timm's shape. */
  params: ReadonlyMap<string, tf.Variable>;
}

/** A micro-batch: normalised images, labels and per-sample weights. */
export interface WeightedBatch {
  /** [b, H, W, C], normalised as the model's preprocessing says. */
  images: tf.Tensor4D;
  /** y_i ∈ 0..K−1 [b]; with attribute groups, one value per group and image, row-major [b × G]. */
  labels: Int32Array;
  /** α_i ≥ 0 [b]. */
  alpha: Float32Array;
}

/**
 * Log-softmax within each group of consecutive logits: groups of sizes s_1 … s_G (Σ s_g = K) each get their own
 * softmax. One group of size K is the plain log-softmax.
 */
export function groupLogSoftmax(logits: tf.Tensor2D, sizes: readonly number[]): tf.Tensor2D {
  return sizes.length === 1
    ? tf.logSoftmax(logits)
    : tf.concat(tf.split(logits, [...sizes], 1).map((z) => tf.logSoftmax(z)), 1) as tf.Tensor2D;
}

/**
 * Smoothed one-hot targets [b, K]: per image and group g, (1 − ε) on its value and ε/s_g spread over the group's
 * s_g logits (`labels` row-major [b × G]).
 */
function smoothedTargets(labels: Int32Array, sizes: readonly number[], epsilon: number): tf.Tensor2D {
  const k = sizes.reduce((a, b) => a + b, 0), groups = sizes.length, b = labels.length / groups;
  const target = new Float32Array(b * k);
  for (let i = 0; i < b; i++) {
    for (let g = 0, offset = 0; g < groups; offset += sizes[g], g++) {
      const value = labels[i * groups + g];
      if (!(value >= 0 && value < sizes[g])) {
        throw new RangeError(
          `weightedLossGradients: label ${value} of group ${g} is outside 0..${sizes[g] - 1}`,
        );
      }
      target.fill(epsilon / sizes[g], i * k + offset, i * k + offset + sizes[g]);
      target[i * k + offset + value] += 1 - epsilon;
    }
  }
  return tf.tensor2d(target, [b, k]);
}

/**
 * The value and gradient of the α-weighted loss of one micro-batch (module JSDoc),
 *   L = Σ_i α_i CE_ε(f_θ(x_i), y_i) / A   (A = `normalizer`, default Σ_i α_i),
 * with respect to every parameter of `model` (by timm key). With `groups` (attribute supervision) the head's K
 * logits are G consecutive groups and CE_ε is the sum of the groups' cross-entropies,
 *   CE_ε(z, a) = Σ_g CE_ε(z_g, a_g).
 * The caller frees `loss` and the gradients.
 */
export function weightedLossGradients(
  model: TrainableModel,
  batch: WeightedBatch,
  options: { labelSmoothing?: number; normalizer?: number; groups?: readonly number[] } = {},
): { loss: tf.Scalar; gradients: Map<string, tf.Tensor> } {
  const { config, params } = model, k = config.numClasses, epsilon = options.labelSmoothing ?? 0;
  if (k < 1) throw new RangeError("weightedLossGradients: the model has no head (numClasses 0)");
  const sizes = options.groups ?? [k];
  if (sizes.reduce((a, b) => a + b, 0) !== k || batch.labels.length !== sizes.length * batch.alpha.length) {
    throw new RangeError(
      `weightedLossGradients: groups [${sizes}] must sum to the head's ${k} outputs, with one label per group ` +
        `and image (${batch.labels.length} labels for ${batch.alpha.length} images)`,
    );
  }
  const normalizer = options.normalizer ?? batch.alpha.reduce((a, b) => a + b, 0);
  const keys = [...params.keys()];
  const { value, grads } = tf.tidy(() => {
    const target = smoothedTargets(batch.labels, sizes, epsilon);
    const alpha = tf.tensor1d(batch.alpha);
    const result = tf.variableGrads(() => {
      const logits = timmForward(config, params, batch.images).logits!;
      const ce = tf.neg(tf.sum(tf.mul(target, groupLogSoftmax(logits, sizes)), 1));
      return tf.div(tf.sum(tf.mul(alpha, ce)), normalizer) as tf.Scalar;
    }, keys.map((key) => params.get(key)!));
    return { value: result.value, grads: keys.map((key) => result.grads[params.get(key)!.name]) };
  });
  return { loss: value, gradients: new Map(keys.map((key, i) => [key, grads[i]])) };
}
