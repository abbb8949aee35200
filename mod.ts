/**
 * CARROT — Class Attribution with Representer Reweighting Objective for Transformers.
 *
 * A linear softmax head on backbone features, solved to stationarity, so that every logit is a sum of
 * training-point contributions (Theorem A, the representer form).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { explain, fitHead, selectBackend } from "./mod.ts";
 *
 * await selectBackend("auto"); // WebGPU on a real GPU, else multi-threaded WASM
 * const train = { features: tf.randomNormal([200, 16]) as tf.Tensor2D, labels: Int32Array.from({ length: 200 }, (_, i) => i % 4) };
 * const fit = await fitHead(train, { lambda: 1 }); // J(W) = Σ α_i CE_i + (λ/2)‖W‖², to ‖∇J‖ ≤ 1e-6·‖∇J(0)‖
 * const test = tf.randomNormal([5, 16]) as tf.Tensor2D;
 * const { explanations, residual } = await explain(fit, train, test, { topK: 3 });
 * console.log(explanations[0].supporters, "identity residual", residual);
 * ```
 * @module
 */
export { type BackendChoice, type BackendPreference, releaseBackend, selectBackend } from "./lib/backend.ts";
export type { SelectBackendOptions } from "./lib/backend.ts";
export { type LabeledFeatures } from "./lib/carrot/labeled_features.ts";
export {
  disposeHead,
  fitHead,
  type FitHeadOptions,
  frobeniusNorm,
  type HeadFit,
  headLogits,
  headProbabilities,
} from "./lib/carrot/head.ts";
export {
  type ClassSelection,
  type Contribution,
  explain,
  type ExplainOptions,
  type ExplainResult,
  type Explanation,
  representerCoefficients,
} from "./lib/carrot/representer.ts";
export { Random } from "./lib/random.ts";
export { log, Progress, setLogSink } from "./lib/progress.ts";
