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
export {
  disableNativeBlas,
  enableNativeBlas,
  nativeBlasCandidates,
  type NativeBlasStatus,
  nativeBlasStatus,
} from "./lib/native_blas.ts";
export { type LabeledFeatures } from "./lib/carrot/labeled_features.ts";
export type { CurvaturePair } from "./lib/carrot/_lbfgs.ts";
export type { CgResult, PreconditionerFailure } from "./lib/carrot/_cg.ts";
export { readCount, readPacked, readScalar, type ReadTally, readValues } from "./lib/carrot/_reads.ts";
export type { HeadProblem } from "./lib/carrot/_objective.ts";
export {
  cloneHead,
  disposeHead,
  fitHead,
  type FitHeadOptions,
  frobeniusNorm,
  type HeadFit,
  headLogits,
  headProbabilities,
  inSampleLosses,
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
export { log, type LogSink, Progress, setLogSink, withProgress } from "./lib/progress.ts";
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
  selfInfluence,
  type TestInfluence,
  testInfluence,
  type TestInfluenceOptions,
  validationAlphaGradient,
} from "./lib/carrot/influence.ts";
export {
  chooseHessianSolver,
  type DirectDiagnostics,
  directFactorBytes,
  type DirectSolverOptions,
  factorHessian,
  type HessianFactor,
  HessianNotPositiveDefiniteError,
  type InfluenceMethod,
  solverCosts,
  type SolverReport,
} from "./lib/carrot/direct.ts";
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
  agreementMethods,
  type AgreementOptions,
  type AgreementResult,
  type AgreementRow,
  attributionAgreement,
} from "./lib/carrot/agreement.ts";
export {
  type AttributionMethod,
  type AttributionOptions,
  attributionScores,
} from "./lib/carrot/attribution.ts";
export {
  readSafetensors,
  readSafetensorsHeader,
  type SafetensorsDtype,
  type SafetensorsEntry,
  type SafetensorsHeader,
  streamSafetensors,
  type StreamSafetensorsOptions,
  type TensorData,
  type TensorSpec,
  type TensorValues,
  writeSafetensors,
  writeSafetensorsStreaming,
} from "./lib/models/safetensors.ts";
export { type PosEmbedResample, resampleAbsPosEmbed } from "./lib/models/pos_embed.ts";
export type {
  Backbone,
  CheckpointPlan,
  DifferentiableOutputs,
  LoadReport,
  PlannedTensor,
  Preprocessing,
} from "./lib/models/backbone.ts";
export {
  filterVitCheckpoint,
  VIT_DEFAULTS,
  VIT_EXTRA_ARGUMENTS,
  VIT_MODELS,
  type VitConfig,
  vitParameterShapes,
} from "./lib/models/vit.ts";
export {
  filterSwinCheckpoint,
  relativePositionIndex,
  shiftedWindowMask,
  SWIN_DEFAULTS,
  SWIN_EXTRA_ARGUMENTS,
  SWIN_MODELS,
  type SwinConfig,
  swinParameterShapes,
} from "./lib/models/swin.ts";
export {
  loadTimmModel,
  type LoadTimmModelOptions,
  loadTimmParameters,
  randomTimmWeights,
  readTimmHubFolder,
  type RegisteredModel,
  type ResolvedTimmModel,
  resolveTimmConfig,
  TIMM_MODELS,
  timmActivationBytes,
  type TimmConfig,
  type TimmConfigInput,
  timmForward,
  type TimmHubModel,
  type TimmParameters,
  timmParameterShapes,
} from "./lib/models/registry.ts";
export type { ExtraTimmArguments } from "./lib/models/_timm.ts";
export {
  extractFeatures,
  type ExtractFeaturesOptions,
  type FeatureCacheKey,
  type FeatureSet,
  type ImageItem,
  type ImageSource,
} from "./lib/features.ts";
export { InputError, InputTypeError, isUserError } from "./lib/errors.ts";
export {
  type BoundingBox,
  type Dataset,
  DATASET_NAMES,
  DatasetError,
  type DatasetItem,
  type DatasetName,
  type ItemTruth,
  loadDataset,
  type LoadDatasetOptions,
  type LoaderOptions,
  type Split,
  splitValidation,
  type ValidationSize,
} from "./lib/data/dataset.ts";
export { loadCub } from "./lib/data/cub.ts";
export { loadNabirds } from "./lib/data/nabirds.ts";
export { loadCars } from "./lib/data/cars.ts";
export { type AircraftOptions, loadAircraft } from "./lib/data/aircraft.ts";
export { loadDogs } from "./lib/data/dogs.ts";
export { loadInat2017 } from "./lib/data/inat.ts";
export { loadImageFolder } from "./lib/data/image_folder.ts";
export {
  matField,
  MatFileError,
  matNumbers,
  type MatNumericClass,
  matStrings,
  type MatValue,
  readMat,
} from "./lib/data/mat5.ts";
export {
  type BadImage,
  type DecoderName,
  type ImageBatch,
  ImageDecodeError,
  type ImageDecoder,
  readImage,
  readImageBatch,
  type ReadImageBatchOptions,
  type RgbImage,
  selectImageDecoder,
} from "./lib/data/images.ts";
export {
  cropImage,
  evalTransform,
  flipHorizontal,
  type Interpolation,
  normalizeImage,
  randomResizedCropBox,
  resizeImage,
  trainTransform,
  type TrainTransformOptions,
  type TransformConfig,
} from "./lib/data/transforms.ts";
export { encodePng } from "./lib/data/png.ts";
export {
  type BirdSpecies,
  loadSynthBirds,
  type LoadSynthBirdsOptions,
  materializeSynthBirds,
  type SynthBirdsAttributes,
  synthBirdsAttributes,
  type SynthBirdsClass,
  synthBirdsClasses,
  type SynthBirdsConfig,
  synthBirdsConfig,
  synthBirdsContactSheet,
  type SynthBirdsManifest,
  type SynthBirdsOptions,
} from "./lib/data/synthbirds.ts";
export {
  type Consistency,
  type ConsistencyForm,
  consistencyFromKernel,
  consistencyKernel,
  type ConsistencyOptions,
  consistencyRegularizer,
} from "./lib/carrot/consistency.ts";
export {
  constrainedStep,
  effectiveSampleSizes,
  reweight,
  type ReweightEstimator,
  type ReweightOptions,
  type ReweightResult,
  type TrajectoryEntry,
} from "./lib/carrot/reweight.ts";
export {
  crossFitObjective,
  type CrossFitOptions,
  type CrossFitResult,
  crossFitReweight,
  type CrossFitStep,
  type FoldAtOne,
  type FoldHeadOptions,
  type HeldOutWeighting,
  outOfFoldLosses,
  SharedStart,
  stratifiedFolds,
  visitFoldHeads,
} from "./lib/carrot/crossfit.ts";
export {
  CandidateScorer,
  type SelectionCandidate,
  type SelectionOptions,
  type SelectionResult,
  type SelectionRow,
  selectWeighting,
} from "./lib/carrot/selection.ts";
export {
  bootstrapAverageReplicates,
  type CarrotOptions,
  carrotOutcome,
  type CarrotPath,
  carrotPaths,
  type CarrotResult,
  carrotReweight,
  defaultAverageVeto,
  defaultBootstrapAverage,
  defaultCarrotGammas,
  defaultCarrotPaths,
  defaultGradedIncumbent,
  defaultGradedTrim,
  defaultHeldOutWeightings,
  defaultInSampleTrim,
  defaultNeighbourK,
  defaultRefinedTrim,
  defaultTrimFractions,
  defaultTrimPath,
  defaultValidationPathMinPerClass,
  describeCandidate,
  knnTrimK,
  trim40Fractions,
} from "./lib/carrot/carrot.ts";
export { gradedTrimAlpha, lossTrimAlpha, type TrimOptions } from "./lib/carrot/trim.ts";
export { refinedTrimLosses } from "./lib/carrot/refined_trim.ts";
export {
  type NoiseRateEvidence,
  noiseRateEvidence,
  noiseRateFromErrors,
} from "./lib/carrot/noise_evidence.ts";
export {
  type CalibratedHead,
  gradedIncumbent,
  type IncumbentReport,
  noiseEvidenceZ,
} from "./lib/carrot/incumbent.ts";
export {
  bootstrapAverageCandidates,
  bootstrapSelectionWeights,
  type BootstrapWeightOptions,
} from "./lib/carrot/bootstrap_average.ts";
export {
  neighbourDisagreement,
  type NeighbourOptions,
  neighbourTrimScores,
} from "./lib/carrot/neighbours.ts";
export {
  type SplitValidationOptions,
  type SplitValidationResult,
  splitValidationReweight,
  validationHalves,
} from "./lib/carrot/split_validation.ts";
export {
  defaultLambdaExtension,
  defaultLambdaExtensionMinDecrease,
  defaultLambdaGrid,
  lambdaGridEdge,
  tuneLambda,
  type TuneLambdaOptions,
  type TuneLambdaResult,
} from "./lib/carrot/lambda.ts";
export { evaluateHead, type Metrics, metricsFromProbabilities } from "./lib/carrot/metrics.ts";
export {
  evaluateHeadWithTemperature,
  fitTemperature,
  fitTemperatureFromLogits,
  type FitTemperatureOptions,
  type TemperatureFit,
} from "./lib/carrot/temperature.ts";
export {
  selectRows,
  splitFeatures,
  stratifiedSplitIndices,
  type ValidationCoverage,
  validationCoverage,
} from "./lib/split.ts";
export {
  figureBundle,
  type FigureOptions,
  htmlTable,
  markdownTable,
  type MimeBundle,
  type PlotlyFigure,
  show,
  showFigure,
  showMarkdown,
  showTable,
  tableBundle,
  type TableCell,
  type TableOptions,
} from "./lib/report/display.ts";
export { type AxesOptions, barFigure, lineFigure, scatterFigure, type Series } from "./lib/report/figures.ts";
export { writeInfluenceMatrix } from "./lib/carrot/score_file.ts";
export {
  type RunArtifacts,
  type RunResult,
  runTraining,
  type SeedResult,
  type TrainConfig,
  type TrajectoryPoint,
} from "./lib/pipeline/train.ts";
export { faithfulness, type FaithfulnessOptions, type FaithfulnessRow } from "./lib/carrot/faithfulness.ts";
export {
  type AlphaByTruth,
  alphaByTruth,
  type AlphaGroup,
  type DetectionMetrics,
  detectionMetrics,
  fixSuspects,
  rankSuspects,
  type SuspectOptions,
  type SuspectRanking,
  suspectRankings,
  truthGroup,
} from "./lib/carrot/debug.ts";
export {
  appendSeedRows,
  type CarrotSeedDetails,
  defaultExperimentMethods,
  type ExperimentData,
  type ExperimentMethod,
  experimentMethods,
  type ExperimentOptions,
  type ExperimentRow,
  experimentRow,
  experimentTable,
  robustnessMethods,
  runExperiment,
} from "./lib/carrot/experiment.ts";
export { type PipelineFeatures, type SplitFeatures } from "./lib/pipeline/features_input.ts";
export { renderReport } from "./lib/report/report.ts";
export {
  type AlphaStats,
  type AlphaStepRecord,
  type AlphaUpdateOptions,
  type AttributeTargets,
  type EpochRecord,
  finetune,
  type FinetuneOptions,
  type FinetuneResult,
} from "./lib/train/finetune.ts";
export {
  groupLogSoftmax,
  type TrainableModel,
  type WeightedBatch,
  weightedLossGradients,
} from "./lib/train/weighted_loss.ts";
export { linearProbe, type LinearProbeOptions, type LinearProbeResult } from "./lib/train/linear_probe.ts";
