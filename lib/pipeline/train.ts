/**
 * The `deno task train` pipeline: features → validation split → ERM head (λ tuned on val) → CARROT reweighting →
 * test evaluation (ERM vs CARROT, mean ± std over seeds) → explanations (representer and influence) →
 * faithfulness (remove/keep top-K) → dataset debugging → run directory with metrics, weights, explanations,
 * suspects and the HTML report. Every stage prints one line with its wall time; features are cached, so an
 * interrupted run resumes from the cache when rerun.
 *
 * Seeds. A dataset without an official validation split (CUB, …) gets a stratified validation split carved from
 * train per seed (`valFraction`); one with an official split (SynthBirds, FGVC-Aircraft) uses a stratified 80%
 * subsample of it per seed. α lives on the training part only. The stochastic estimators also take the seed.
 *
 * Validation edge cases. Without validation data nothing can be tuned or selected, so the run refuses to start
 * (`RangeError`, before the run directory exists): `valFraction` 0 on a dataset without a validation split, an empty
 * validation file (`--dataset features`), or a training set whose classes all have a single image (each keeps it
 * for training). Otherwise each seed's split goes through `validationCoverage` (lib/split.ts): classes with 0 or 1
 * validation images, a validation set smaller than K and classes without training images are logged once as
 * `warning:` lines and recorded in `RunResult.validationWarnings` (metrics.json), as is a tuned λ at either end of
 * the λ grid (`lambdaGridEdge`). A class with no validation image is absent from L_val, the λ tuning, CARROT's
 * selection and the validation metrics; its test accuracy is still reported.
 *
 * A class whose training labels are all wrong (every training image labelled c truly belongs to other classes) is
 * a property of the data that the pipeline cannot see without ground truth. Reweighting keeps the class masses,
 * Σ_{i∈c} α_i = n_c, so CARROT cannot remove such a class; it can only move weight among its members. The head
 * learns "class c" from those images, and the failure shows in the per-class accuracy of class c on correctly
 * labelled validation and test images. Every number stays finite (tests/split_test.ts).
 */
import * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import type { LabeledFeatures } from "../carrot/labeled_features.ts";
import { disposeHead, type HeadFit } from "../carrot/head.ts";
import { lambdaGridEdge, tuneLambda } from "../carrot/lambda.ts";
import {
  defaultReweightOuterSteps,
  effectiveSampleSizes,
  reweight,
  type ReweightEstimator,
} from "../carrot/reweight.ts";
import {
  carrotOutcome,
  carrotPaths,
  type CarrotResult,
  carrotReweight,
  describeCandidate,
} from "../carrot/carrot.ts";
import { evaluateHeadWithTemperature, fitTemperature } from "../carrot/temperature.ts";
import { evaluateHead, type Metrics } from "../carrot/metrics.ts";
import { explain } from "../carrot/representer.ts";
import { testInfluence } from "../carrot/influence.ts";
import type { InfluenceMethod } from "../carrot/direct.ts";
import { faithfulness, type FaithfulnessRow } from "../carrot/faithfulness.ts";
import {
  type AlphaByTruth,
  alphaByTruth,
  type DetectionMetrics,
  detectionMetrics,
  rankSuspects,
} from "../carrot/debug.ts";
import type { AttributionMethod } from "../carrot/attribution.ts";
import { meanStd } from "../stats.ts";
import { nativeBlasStatus } from "../native_blas.ts";
import { selectRows, stratifiedSplitIndices, validationCoverage } from "../split.ts";
import type { DatasetName } from "../data/dataset.ts";
import type { SynthBirdsOptions } from "../data/synthbirds.ts";
import { log, withProgress } from "../progress.ts";
import {
  loadImageFeatures,
  loadPrecomputedFeatures,
  NO_VALIDATION_DATA,
  type PipelineFeatures,
} from "./features_input.ts";
import { writeRunOutputs } from "./outputs.ts";

/** The resolved configuration of a run (tasks/train.ts validates it). */
export interface TrainConfig {
  /** tfjs backend preference (selected by the task before the run). */
  backend?: string;
  /** Dataset layout, or "features" for precomputed features. */
  dataset: DatasetName | "features";
  /** Dataset root (SynthBirds is materialised there when absent). */
  dataRoot: string;
  /** Registered timm model name, timm config file or hub folder (absent for dataset "features": no backbone runs). */
  model?: string;
  /** timm safetensors weights (absent for dataset "features"; for a hub folder, default its model.safetensors). */
  weights?: string;
  /** Precomputed features train,val,test (dataset "features"). */
  features?: string[];
  /** Feature cache folder. */
  cacheDir: string;
  /** Run directory (runs/<name>). */
  runDir: string;
  /** Images per backbone batch. */
  batchSize: number;
  /** Skip unreadable images (listed in metrics.json) instead of failing. */
  skipBadImages: boolean;
  /** SynthBirds generator settings (defaults: the embedded default task). */
  synthBirds?: Omit<SynthBirdsOptions, "root">;
  /** Seeds 0..seeds−1. */
  seeds: number;
  /**
   * Validation fraction carved from train when the dataset has no validation split (unused when it has one); 0
   * there is refused with `NO_VALIDATION_DATA`.
   */
  valFraction: number;
  /** λ grid for the ERM tuning. */
  lambdaGrid: number[];
  /** λ values tried past the grid's end where its best λ lies (default `defaultLambdaExtension`; 0: the grid alone). */
  lambdaExtend?: number;
  /** Reweighting: CARROT's default (`carrot.ts`) or the original RRO on L_val (`reweight.ts`). */
  method: "carrot" | "rro";
  /** RRO gradient estimator (method rro). */
  estimator: ReweightEstimator;
  /** ESS floor ρ (default: the method's, 0.3 for carrot, 0.5 for rro). */
  rho?: number;
  /** Consistency weights γ: carrot runs one pair of paths per γ and selects; rro uses the first (default [0]). */
  gammas: number[];
  /** Step η (default: the method's, 3 for carrot, 1 for rro). */
  stepSize?: number;
  /** Outer steps (default 4 per path for carrot — `carrotReweight`'s is 6 — and 20 for rro). */
  outerSteps?: number;
  /** CARROT: cap on the steps of a path extended while its last step is the best on val (default outerSteps: off). */
  maxOuterSteps?: number;
  /** CARROT: fold assignments averaged to rank points for trimming (default `defaultTrimSplits`). */
  trimSplits?: number;
  /** CARROT: also offer graded trimming as a candidate (default `defaultGradedTrim`: on). */
  gradedTrim?: boolean;
  /** CARROT: k of the k-NN trims (default `defaultNeighbourK`, 0: none). */
  neighbourK?: number;
  /** CARROT: also offer the trims by the ERM head's in-sample losses (default `defaultInSampleTrim`). */
  inSampleTrim?: boolean;
  /** CARROT: also offer the trims by the ERM head's self-influence (default `defaultSelfInfluenceTrim`). */
  selfInfluenceTrim?: boolean;
  /** CARROT: rank the trims by refined out-of-fold losses (default `defaultRefinedTrim`). */
  refinedTrim?: boolean;
  /** CARROT: the graded trim as incumbent where the training data show noise (default `defaultGradedIncumbent`). */
  gradedIncumbent?: boolean;
  /** CARROT: one more path, self-weighted at γ = 0, from the graded trim's α (default `defaultTrimPath`: off). */
  trimPath?: boolean;
  /** CARROT: average the α of the k best candidates on val (default `defaultAverageTop`). */
  averageTop?: number;
  /** CARROT: the best candidate alone may replace the top-k mean (default `defaultAverageVeto`). */
  averageVeto?: boolean;
  /** CARROT: resamples of the bootstrap-weighted mean of the candidates (default `defaultBootstrapAverage`, 0: off). */
  bootstrapAverage?: number;
  /**
   * CARROT: let the split-validation RRO challenge the selected head on half of val (`validationPath`; default
   * true, and it runs only where that half holds ≥ 5 images per class).
   */
  validationPath?: boolean;
  /** Folds of CARROT's cross-fitted objective. */
  folds: number;
  /** Standard errors CARROT's selected gain must exceed on val to replace ERM. */
  z: number;
  /** Supporters/opposers per test image in explanations.jsonl. */
  topK: number;
  /**
   * Influence scores of explanations and faithfulness: EK-FAC (cheaper on large problems), or exact by block CG
   * ("exact"), the Cholesky factor of H ("direct"), or "auto": block CG first, H factored past the break-even
   * (`testInfluence`).
   */
  influenceMethod: InfluenceMethod;
  /** Faithfulness: the methods compared. */
  faithfulnessMethods: AttributionMethod[];
  /** Faithfulness: test points sampled. */
  faithfulnessSample: number;
  /** Faithfulness: K values. */
  faithfulnessKs: number[];
}

/** Which kernel ran the matrix products: the native BLAS's line on WASM (`native_blas.ts`), else the backend's own. */
function matMulKernel(): string {
  return tf.getBackend() === "wasm" ? nativeBlasStatus().description : `${tf.getBackend()} kernel`;
}

/** Everything the pipeline computed, as written to metrics.json and the report. */
export interface RunResult {
  /** The configuration of the run. */
  config: TrainConfig;
  /** Where the features came from (dataset, model, weights hash, skipped images), and the backend and matMul kernel. */
  provenance: Record<string, unknown>;
  /** Wall seconds per stage. */
  timings: Record<string, number>;
  /** Class names, index = label. */
  classNames: string[];
  /** The tuned λ per seed. */
  lambdas: number[];
  /** Test metrics per seed, ERM and CARROT, raw and after temperature scaling (T fitted on val). */
  perSeed: SeedResult[];
  /** Mean ± std over seeds of every test metric, raw and after temperature scaling. */
  summary: Record<
    "erm" | "carrot" | "ermCalibrated" | "carrotCalibrated",
    Record<keyof Metrics, { mean: number; std: number }>
  >;
  /** The outer-loop trajectories of seed 0, one point per step and path. */
  trajectory: TrajectoryPoint[];
  /** ESS_c / n_c per class at the end of seed 0. */
  essPerClass: number[];
  /** Remove/keep top-K rows (CARROT head, seed 0). */
  faithfulness: FaithfulnessRow[];
  /**
   * `validationCoverage` warnings of every seed's split (classes with 0 or 1 validation images, …) and λ tuned at an
   * end of its grid (`lambdaGridEdge`), each once.
   */
  validationWarnings: string[];
  /** Detection metrics per suspect ranking, where ground truth exists. */
  detection?: Record<string, { mislabeled?: DetectionMetrics; shortcut?: DetectionMetrics }>;
}

/** One seed's outcome. */
export interface SeedResult {
  /** The seed. */
  seed: number;
  /** ERM's test metrics. */
  erm: Metrics;
  /** CARROT's test metrics. */
  carrot: Metrics;
  /** ERM's test metrics after temperature scaling (T fitted on val). */
  ermCalibrated: Metrics;
  /** CARROT's test metrics after temperature scaling. */
  carrotCalibrated: Metrics;
  /** T of ERM and of CARROT, fitted on val. */
  temperature: { erm: number; carrot: number };
  /** Why the (chosen) outer loop stopped. */
  stopReason: string;
  /** Outer steps taken by the chosen path (the selected step for carrot). */
  outerSteps: number;
  /** Mean α after CARROT of clean, mislabeled and shortcut training images, where ground truth exists. */
  alphaByTruth?: AlphaByTruth;
  /** What CARROT's selection chose and why (method carrot). */
  selection?: {
    chosen: Record<string, number | string>;
    best: Record<string, number | string>;
    fallback: boolean;
    gain: number;
    standardError: number;
    reason: string;
    /** The split-validation RRO's step and the arbitration on half of val (absent with `--validationPath false`). */
    validationPath?: CarrotResult["validationPath"];
    /** With `--gradedIncumbent`: the noise evidence q̂ ± s.e. and the incumbent rule's decision. */
    incumbent?: CarrotResult["incumbent"];
    rho: number;
    stepSize: number;
    folds: number;
    z: number;
  };
}

/** One outer step of one path, as the report draws it. */
export interface TrajectoryPoint {
  /** "rro", or the carrot path ("uniform, γ 0", …). */
  path: string;
  /** Outer step (0 = ERM). */
  step: number;
  /** The objective the path descends (L_val + γR for rro, L_cf for carrot). */
  objective: number;
  /** Validation loss at the step's head (after temperature scaling for carrot). */
  valLoss: number;
  /** Validation top-1 at the step's head. */
  valAccuracy: number;
  /** min_c ESS_c(α)/n_c. */
  essMin: number;
  /** Whether the step changed α. */
  accepted: boolean;
}

/** What the output writers need besides the result. */
export interface RunArtifacts {
  /** The features of every split. */
  features: PipelineFeatures;
  /** The training rows of seed 0 (indices into features.train) and their final α. */
  trainIndices: Int32Array;
  /** Final α per seed, aligned with `trainIndicesPerSeed`. */
  alphaPerSeed: Float32Array[];
  /** The training rows of each seed. */
  trainIndicesPerSeed: Int32Array[];
  /** The ERM head of seed 0. */
  erm: HeadFit;
  /** The CARROT head of seed 0. */
  carrot: HeadFit;
  /** One record per test image (explanations.jsonl before paths are attached). */
  explanations: Record<string, unknown>[];
  /** Training rows with their suspect scores, most harmful first. */
  suspects: { index: number; scores: Record<string, number> }[];
}

async function stage<T>(name: string, timings: Record<string, number>, work: () => Promise<T>): Promise<T> {
  const start = performance.now();
  const value = await work();
  const seconds = (performance.now() - start) / 1000;
  timings[name] = seconds;
  log(`[${name}] ${seconds.toFixed(1)} s`);
  return value;
}

/**
 * The training and validation parts of one seed and their `validationCoverage` (see the module JSDoc). Throws a
 * `RangeError` naming the cause and the fix when the validation part would be empty.
 */
function seedSplit(features: PipelineFeatures, seed: number, config: TrainConfig) {
  const numClasses = features.classNames.length;
  if (features.val) {
    if (features.val.labels.length === 0) {
      const file = config.features?.[1];
      throw new RangeError(
        config.dataset === "features"
          ? `${file}: the validation file has no rows; pass a non-empty validation file, or leave the val ` +
            "entry of --features empty to carve --val-fraction from train"
          : `${config.dataRoot}: the validation split has no usable images; fix or remove its images so that ` +
            "the split is either non-empty or absent (then --val-fraction carves one from train)",
      );
    }
    const { train: keep } = stratifiedSplitIndices(features.val.labels, { fraction: 0.2 }, seed);
    const val = selectRows(features.val, keep);
    return {
      trainIndices: Int32Array.from(features.train.labels.keys()),
      train: { features: features.train.features, labels: features.train.labels },
      val,
      owned: ["val"],
      coverage: validationCoverage(features.train.labels, val.labels, numClasses),
    };
  }
  if (config.valFraction === 0) throw new RangeError(NO_VALIDATION_DATA);
  const fraction = config.valFraction;
  const { train, val } = stratifiedSplitIndices(features.train.labels, { fraction }, seed);
  if (val.length === 0) {
    throw new RangeError(
      `--val-fraction ${fraction} carves no validation images: every class has a single training ` +
        "image, which it keeps for training; use a dataset/feature set with a validation split or more " +
        "training images per class",
    );
  }
  const trainPart = selectRows(features.train, train), valPart = selectRows(features.train, val);
  return {
    trainIndices: train,
    train: trainPart,
    val: valPart,
    owned: ["train", "val"],
    coverage: validationCoverage(trainPart.labels, valPart.labels, numClasses),
  };
}

const summarize = (runs: Metrics[]) =>
  Object.fromEntries((["accuracy", "perClassAccuracy", "ece", "nll"] as const).map((key) => {
    const values = runs.map((r) => r[key]);
    return [key, values.length > 1 ? meanStd(values) : { mean: values[0], std: 0 }];
  })) as Record<keyof Metrics, { mean: number; std: number }>;

/** One seed's reweighting by the configured method, in one shape for the rest of the pipeline. */
async function reweightSeed(
  train: LabeledFeatures,
  val: LabeledFeatures,
  lambda: number,
  numClasses: number,
  seed: number,
  config: TrainConfig,
): Promise<{
  fit: HeadFit;
  alpha: Float32Array;
  temperature: number;
  trajectory: TrajectoryPoint[];
  stopReason: string;
  outerSteps: number;
  summary: string;
  selection?: SeedResult["selection"];
}> {
  if (config.method === "rro") {
    const outerSteps = config.outerSteps ?? 20;
    const run = await withProgress("  RRO", "step", (onProgress) =>
      reweight(train, val, {
        lambda,
        numClasses,
        estimator: config.estimator,
        rho: config.rho ?? 0.5,
        gamma: config.gammas[0] ?? 0,
        stepSize: config.stepSize ?? 1,
        outerSteps,
        seed,
        onStep: (entry) => onProgress(entry.step, outerSteps),
      }));
    return {
      fit: run.fit,
      alpha: run.alpha,
      temperature: (await fitTemperature(run.fit, val)).temperature,
      trajectory: run.trajectory.map((e) => ({
        path: "rro",
        step: e.step,
        objective: e.objective,
        valLoss: e.valLoss,
        valAccuracy: e.valAccuracy,
        essMin: e.essMin,
        accepted: e.accepted,
      })),
      stopReason: run.stopReason,
      outerSteps: run.trajectory.length - 1,
      summary: `${run.trajectory.length - 1} outer steps, ${run.stopReason}`,
    };
  }
  const paths = carrotPaths(config.gammas);
  const outerSteps = config.outerSteps ?? 4, rho = config.rho ?? 0.3, stepSize = config.stepSize ?? 3;
  const run = await withProgress("  CARROT", "step", (onProgress) => {
    let done = 0;
    return carrotReweight(train, val, {
      lambda,
      numClasses,
      paths,
      rho,
      stepSize,
      outerSteps,
      maxOuterSteps: config.maxOuterSteps,
      trimSplits: config.trimSplits,
      gradedTrim: config.gradedTrim,
      neighbourK: config.neighbourK,
      inSampleTrim: config.inSampleTrim,
      selfInfluenceTrim: config.selfInfluenceTrim,
      refinedTrim: config.refinedTrim,
      gradedIncumbent: config.gradedIncumbent,
      trimPath: config.trimPath,
      averageTop: config.averageTop,
      averageVeto: config.averageVeto,
      bootstrapAverage: config.bootstrapAverage,
      validationPath: config.validationPath,
      folds: config.folds,
      z: config.z,
      seed,
      onStep: (_, entry) => entry.step > 0 && onProgress(++done, Math.max(done, paths.length * outerSteps)),
      // the challenger (where it runs) adds RRO's steps on half of val to the bar
      onValidationPathStep: (entry) =>
        entry.step > 0 &&
        onProgress(++done, Math.max(done, paths.length * outerSteps + defaultReweightOuterSteps)),
    });
  });
  const { selection } = run;
  // every path's steps with their scores; the path from the graded trim (with --trimPath) starts at that trim's row
  const label = (l: Record<string, number | string>) =>
    `${l.weighting}, γ ${l.gamma}${l.from ? ` from the ${l.from}` : ""}`;
  const graded = selection.rows.find((r) => r.label.weighting === "graded-trim");
  const row = (path: string, step: number, start = selection.rows[0]) =>
    step === 0 ? start : selection.rows.find((r) => label(r.label) === path && r.label.step === step);
  const walked = [
    ...run.trajectories.map((t) => ({
      path: `${t.heldOutWeighting}, γ ${t.gamma}`,
      steps: t.steps,
      start: undefined,
    })),
    ...(run.trimPath
      ? [{ path: "self, γ 0 from the graded trim", steps: run.trimPath.steps, start: graded }]
      : []),
  ];
  const trajectory = walked.flatMap(({ path, steps, start }) =>
    steps.map((e) => {
      const scored = row(path, e.step, start);
      return {
        path,
        step: e.step,
        objective: e.objective,
        valLoss: scored?.valLoss ?? NaN,
        valAccuracy: scored?.valAccuracy ?? NaN,
        essMin: e.essMin,
        accepted: e.accepted,
      };
    })
  );
  const { chosen, fallback, reason } = carrotOutcome(run);
  const best = selection.rows[selection.best].label;
  return {
    fit: run.fit,
    alpha: run.alpha,
    temperature: run.temperature,
    trajectory,
    stopReason: fallback ? "fallback to α = 1" : `selected ${describeCandidate(chosen)}`,
    outerSteps: Number(chosen.step),
    summary: reason,
    selection: {
      chosen,
      best,
      fallback,
      gain: selection.gain,
      standardError: selection.standardError,
      reason,
      validationPath: run.validationPath,
      incumbent: run.incumbent,
      rho,
      stepSize,
      folds: config.folds,
      z: config.z,
    },
  };
}

/** The backbone of an image dataset run (a `RangeError` when the config lacks it). */
function requireBackbone(config: TrainConfig): { model: string; weights?: string } {
  if (config.model === undefined) {
    throw new RangeError(`runTraining: dataset "${config.dataset}" needs a model (a backbone runs)`);
  }
  return { model: config.model, weights: config.weights };
}

/** Runs the pipeline and writes the run directory; returns the result (also in metrics.json). */
export async function runTraining(config: TrainConfig): Promise<RunResult> {
  const timings: Record<string, number> = {};
  const features = await stage(
    "features",
    timings,
    () =>
      config.dataset === "features"
        ? loadPrecomputedFeatures(config.features ?? [])
        : loadImageFeatures({ ...config, dataset: config.dataset, ...requireBackbone(config) }),
  );
  const numClasses = features.classNames.length;
  const test: LabeledFeatures = features.test;
  const perSeed: RunResult["perSeed"] = [], lambdas: number[] = [];
  const alphaPerSeed: Float32Array[] = [], trainIndicesPerSeed: Int32Array[] = [];
  const validationWarnings: string[] = [];
  const warnOnce = (warning: string) => {
    if (validationWarnings.includes(warning)) return;
    validationWarnings.push(warning);
    log(`  warning: ${warning}`);
  };
  let kept: {
    erm: HeadFit;
    carrot: HeadFit;
    trajectory: TrajectoryPoint[];
    split: ReturnType<typeof seedSplit>;
  } | undefined;
  for (let seed = 0; seed < config.seeds; seed++) {
    let split: ReturnType<typeof seedSplit>;
    try {
      split = seedSplit(features, seed, config);
    } catch (e) {
      // a refused split (no validation data) frees what the features stage loaded
      tf.dispose([
        features.train.features,
        features.test.features,
        ...(features.val ? [features.val.features] : []),
      ]);
      throw e;
    }
    // per-class split sizes (and mostly λ) do not depend on the seed: each warning is logged once
    split.coverage.warnings.forEach(warnOnce);
    const tuned = await stage(
      `seed ${seed}: ERM head, λ tuned on val`,
      timings,
      () =>
        withProgress(
          "  λ grid",
          "fit",
          (onProgress) =>
            tuneLambda(split.train, split.val, {
              grid: config.lambdaGrid,
              extend: config.lambdaExtend,
              numClasses,
              onProgress,
            }),
        ),
    );
    const edge = lambdaGridEdge(tuned);
    if (edge) warnOnce(edge);
    const carrot = await stage(
      `seed ${seed}: ${config.method === "carrot" ? "CARROT reweighting" : "RRO reweighting"}`,
      timings,
      () => reweightSeed(split.train, split.val, tuned.lambda, numClasses, seed, config),
    );
    const ermTemperature = (await fitTemperature(tuned.fit, split.val)).temperature;
    const seedResult: SeedResult = {
      seed,
      erm: await evaluateHead(tuned.fit, test),
      carrot: await evaluateHead(carrot.fit, test),
      ermCalibrated: await evaluateHeadWithTemperature(tuned.fit, test, ermTemperature),
      carrotCalibrated: await evaluateHeadWithTemperature(carrot.fit, test, carrot.temperature),
      temperature: { erm: ermTemperature, carrot: carrot.temperature },
      stopReason: carrot.stopReason,
      outerSteps: carrot.outerSteps,
      selection: carrot.selection,
    };
    const items = features.train.items;
    if (items?.[0]?.truth) {
      const truth = Array.from(split.trainIndices, (i) => items[i].truth!);
      if (truth.some((t) => t.noisy || t.shortcut)) {
        const grouped = seedResult.alphaByTruth = alphaByTruth(carrot.alpha, truth);
        log(
          `  seed ${seed}: mean α clean ${grouped.clean.mean.toFixed(2)}, mislabeled ${
            grouped.mislabeled.mean.toFixed(2)
          } (× ${grouped.mislabeledRatio.toFixed(2)})${
            grouped.shortcut.count ? `, shortcut ${grouped.shortcut.mean.toFixed(2)}` : ""
          }`,
        );
      }
    }
    log(
      `  seed ${seed}: λ = ${tuned.lambda.toPrecision(3)}; test top-1 ERM ${
        (100 * seedResult.erm.accuracy).toFixed(1)
      }% → CARROT ${(100 * seedResult.carrot.accuracy).toFixed(1)}% (${carrot.summary})`,
    );
    perSeed.push(seedResult);
    lambdas.push(tuned.lambda);
    alphaPerSeed.push(carrot.alpha);
    trainIndicesPerSeed.push(split.trainIndices);
    if (seed === 0) kept = { erm: tuned.fit, carrot: carrot.fit, trajectory: carrot.trajectory, split };
    else {
      disposeHead(tuned.fit);
      disposeHead(carrot.fit);
      tf.dispose(split.owned.map((k) => (split as unknown as Record<string, LabeledFeatures>)[k].features));
    }
  }
  const { erm, carrot, trajectory, split } = kept!;
  const train = split.train;
  const explanations = await stage(
    "explanations",
    timings,
    () => explainTest(carrot, train, features, config),
  );
  // --influenceMethod ekfac applies to every influence score of the run: keep-top-K needs one solve per
  // (test point, class), which at CUB scale (8 × 200) is over an hour of exact CG
  const methods = config.faithfulnessMethods.map((m) =>
    m === "influence" && config.influenceMethod === "ekfac" ? "influence-ekfac" as const : m
  );
  if (methods.join() !== config.faithfulnessMethods.join()) {
    log("  faithfulness scores influence with EK-FAC (--influenceMethod ekfac)");
  }
  const faith = await stage(
    "faithfulness",
    timings,
    async () =>
      (await withProgress("  faithfulness", "refit", (onProgress) =>
        faithfulness(carrot, train, test, {
          methods,
          ks: config.faithfulnessKs,
          sample: config.faithfulnessSample,
          onProgress,
        }))).rows,
  );
  const { detection, suspects } = await stage(
    "dataset debugging",
    timings,
    () => debugTrain(erm, train, split.val, features, split.trainIndices),
  );
  const { model: _model, weights: _weights, ...withoutBackbone } = config;
  const result: RunResult = {
    config: config.dataset === "features" ? withoutBackbone : config, // no backbone ran: the provenance names the files
    provenance: { ...features.provenance, backend: tf.getBackend(), matMul: matMulKernel() },
    timings,
    classNames: features.classNames,
    lambdas,
    perSeed,
    summary: {
      erm: summarize(perSeed.map((s) => s.erm)),
      carrot: summarize(perSeed.map((s) => s.carrot)),
      ermCalibrated: summarize(perSeed.map((s) => s.ermCalibrated)),
      carrotCalibrated: summarize(perSeed.map((s) => s.carrotCalibrated)),
    },
    trajectory,
    essPerClass: Array.from(effectiveSampleSizes(alphaPerSeed[0], train.labels, numClasses)),
    faithfulness: faith,
    validationWarnings,
    detection,
  };
  await stage("outputs and report", timings, () =>
    writeRunOutputs(result, {
      features,
      trainIndices: split.trainIndices,
      alphaPerSeed,
      trainIndicesPerSeed,
      erm,
      carrot,
      explanations,
      suspects,
    }));
  disposeHead(erm);
  disposeHead(carrot);
  tf.dispose([
    ...split.owned.map((k) => (split as unknown as Record<string, LabeledFeatures>)[k].features),
    features.train.features,
    features.test.features,
    ...(features.val ? [features.val.features] : []),
  ]);
  return result;
}

/** One record per test image: prediction and the top-K supporters/opposers by representer and by influence. */
async function explainTest(
  fit: HeadFit,
  train: LabeledFeatures,
  features: PipelineFeatures,
  config: TrainConfig,
) {
  const test = features.test;
  const representer = await explain(fit, train, test.features, { topK: config.topK });
  const influence = await withProgress(
    "  influence explanations",
    "img",
    (onProgress) =>
      testInfluence(fit, train, test, { topK: config.topK, method: config.influenceMethod, onProgress }),
  );
  log(
    `  representer identity residual ${representer.residual.toExponential(2)} (bound ${
      representer.residualBound.toExponential(2)
    })`,
  );
  return representer.explanations.map((e, t) => ({
    id: test.ids[t],
    label: test.labels[t],
    predicted: e.classIndex,
    logit: e.logit,
    representer: {
      sumOfContributions: e.sumOfContributions,
      supporters: e.supporters.map((s) => ({ index: s.index, score: s.contribution })),
      opposers: e.opposers.map((s) => ({ index: s.index, score: s.contribution })),
    },
    influence: {
      loss: influence[t].loss,
      proponents: influence[t].proponents.map((s) => ({ index: s.index, score: s.influence })),
      opponents: influence[t].opponents.map((s) => ({ index: s.index, score: s.influence })),
    },
  }));
}

/** Suspect scores on the training part (seed 0), and detection metrics where ground truth exists. */
async function debugTrain(
  erm: HeadFit,
  train: LabeledFeatures,
  val: LabeledFeatures,
  features: PipelineFeatures,
  trainIndices: Int32Array,
) {
  const scores = await withProgress(
    "  self-influence",
    "pt",
    (onProgress) => rankSuspects(erm, train, val, { selfInfluence: "ekfac", onProgress }),
  );
  const items = features.train.items;
  const truth = items?.[0]?.truth ? Array.from(trainIndices, (i) => items[i].truth!) : undefined;
  let detection: RunResult["detection"];
  if (truth) {
    detection = {};
    const flags = (key: "noisy" | "shortcut") => truth.map((t) => (t[key] ? 1 : 0));
    for (const [ranking, values] of Object.entries(scores)) {
      const entry: { mislabeled?: DetectionMetrics; shortcut?: DetectionMetrics } = {};
      if (flags("noisy").some(Boolean)) entry.mislabeled = detectionMetrics(values!, flags("noisy"));
      if (flags("shortcut").some(Boolean)) entry.shortcut = detectionMetrics(values!, flags("shortcut"));
      detection[ranking] = entry;
    }
    const best = Object.entries(detection).sort((a, b) =>
      (b[1].mislabeled?.auroc ?? 0) - (a[1].mislabeled?.auroc ?? 0)
    )[0];
    log(`  mislabel detection: best AUROC ${best[1].mislabeled?.auroc.toFixed(3)} (${best[0]})`);
  }
  const suspects = Array.from(trainIndices, (index, row) => ({
    index,
    scores: Object.fromEntries(Object.entries(scores).map(([k, v]) => [k, v![row]])),
  }));
  suspects.sort((a, b) => b.scores.harmfulness - a.scores.harmfulness);
  return { detection, suspects };
}

/** The path of the run's report. */
export function reportPath(runDir: string): string {
  return join(runDir, "report.html");
}
