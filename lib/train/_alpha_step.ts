/**
 * CARROT's α update between fine-tuning epochs, on features of the current backbone: the head
 * W*(α) = argmin_W Σ_i α_i CE(W h_i, y_i) + (λ/2)‖W‖²_F fitted to stationarity (`fitHead`), g = ∂L_val/∂α by
 * Theorem B (`validationAlphaGradient`), and α ← `constrainedStep`(α, g, y, K, η_α, ρ), which keeps every class
 * mass Σ_{i∈c} α_i = n_c and the floor ESS_c(α) ≥ ρ n_c.
 */
import * as tf from "@tensorflow/tfjs";
import { disposeHead, fitHead } from "../carrot/head.ts";
import { validationAlphaGradient } from "../carrot/influence.ts";
import { evaluateHead } from "../carrot/metrics.ts";
import { constrainedStep } from "../carrot/reweight.ts";
import type { AlphaStepRecord } from "./finetune.ts";

/** One α update (module JSDoc) from row-major features; returns the new α and what the step did. */
export async function alphaStep(
  train: { features: Float32Array; labels: Int32Array; alpha: Float32Array },
  val: { features: Float32Array; labels: Int32Array },
  options: { lambda: number; stepSize: number; rho: number; numClasses: number },
): Promise<{ alpha: Float32Array; record: AlphaStepRecord }> {
  const n = train.labels.length, dim = train.features.length / n, k = options.numClasses;
  const trainSet = { features: tf.tensor2d(train.features, [n, dim]), labels: train.labels };
  const valSet = { features: tf.tensor2d(val.features, [val.labels.length, dim]), labels: val.labels };
  try {
    const fit = await fitHead(trainSet, { lambda: options.lambda, alpha: train.alpha, numClasses: k });
    try {
      const g = await validationAlphaGradient(fit, trainSet, valSet);
      const head = await evaluateHead(fit, valSet);
      const alpha = constrainedStep(train.alpha, g.gradient, train.labels, k, options.stepSize, options.rho);
      let maxChange = 0;
      alpha.forEach((a, i) => maxChange = Math.max(maxChange, Math.abs(a - train.alpha[i])));
      const record = {
        headValLoss: g.valLoss,
        headValTop1: head.accuracy,
        headConverged: fit.converged,
        cgIterations: g.cgIterations,
        maxChange,
      };
      return { alpha, record };
    } finally {
      disposeHead(fit);
    }
  } finally {
    tf.dispose([trainSet.features, valSet.features]);
  }
}
