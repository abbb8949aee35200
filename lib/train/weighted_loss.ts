/**
 * The α-weighted training loss of CARROT's fine-tuning and its gradient through the backbone:
 *   L(θ) = Σ_i α_i CE_ε(f_θ(x_i), y_i) / A,   CE_ε(z, y) = −Σ_k [(1 − ε) 1{k = y} + ε/K] log softmax(z)_k,
 * with label smoothing ε and normaliser A (Σ_i α_i of the micro-batch, or of the whole batch when micro-batches
 * are accumulated: their gradients then add up to the batch's). Differentiated by tfjs autodiff through
 * `timmForward`, so the gradients are with respect to the timm-layout parameters.
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
  /** y_i ∈ 0..K−1 [b]. */
  labels: Int32Array;
  /** α_i ≥ 0 [b]. */
  alpha: Float32Array;
}

/**
 * The value and gradient of the α-weighted loss of one micro-batch (module JSDoc),
 *   L = Σ_i α_i CE_ε(f_θ(x_i), y_i) / A   (A = `normalizer`, default Σ_i α_i),
 * with respect to every parameter of `model` (by timm key). The caller frees `loss` and the gradients.
 */
export function weightedLossGradients(
  model: TrainableModel,
  batch: WeightedBatch,
  options: { labelSmoothing?: number; normalizer?: number } = {},
): { loss: tf.Scalar; gradients: Map<string, tf.Tensor> } {
  const { config, params } = model, k = config.numClasses, epsilon = options.labelSmoothing ?? 0;
  if (k < 1) throw new RangeError("weightedLossGradients: the model has no head (numClasses 0)");
  const normalizer = options.normalizer ?? batch.alpha.reduce((a, b) => a + b, 0);
  const keys = [...params.keys()];
  const { value, grads } = tf.tidy(() => {
    // int32 one-hot, then cast: the WASM OneHot kernel writes integer bits into float32 outputs
    const oneHot = tf.cast(tf.oneHot(tf.tensor1d(batch.labels, "int32"), k), "float32");
    const target = epsilon > 0 ? tf.add(tf.mul(oneHot, 1 - epsilon), epsilon / k) : oneHot;
    const alpha = tf.tensor1d(batch.alpha);
    const result = tf.variableGrads(() => {
      const logits = timmForward(config, params, batch.images).logits!;
      const ce = tf.neg(tf.sum(tf.mul(target, tf.logSoftmax(logits)), 1));
      return tf.div(tf.sum(tf.mul(alpha, ce)), normalizer) as tf.Scalar;
    }, keys.map((key) => params.get(key)!));
    return { value: result.value, grads: keys.map((key) => result.grads[params.get(key)!.name]) };
  });
  return { loss: value, gradients: new Map(keys.map((key, i) => [key, grads[i]])) };
}
