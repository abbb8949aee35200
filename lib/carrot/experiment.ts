/**
 * ERM vs CARROT over seeds: the experiment behind the project's headline numbers.
 *
 * For each seed the caller's `data(seed)` gives train / val / test splits. λ is tuned on val for the ERM head
 * (α = 1) and reused by every other method, so the methods differ only in α:
 *   erm                     α = 1;
 *   carrot                  CARROT's default (`carrot.ts`): cross-fitted influence descent on the training set,
 *                           honest selection on val with the fallback to α = 1, and the split-validation RRO as
 *                           a challenger where half of val holds ≥ 5 images per class (`validationPath`);
 *   carrot-consistency      CARROT with the "own-class" consistency term (`consistency.ts`) as extra paths, given
 *                           explicitly: γ ∈ {0, 10} × both held-out weightings, the selection picks γ with the
 *                           step — since session 15 the default's own paths, so the same as `carrot` (opt-in);
 *   carrot-gamma0           CARROT without the consistency paths (γ = 0 only): the default before session 15
 *                           (opt-in);
 *   carrot-knn              CARROT with the k-NN trims too (`neighbourK` = `knnTrimK`, 30): measured in session 16
 *                           against a rule it missed by one criterion (README), so not the default (opt-in);
 *   carrot-in-sample-trims  CARROT with the trims by the ERM head's in-sample losses too (`inSampleTrim: true`):
 *                           measured in session 17 against a rule it failed (README), so not the default (opt-in);
 *   carrot-self-influence-trims CARROT with the trims by the ERM head's EK-FAC self-influence too
 *                           (`selfInfluenceTrim: true`): measured in session 26 against a rule fixed before it ran
 *                           (README), the default since then, so the same head as `carrot`;
 *   carrot-bootstrap        CARROT with the bootstrap-weighted mean of its candidates instead of the top-3 mean
 *                           (`bootstrapAverage` = `bootstrapAverageReplicates`, 1000): measured in session 18
 *                           against a rule whose main criterion it missed (README), so not the default (opt-in);
 *   carrot-refined-trims    CARROT with the trims ranked by refined out-of-fold losses (`refinedTrim: true`, fold
 *                           heads refitted at the first graded trim): measured in session 19 against a rule it
 *                           failed (README), so not the default (opt-in);
 *   carrot-graded-incumbent CARROT with the graded trim as the selection's incumbent where the fold heads' errors
 *                           show label noise (`gradedIncumbent: true`, `incumbent.ts`): measured in session 20
 *                           against a rule it failed (README), so not the default (opt-in);
 *   carrot-average-veto     CARROT whose single best candidate replaces the top-3 mean when it beats it on val by
 *                           one standard error (`averageVeto: true`): measured in session 22, the default since
 *                           session 23 (README), so the same head as `carrot` since then;
 *   carrot-trim40           CARROT offering a 40% trim too (`trimFractions` = `trim40Fractions`, [0.1, 0.2, 0.3,
 *                           0.4]): measured in session 24 against a rule whose main criterion it missed (README),
 *                           so not the default (opt-in);
 *   carrot-trim-path        CARROT with one more self-weighted path at γ = 0 that starts at the graded trim's α
 *                           (`trimPath: true`): measured in session 24 against a rule fixed before it ran, whose
 *                           main criteria it missed (README), so opt-in;
 *   carrot-selection        CARROT without the challenger (`validationPath: false`): its selection alone, the
 *                           default before the guard on B's size (opt-in);
 *   carrot-rro-split        CARROT with the challenger at any size of B (`validationPathMinPerClass` 0): as it was
 *                           measured before the guard on B's size became part of the default (opt-in);
 *   rro                     the original RRO (`reweight.ts`): L_val itself as the outer objective, exact influence
 *                           estimator, ESS floor ρ = 0.5, γ = 0 (what `deno task train` shipped before CARROT's
 *                           default);
 *   rro-consistency         the same with the consistency term γ = 10 (chosen by scale before any result was seen);
 *   rro-no-ess              the same with ρ = 0;
 *   rro-representer, rro-tracin, rro-trak   RRO with the other estimators of g;
 *   rro-split               RRO made honest (`split_validation.ts`): it descends half of val, the other half picks
 *                           its number of steps with the fallback to α = 1, and fits its T (opt-in);
 *   small-loss              drop the 20% highest-loss training points of each class under the ERM head, refit;
 *   l2rw                    one-step learning-to-reweight (Ren et al. 2018) on the head: at the ERM head, the
 *                           look-ahead W′ = W − η Σ ε_i ∇ℓ_i gives −∂L_val(W′)/∂ε_i ∝ ∇L_val·∇ℓ_i, so
 *                           α_i ∝ max(0, ∇L_val·∇ℓ_i), rescaled to each class's mass n_c (uniform for a class whose
 *                           weights are all 0), then one refit;
 *   oracle                  the ceiling, not a method: α = 0 on the training points the data knows to be harmful
 *                           (`train.mislabeled` or `train.shortcut` set: ground truth, generated data only), α = 1
 *                           elsewhere, one refit — what removing exactly the corrupted points would give.
 * Each is evaluated on test: top-1, mean per-class accuracy, ECE (15 bins), NLL, and ECE and NLL again after
 * temperature scaling fitted on val (every method gets its own T, so none can buy accuracy with confidence); rows
 * report mean ± std over seeds, and `carrot`'s rows carry what its selection chose per seed.
 */
import * as tf from "@tensorflow/tfjs";
import type { LabeledFeatures } from "./labeled_features.ts";
import { disposeHead, fitHead, type HeadFit, headProbabilities, inSampleLosses } from "./head.ts";
import { meanLossGradient } from "./influence.ts";
import { reweight, type ReweightOptions } from "./reweight.ts";
import { splitValidationReweight } from "./split_validation.ts";
import type { SelectionResult } from "./selection.ts";
import {
  bootstrapAverageReplicates,
  type CarrotOptions,
  carrotOutcome,
  carrotPaths,
  carrotReweight,
  knnTrimK,
  trim40Fractions,
} from "./carrot.ts";
import { evaluateHeadWithTemperature, fitTemperature } from "./temperature.ts";
import { lossTrimAlpha } from "./trim.ts";
import { tuneLambda } from "./lambda.ts";
import { evaluateHead, type Metrics } from "./metrics.ts";
import { logits } from "./_objective.ts";
import { meanStd } from "../stats.ts";
import { readValues } from "./_reads.ts";

/** All methods, in table order (see the module JSDoc). */
export const experimentMethods = [
  "erm",
  "carrot",
  "carrot-consistency",
  "carrot-gamma0",
  "carrot-knn",
  "carrot-in-sample-trims",
  "carrot-self-influence-trims",
  "carrot-bootstrap",
  "carrot-refined-trims",
  "carrot-graded-incumbent",
  "carrot-average-veto",
  "carrot-trim40",
  "carrot-trim-path",
  "carrot-selection",
  "carrot-rro-split",
  "rro",
  "rro-consistency",
  "rro-no-ess",
  "rro-representer",
  "rro-tracin",
  "rro-trak",
  "rro-split",
  "small-loss",
  "l2rw",
  "oracle",
] as const;

/** The methods of the experiment (see the module JSDoc). */
export type ExperimentMethod = typeof experimentMethods[number];

/**
 * Rows `runExperiment` runs only when asked: the oracle (needs ground truth), the split-validation row `rro-split`, and
 * every `carrot-…` variant (CARROT without its challenger, its paths given explicitly with or without γ = 10, and its
 * measured variants: k-NN, in-sample, self-influence, refined and 40% trims, the path from the graded trim, the
 * bootstrap-weighted mean, the graded incumbent, the average veto, the challenger forced on).
 */
const isOptIn = (method: ExperimentMethod) =>
  method === "oracle" || method === "rro-split" || method.startsWith("carrot-");

/** The rows `runExperiment` runs by default: every method of `experimentMethods` that is not opt-in, in table order. */
export const defaultExperimentMethods: readonly ExperimentMethod[] = experimentMethods.filter((m) =>
  !isOptIn(m)
);

/**
 * The rows of the robustness grid: ERM, CARROT's default, the original RRO and its split-validation form, the two
 * baselines and the oracle.
 */
export const robustnessMethods: readonly ExperimentMethod[] = [
  "erm",
  "carrot",
  "rro",
  "rro-split",
  "small-loss",
  "l2rw",
  "oracle",
];

/** The splits of one seed; the runner disposes their features. */
export interface ExperimentData {
  /**
   * Training split (α lives here); with ground truth where the data has it (the oracle row needs it): 1 marks a
   * mislabelled point, or one carrying a shortcut (`makeFineGrainedFeatures`' train split has both).
   */
  train: LabeledFeatures & { mislabeled?: Uint8Array; shortcut?: Uint8Array };
  /** Validation split (L_val, λ tuning). */
  val: LabeledFeatures;
  /** Test split (reported metrics). */
  test: LabeledFeatures;
}

/** Options of `runExperiment`. */
export interface ExperimentOptions {
  /** The splits for a seed (e.g. `makeFineGrainedFeatures({ seed, labelNoise })`). */
  data: (seed: number) => ExperimentData | Promise<ExperimentData>;
  /** Methods (default all but the oracle, which needs ground truth). */
  methods?: readonly ExperimentMethod[];
  /** Seeds (default 0, 1, 2). */
  seeds?: readonly number[];
  /** Overrides of the RRO options shared by the rro rows (outer steps, step size, …). */
  reweight?: ReweightOptions;
  /** Overrides of CARROT's default options (the carrot row). */
  carrot?: CarrotOptions;
  /** λ grid of the ERM tuning (default lambda.ts's). */
  lambdaGrid?: readonly number[];
  /** λ values tried past the grid's end where its best λ lies (default lambda.ts's; 0: the grid alone). */
  lambdaExtend?: number;
  /** Called after each (seed, method) run; `details` holds the carrot row's selection. */
  onRun?: (
    seed: number,
    method: ExperimentMethod,
    metrics: Metrics,
    seconds: number,
    details?: CarrotSeedDetails,
  ) => void;
}

/** One method's test metrics over seeds. */
export interface ExperimentRow {
  /** The method of this row. */
  method: ExperimentMethod;
  /** Per-seed metrics, in seed order. */
  runs: Metrics[];
  /** Per-seed metrics after temperature scaling fitted on val. */
  calibratedRuns: Metrics[];
  /** Per-seed selection of the carrot rows (empty for the others). */
  details: CarrotSeedDetails[];
  /** Top-1 accuracy, mean ± std over seeds. */
  accuracy: { mean: number; std: number };
  /** Mean per-class accuracy, mean ± std. */
  perClassAccuracy: { mean: number; std: number };
  /** ECE (15 bins), mean ± std. */
  ece: { mean: number; std: number };
  /** NLL, mean ± std. */
  nll: { mean: number; std: number };
  /** ECE after temperature scaling, mean ± std. */
  eceCalibrated: { mean: number; std: number };
  /** NLL after temperature scaling, mean ± std. */
  nllCalibrated: { mean: number; std: number };
  /** Mean wall time per seed. */
  seconds: number;
}

/** What CARROT's selection did on one seed. */
export interface CarrotSeedDetails {
  /** The chosen candidate's label ({ gamma, step }; step 0 = ERM). */
  chosen: Record<string, number | string>;
  /** Whether the fallback to α = 1 was taken. */
  fallback: boolean;
  /** Paired calibrated validation-loss gain of the best candidate and its standard error. */
  gain: number;
  /** s/√m of the gain. */
  standardError: number;
  /** The selection's sentence. */
  reason: string;
}

const consistencyPaths: CarrotOptions = { paths: carrotPaths([0, 10]), consistency: { form: "own-class" } };

const rroOptions: Record<string, ReweightOptions> = {
  "rro": { estimator: "influence", rho: 0.5, gamma: 0 },
  "rro-consistency": { estimator: "influence", rho: 0.5, gamma: 10 },
  "rro-no-ess": { estimator: "influence", rho: 0, gamma: 0 },
  "rro-representer": { estimator: "representer", rho: 0.5, gamma: 0 },
  "rro-tracin": { estimator: "tracin", rho: 0.5, gamma: 0 },
  "rro-trak": { estimator: "trak", rho: 0.5, gamma: 0 },
};

/** What a selection chose, for the report. */
const seedDetails = (selection: Omit<SelectionResult, "fit">): CarrotSeedDetails => ({
  chosen: selection.rows[selection.chosen].label,
  fallback: selection.fallback,
  gain: selection.gain,
  standardError: selection.standardError,
  reason: selection.reason,
});

/** α for small-loss filtering: 0 for the 20% highest-loss points of each class under the ERM head (`trim.ts`). */
async function smallLossAlpha(erm: HeadFit, train: LabeledFeatures): Promise<Float32Array> {
  return lossTrimAlpha(await inSampleLosses(erm, train), train.labels, 0.2);
}

/** α of the oracle row: 0 on the points flagged mislabelled or shortcut, 1 elsewhere. */
export function oracleAlpha(train: ExperimentData["train"]): Float32Array {
  const { mislabeled, shortcut } = train;
  if (!mislabeled && !shortcut) {
    throw new Error(
      "runExperiment: the oracle row needs the training split's ground truth (train.mislabeled and/or " +
        'train.shortcut, as makeFineGrainedFeatures gives); drop "oracle" from methods for data without it',
    );
  }
  const n = train.labels.length;
  for (const flags of [mislabeled, shortcut]) {
    if (flags && flags.length !== n) {
      throw new RangeError(`runExperiment: ${flags.length} ground-truth flags for ${n} training points`);
    }
  }
  return Float32Array.from({ length: n }, (_, i) => (mislabeled?.[i] || shortcut?.[i]) ? 0 : 1);
}

/** α for one-step learning-to-reweight (see the module JSDoc). */
async function l2rwAlpha(erm: HeadFit, train: LabeledFeatures, val: LabeledFeatures): Promise<Float32Array> {
  const { gradient, loss } = meanLossGradient(erm, val);
  const dots = tf.tidy(() => {
    const residual = tf.sub(
      headProbabilities(erm, train.features),
      tf.oneHot(tf.tensor1d(train.labels, "int32"), erm.numClasses),
    );
    return tf.sum(tf.mul(residual, logits(gradient, train.features)), 1); // ∇ℓ_i · ∇L_val
  });
  const values = await readValues(dots);
  tf.dispose([dots, gradient, loss]);
  const alpha = Float32Array.from(values, (v) => Math.max(0, v));
  for (let c = 0; c < erm.numClasses; c++) {
    const members = [...train.labels.keys()].filter((i) => train.labels[i] === c);
    const mass = members.reduce((s, i) => s + alpha[i], 0);
    for (const i of members) alpha[i] = mass > 0 ? alpha[i] * members.length / mass : 1;
  }
  return alpha;
}

/** Runs every method on every seed and returns one row per method (see the module JSDoc). */
export async function runExperiment(options: ExperimentOptions): Promise<ExperimentRow[]> {
  const methods = options.methods ?? defaultExperimentMethods;
  const seeds = options.seeds ?? [0, 1, 2];
  const runs = new Map(
    methods.map((m) => [m, {
      metrics: [] as Metrics[],
      calibrated: [] as Metrics[],
      details: [] as CarrotSeedDetails[],
      seconds: 0,
    }]),
  );
  for (const seed of seeds) {
    const data = await options.data(seed);
    const tuned = await tuneLambda(data.train, data.val, {
      grid: options.lambdaGrid,
      extend: options.lambdaExtend,
    });
    const erm = tuned.fit;
    try {
      for (const method of methods) {
        const start = performance.now();
        let fit: HeadFit, details: CarrotSeedDetails | undefined, temperature: number | undefined;
        if (method === "erm") fit = erm;
        else if (method.startsWith("carrot")) {
          const result = await carrotReweight(data.train, data.val, {
            ...(method === "carrot-consistency" ? consistencyPaths : {}),
            ...(method === "carrot-gamma0" ? { paths: carrotPaths([0]) } : {}),
            ...(method === "carrot-knn" ? { neighbourK: knnTrimK } : {}),
            ...(method === "carrot-in-sample-trims" ? { inSampleTrim: true } : {}),
            ...(method === "carrot-self-influence-trims" ? { selfInfluenceTrim: true } : {}),
            ...(method === "carrot-bootstrap" ? { bootstrapAverage: bootstrapAverageReplicates } : {}),
            ...(method === "carrot-refined-trims" ? { refinedTrim: true } : {}),
            ...(method === "carrot-graded-incumbent" ? { gradedIncumbent: true } : {}),
            ...(method === "carrot-average-veto" ? { averageVeto: true } : {}),
            ...(method === "carrot-trim40" ? { trimFractions: trim40Fractions } : {}),
            ...(method === "carrot-trim-path" ? { trimPath: true } : {}),
            ...(method === "carrot-selection" ? { validationPath: false } : {}),
            ...(method === "carrot-rro-split" ? { validationPath: true, validationPathMinPerClass: 0 } : {}),
            ...options.carrot,
            lambda: tuned.lambda,
            numClasses: erm.numClasses,
            seed,
          });
          fit = result.fit;
          details = { ...seedDetails(result.selection), ...carrotOutcome(result) };
          // fitted on B, the half that never drove its gradient
          if (result.validationPath?.used) temperature = result.temperature;
        } else if (method === "rro-split") {
          const result = await splitValidationReweight(data.train, data.val, {
            ...rroOptions.rro,
            ...options.reweight,
            lambda: tuned.lambda,
            numClasses: erm.numClasses,
            seed,
            splitSeed: seed,
          });
          ({ fit, temperature } = result.selection);
          details = seedDetails(result.selection);
        } else if (method === "small-loss" || method === "l2rw" || method === "oracle") {
          const alpha = method === "small-loss"
            ? await smallLossAlpha(erm, data.train)
            : method === "l2rw"
            ? await l2rwAlpha(erm, data.train, data.val)
            : oracleAlpha(data.train);
          fit = await fitHead(data.train, {
            lambda: tuned.lambda,
            alpha,
            numClasses: erm.numClasses,
            init: erm.weights,
          });
        } else {
          fit = (await reweight(data.train, data.val, {
            ...rroOptions[method],
            ...options.reweight,
            lambda: tuned.lambda,
            numClasses: erm.numClasses,
            seed,
          })).fit;
        }
        const metrics = await evaluateHead(fit, data.test);
        temperature ??= (await fitTemperature(fit, data.val)).temperature; // rro-split: its own, fitted on B
        const calibrated = await evaluateHeadWithTemperature(fit, data.test, temperature);
        const seconds = (performance.now() - start) / 1000;
        if (fit !== erm) disposeHead(fit);
        const entry = runs.get(method)!;
        entry.metrics.push(metrics);
        entry.calibrated.push(calibrated);
        if (details) entry.details.push(details);
        entry.seconds += seconds;
        options.onRun?.(seed, method, metrics, seconds, details);
      }
    } finally {
      disposeHead(erm);
      tf.dispose([data.train.features, data.val.features, data.test.features]);
    }
  }
  return methods.map((method) => {
    const { metrics, calibrated, details, seconds } = runs.get(method)!;
    return experimentRow(method, metrics, calibrated, details, seconds / seeds.length);
  });
}

/**
 * One row from its per-seed runs (in seed order): every metric's mean ± sample std over seeds (std 0 for one seed);
 * `seconds` is the mean wall time per seed. Rows of the same method over disjoint seeds merge by concatenating
 * their runs and details.
 */
export function experimentRow(
  method: ExperimentMethod,
  runs: Metrics[],
  calibratedRuns: Metrics[],
  details: CarrotSeedDetails[],
  seconds: number,
): ExperimentRow {
  const summary = (list: Metrics[], key: keyof Metrics) =>
    list.length > 1 ? meanStd(list.map((m) => m[key])) : { mean: list[0][key], std: 0 };
  return {
    method,
    runs,
    calibratedRuns,
    details,
    accuracy: summary(runs, "accuracy"),
    perClassAccuracy: summary(runs, "perClassAccuracy"),
    ece: summary(runs, "ece"),
    nll: summary(runs, "nll"),
    eceCalibrated: summary(calibratedRuns, "ece"),
    nllCalibrated: summary(calibratedRuns, "nll"),
    seconds,
  };
}

/**
 * The rows as a markdown table: top-1 and per-class accuracy in %, ECE in % and NLL before → after temperature
 * scaling; mean ± std over seeds.
 */
export function experimentTable(rows: readonly ExperimentRow[]): string {
  const pct = (s: { mean: number; std: number }) =>
    `${(100 * s.mean).toFixed(1)} ± ${(100 * s.std).toFixed(1)}`;
  const lines = [
    "| method | top-1 (%) | per-class acc. (%) | ECE (%) | ECE after T (%) | NLL | NLL after T | s / seed |",
    "|---|---|---|---|---|---|---|---|",
    ...rows.map((r) =>
      `| ${r.method} | ${pct(r.accuracy)} | ${pct(r.perClassAccuracy)} | ${pct(r.ece)} | ${
        pct(r.eceCalibrated)
      } | ` +
      `${r.nll.mean.toFixed(3)} ± ${r.nll.std.toFixed(3)} | ${r.nllCalibrated.mean.toFixed(3)} ± ${
        r.nllCalibrated.std.toFixed(3)
      } | ${r.seconds.toFixed(1)} |`
    ),
  ];
  return lines.join("\n");
}

/**
 * The rows of `stored` extended by those of `added`, run on further seeds with the same methods: runs and details
 * concatenated, every mean ± std recomputed over all seeds, `seconds` the mean per seed.
 */
export function appendSeedRows(
  stored: readonly ExperimentRow[],
  added: readonly ExperimentRow[],
): ExperimentRow[] {
  return stored.map((row) => {
    const more = added.find((r) => r.method === row.method)!;
    const count = row.runs.length, extra = more.runs.length;
    return experimentRow(
      row.method,
      [...row.runs, ...more.runs],
      [...row.calibratedRuns, ...more.calibratedRuns],
      [...row.details, ...more.details],
      (row.seconds * count + more.seconds * extra) / (count + extra),
    );
  });
}
