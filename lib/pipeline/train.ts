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
 */
import * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import { mkdirSync } from "node:fs";
import type { LabeledFeatures } from "../carrot/labeled_features.ts";
import { disposeHead, type HeadFit } from "../carrot/head.ts";
import { tuneLambda } from "../carrot/lambda.ts";
import { reweight, type ReweightEstimator, type TrajectoryEntry } from "../carrot/reweight.ts";
import { evaluateHead, type Metrics } from "../carrot/metrics.ts";
import { explain } from "../carrot/representer.ts";
import { testInfluence } from "../carrot/influence.ts";
import { faithfulness, type FaithfulnessRow } from "../carrot/faithfulness.ts";
import { type DetectionMetrics, detectionMetrics, rankSuspects } from "../carrot/debug.ts";
import type { AttributionMethod } from "../carrot/attribution.ts";
import { meanStd } from "../stats.ts";
import { selectRows, stratifiedSplitIndices } from "../split.ts";
import type { DatasetName } from "../data/dataset.ts";
import type { SynthBirdsOptions } from "../data/synthbirds.ts";
import { log, withProgress } from "../progress.ts";
import { loadImageFeatures, loadPrecomputedFeatures, type PipelineFeatures } from "./features_input.ts";
import { writeRunOutputs } from "./outputs.ts";

/** The resolved configuration of a run (tasks/train.ts validates it). */
export interface TrainConfig {
  /** tfjs backend preference (selected by the task before the run). */
  backend?: string;
  /** Dataset layout, or "features" for precomputed features. */
  dataset: DatasetName | "features";
  /** Dataset root (SynthBirds is materialised there when absent). */
  dataRoot: string;
  /** Registered timm model name. */
  model: string;
  /** timm safetensors weights of the model. */
  weights: string;
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
  /** Validation fraction carved from train when the dataset has no validation split. */
  valFraction: number;
  /** λ grid for the ERM tuning. */
  lambdaGrid: number[];
  /** RRO gradient estimator. */
  estimator: ReweightEstimator;
  /** ESS floor ρ. */
  rho: number;
  /** Consistency weight γ. */
  gamma: number;
  /** RRO step η. */
  stepSize: number;
  /** RRO outer steps. */
  outerSteps: number;
  /** Supporters/opposers per test image in explanations.jsonl. */
  topK: number;
  /** Influence scores of explanations and faithfulness: exact block CG, or EK-FAC (cheaper on large problems). */
  influenceMethod: "exact" | "ekfac";
  /** Faithfulness: the methods compared. */
  faithfulnessMethods: AttributionMethod[];
  /** Faithfulness: test points sampled. */
  faithfulnessSample: number;
  /** Faithfulness: K values. */
  faithfulnessKs: number[];
}

/** Everything the pipeline computed, as written to metrics.json and the report. */
export interface RunResult {
  /** The configuration of the run. */
  config: TrainConfig;
  /** Where the features came from (dataset, model, weights hash, skipped images). */
  provenance: Record<string, unknown>;
  /** Wall seconds per stage. */
  timings: Record<string, number>;
  /** Class names, index = label. */
  classNames: string[];
  /** The tuned λ per seed. */
  lambdas: number[];
  /** Test metrics per seed, ERM and CARROT. */
  perSeed: { seed: number; erm: Metrics; carrot: Metrics; stopReason: string; outerSteps: number }[];
  /** Mean ± std over seeds of every test metric. */
  summary: Record<"erm" | "carrot", Record<keyof Metrics, { mean: number; std: number }>>;
  /** The RRO trajectory of seed 0. */
  trajectory: Omit<TrajectoryEntry, "essPerClass">[];
  /** ESS_c / n_c per class at the end of seed 0. */
  essPerClass: number[];
  /** Remove/keep top-K rows (CARROT head, seed 0). */
  faithfulness: FaithfulnessRow[];
  /** Detection metrics per suspect ranking, where ground truth exists. */
  detection?: Record<string, { mislabeled?: DetectionMetrics; shortcut?: DetectionMetrics }>;
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

/** The training and validation parts of one seed (see the module JSDoc). */
function seedSplit(features: PipelineFeatures, seed: number, valFraction: number) {
  if (features.val) {
    const { train: keep } = stratifiedSplitIndices(features.val.labels, { fraction: 0.2 }, seed);
    return {
      trainIndices: Int32Array.from(features.train.labels.keys()),
      train: { features: features.train.features, labels: features.train.labels },
      val: selectRows(features.val, keep),
      owned: ["val"],
    };
  }
  const { train, val } = stratifiedSplitIndices(features.train.labels, { fraction: valFraction }, seed);
  return {
    trainIndices: train,
    train: selectRows(features.train, train),
    val: selectRows(features.train, val),
    owned: ["train", "val"],
  };
}

const summarize = (runs: Metrics[]) =>
  Object.fromEntries((["accuracy", "perClassAccuracy", "ece", "nll"] as const).map((key) => {
    const values = runs.map((r) => r[key]);
    return [key, values.length > 1 ? meanStd(values) : { mean: values[0], std: 0 }];
  })) as Record<keyof Metrics, { mean: number; std: number }>;

/** Runs the pipeline and writes the run directory; returns the result (also in metrics.json). */
export async function runTraining(config: TrainConfig): Promise<RunResult> {
  const timings: Record<string, number> = {};
  mkdirSync(config.runDir, { recursive: true });
  const features = await stage(
    "features",
    timings,
    () =>
      config.dataset === "features"
        ? loadPrecomputedFeatures(config.features ?? [])
        : loadImageFeatures({ ...config, dataset: config.dataset }),
  );
  const numClasses = features.classNames.length;
  const test: LabeledFeatures = features.test;
  const perSeed: RunResult["perSeed"] = [], lambdas: number[] = [];
  const alphaPerSeed: Float32Array[] = [], trainIndicesPerSeed: Int32Array[] = [];
  let kept: {
    erm: HeadFit;
    carrot: HeadFit;
    trajectory: TrajectoryEntry[];
    split: ReturnType<typeof seedSplit>;
  } | undefined;
  for (let seed = 0; seed < config.seeds; seed++) {
    const split = seedSplit(features, seed, config.valFraction);
    const tuned = await stage(
      `seed ${seed}: ERM head, λ tuned on val`,
      timings,
      () =>
        withProgress(
          "  λ grid",
          "fit",
          (onProgress) =>
            tuneLambda(split.train, split.val, { grid: config.lambdaGrid, numClasses, onProgress }),
        ),
    );
    const carrot = await stage(
      `seed ${seed}: CARROT reweighting`,
      timings,
      () =>
        withProgress("  RRO", "step", (onProgress) =>
          reweight(split.train, split.val, {
            lambda: tuned.lambda,
            numClasses,
            estimator: config.estimator,
            rho: config.rho,
            gamma: config.gamma,
            stepSize: config.stepSize,
            outerSteps: config.outerSteps,
            seed,
            onStep: (entry) => onProgress(entry.step, config.outerSteps),
          })),
    );
    const erm = await evaluateHead(tuned.fit, test), reweighted = await evaluateHead(carrot.fit, test);
    log(
      `  seed ${seed}: λ = ${tuned.lambda.toPrecision(3)}; test top-1 ERM ${
        (100 * erm.accuracy).toFixed(1)
      }% → ` +
        `CARROT ${(100 * reweighted.accuracy).toFixed(1)}% (${
          carrot.trajectory.length - 1
        } outer steps, ${carrot.stopReason})`,
    );
    perSeed.push({
      seed,
      erm,
      carrot: reweighted,
      stopReason: carrot.stopReason,
      outerSteps: carrot.trajectory.length - 1,
    });
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
  const result: RunResult = {
    config,
    provenance: features.provenance,
    timings,
    classNames: features.classNames,
    lambdas,
    perSeed,
    summary: { erm: summarize(perSeed.map((s) => s.erm)), carrot: summarize(perSeed.map((s) => s.carrot)) },
    trajectory: trajectory.map(({ essPerClass: _drop, ...entry }) => entry),
    essPerClass: Array.from(trajectory.at(-1)!.essPerClass),
    faithfulness: faith,
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
