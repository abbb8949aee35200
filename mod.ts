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
export type { CurvaturePair } from "./lib/carrot/_lbfgs.ts";
export type { HeadProblem } from "./lib/carrot/_objective.ts";
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
export { log, type LogSink, Progress, setLogSink } from "./lib/progress.ts";
export {
  type BootstrapInterval,
  bootstrapInterval,
  type BootstrapOptions,
  formatMeanStd,
  type FormatMeanStdOptions,
  kendallTau,
  type MeanStd,
  meanStd,
  pearson,
  rank,
  spearman,
} from "./lib/stats.ts";
export {
  cubSizedPreset,
  type FineGrainedConfig,
  type FineGrainedFeatures,
  type FineGrainedOptions,
  makeFineGrainedFeatures,
  type SplitName,
  type SyntheticSplit,
  type SyntheticTrainSplit,
} from "./lib/data/synthetic_features.ts";
export {
  type AlphaGradientOptions,
  type AlphaGradientResult,
  exactHessian,
  type HessianOperator,
  hessianOperator,
  hessianVectorProduct,
  type KroneckerInverse,
  kroneckerInverse,
  meanLossGradient,
  type TestInfluence,
  testInfluence,
  type TestInfluenceOptions,
  validationAlphaGradient,
} from "./lib/carrot/influence.ts";
export {
  disposeCheckpoints,
  type TracInCheckpoints,
  tracInMatrix,
  type TracInTrainingOptions,
  tracInValidation,
  trainTracInCheckpoints,
} from "./lib/carrot/tracin.ts";
export { projectionSplit, type TrakOptions, trakScores } from "./lib/carrot/trak.ts";
export {
  alphaFiniteDifference,
  type LdsOptions,
  linearDatamodelingScore,
  looExact,
  type LooResult,
  type RefitOptions,
} from "./lib/carrot/loo.ts";
export { knnCosineScores } from "./lib/carrot/knn.ts";
export {
  type AgreementOptions,
  type AgreementResult,
  type AgreementRow,
  attributionAgreement,
  type AttributionMethod,
  attributionMethods,
} from "./lib/carrot/agreement.ts";
