/**
 * Dataset debugging: rank training points as suspects (mislabeled or shortcut images) and score the rankings
 * against ground truth where it exists. Rankings, higher = more suspect:
 *   harmfulness     g_i = ∂L_val/∂α_i (Theorem B): up-weighting i raises the validation loss;
 *   self-influence  ∇ℓ_iᵀ H⁻¹ ∇ℓ_i (Koh & Liang 2017): how much i's own loss depends on i, large for points the
 *                   rest of the data does not explain (EK-FAC inverse by default, exact block CG on request);
 *   representer     |β_{i,y_i}| = (α_i/λ)(1 − p_{i,y_i}) (Yeh et al. 2018): large when the head leans on i against
 *                   the rest of its class. With uniform α it orders points exactly as the training loss does;
 *   loss            ℓ_i = −log p_{i,y_i}, the small-loss criterion of noisy-label learning (baseline);
 *   out-of-fold-loss ℓ_i(W*_{−k(i)}): the loss of i under the head fitted (same λ and α) on every fold of a
 *                   stratified F-fold split but i's own, CARROT's trimming detector (`outOfFoldLosses`). A head that
 *                   never saw i cannot have memorised a wrong label; on the SynthBirds image sets it finds the
 *                   mislabelled images far better than harmfulness does (`deno task bench detection`);
 *   random          seeded uniform scores (baseline).
 * Metrics: AUROC (Mann–Whitney, ties counted one half), precision@k, and the fraction of corrupted points found
 * when inspecting the top 5 / 10 / 20% of the ranking. `alphaByTruth` scores a reweighting the same way: the mean
 * α of clean, mislabeled and shortcut points, and low α as a detector.
 */
import * as tf from "@tensorflow/tfjs";
import type { LabeledFeatures } from "./labeled_features.ts";
import { disposeHead, fitHead, type HeadFit, headProbabilities } from "./head.ts";
import { selfInfluence, validationAlphaGradient } from "./influence.ts";
import { outOfFoldLosses } from "./crossfit.ts";
import { evaluateHead, type Metrics } from "./metrics.ts";
import { Random } from "../random.ts";
import { rank } from "../stats.ts";
import { readValues } from "./_reads.ts";

/** The suspect rankings. */
export type SuspectRanking =
  | "harmfulness"
  | "self-influence"
  | "representer"
  | "loss"
  | "out-of-fold-loss"
  | "random";

/** Every suspect ranking, in the order `rankSuspects` computes them by default. */
export const suspectRankings: readonly SuspectRanking[] = [
  "harmfulness",
  "self-influence",
  "representer",
  "loss",
  "out-of-fold-loss",
  "random",
];

/** Options of `rankSuspects`. */
export interface SuspectOptions {
  /** Rankings to compute (default all). */
  rankings?: readonly SuspectRanking[];
  /** Inverse used by self-influence (default "ekfac"; "exact" runs block CG over all n points). */
  selfInfluence?: "ekfac" | "exact";
  /** Seed of the random ranking and of the out-of-fold ranking's fold assignment (default 0). */
  seed?: number;
  /** Folds F of the out-of-fold ranking (default 5). */
  folds?: number;
  /** Progress of the self-influence ranking, the slow one: (points done, n). */
  onProgress?: (done: number, total: number) => void;
}

/** Suspect scores `[n]` per ranking (higher = more suspect). */
export async function rankSuspects(
  fit: HeadFit,
  train: LabeledFeatures,
  val: LabeledFeatures,
  options: SuspectOptions = {},
): Promise<Partial<Record<SuspectRanking, Float32Array>>> {
  const n = train.labels.length;
  const out: Partial<Record<SuspectRanking, Float32Array>> = {};
  const own = tf.tidy(() => {
    const p = headProbabilities(fit, train.features);
    return tf.sum(tf.mul(p, tf.oneHot(tf.tensor1d(train.labels, "int32"), fit.numClasses)), 1);
  });
  const pOwn = (await readValues(own)) as Float32Array;
  own.dispose();
  for (const ranking of options.rankings ?? suspectRankings) {
    switch (ranking) {
      case "harmfulness":
        out[ranking] = (await validationAlphaGradient(fit, train, val)).gradient;
        break;
      case "self-influence":
        out[ranking] = await selfInfluence(fit, train, train, {
          method: options.selfInfluence ?? "ekfac",
          onProgress: options.onProgress,
        });
        break;
      case "representer":
        out[ranking] = pOwn.map((p, i) => fit.alpha[i] * (1 - p) / fit.lambda);
        break;
      case "loss":
        out[ranking] = pOwn.map((p) => -Math.log(Math.max(p, 1e-30)));
        break;
      case "out-of-fold-loss":
        out[ranking] = await outOfFoldLosses(train, [options.seed ?? 0], {
          lambda: fit.lambda,
          numClasses: fit.numClasses,
          alpha: fit.alpha,
          folds: options.folds,
          init: fit.weights,
        });
        break;
      case "random": {
        const rng = new Random(options.seed ?? 0);
        out[ranking] = Float32Array.from({ length: n }, () => rng.uniform());
        break;
      }
      default:
        throw new RangeError(
          `rankSuspects: unknown ranking "${ranking}"; use one of ${suspectRankings.join(", ")}`,
        );
    }
  }
  return out;
}

/** How well one ranking finds the flagged points. */
export interface DetectionMetrics {
  /** P(score of a flagged point > score of a clean one), ties ½. */
  auroc: number;
  /** Precision among the top-k, for k = the number of flagged points. */
  precisionAtFlagged: number;
  /** Fraction of flagged points among the top 5%, 10%, 20% of the ranking, as a share of all flagged points. */
  foundAt: { 5: number; 10: number; 20: number };
}

/** AUROC, precision@k and recall at 5/10/20% inspection of `scores` (higher = suspect) against `flags` (1 = flagged). */
export function detectionMetrics(scores: ArrayLike<number>, flags: ArrayLike<number>): DetectionMetrics {
  const n = scores.length;
  const positives = Array.from(flags).reduce((s, f) => s + (f ? 1 : 0), 0);
  if (positives === 0 || positives === n) {
    throw new RangeError("detectionMetrics: flags must contain both classes");
  }
  const r = rank(scores);
  let rankSum = 0;
  for (let i = 0; i < n; i++) if (flags[i]) rankSum += r[i];
  const auroc = (rankSum - positives * (positives + 1) / 2) / (positives * (n - positives));
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b] - scores[a]);
  const hitsInTop = (count: number) => order.slice(0, count).reduce((s, i) => s + (flags[i] ? 1 : 0), 0);
  return {
    auroc,
    precisionAtFlagged: hitsInTop(positives) / positives,
    foundAt: {
      5: hitsInTop(Math.round(0.05 * n)) / positives,
      10: hitsInTop(Math.round(0.1 * n)) / positives,
      20: hitsInTop(Math.round(0.2 * n)) / positives,
    },
  };
}

/** Mean α of one group of training points, and its size. */
export interface AlphaGroup {
  /** mean_{i∈group} α_i (NaN for an empty group). */
  mean: number;
  /** Number of points in the group. */
  count: number;
}

/** How a reweighting treated the points ground truth flags: groups, their ratio, and α as a detector. */
export interface AlphaByTruth {
  /** Neither mislabeled nor shortcut. */
  clean: AlphaGroup;
  /** Mislabeled (a shortcut image that is also mislabeled counts here). */
  mislabeled: AlphaGroup;
  /** Shortcut, correctly labelled. */
  shortcut: AlphaGroup;
  /** mean α (mislabeled) / mean α (clean): below 1 when the reweighting down-weighted them. */
  mislabeledRatio: number;
  /** mean α (shortcut) / mean α (clean). */
  shortcutRatio: number;
  /** Detection by low weight (score −α_i) of the mislabeled points, when both kinds exist. */
  mislabeledDetection?: DetectionMetrics;
  /** The same for the shortcut points. */
  shortcutDetection?: DetectionMetrics;
}

/** The ground-truth group of a training point: mislabeled wins over shortcut; neither is clean. */
export function truthGroup(t: { noisy: boolean; shortcut: boolean }): "clean" | "mislabeled" | "shortcut" {
  return t.noisy ? "mislabeled" : t.shortcut ? "shortcut" : "clean";
}

/**
 * Groups a weighting α `[n]` by ground truth (`noisy`, `shortcut` per point): mean α per group, the ratios
 * ᾱ_mislabeled / ᾱ_clean and ᾱ_shortcut / ᾱ_clean, and α as a detector (AUROC etc. of the score −α_i).
 */
export function alphaByTruth(
  alpha: ArrayLike<number>,
  truth: readonly { noisy: boolean; shortcut: boolean }[],
): AlphaByTruth {
  if (alpha.length !== truth.length) {
    throw new RangeError(`alphaByTruth: ${alpha.length} weights for ${truth.length} ground-truth entries`);
  }
  const group = (name: ReturnType<typeof truthGroup>): AlphaGroup => {
    let sum = 0, count = 0;
    truth.forEach((t, i) => truthGroup(t) === name && (sum += alpha[i], count++));
    return { mean: count ? sum / count : NaN, count };
  };
  const clean = group("clean"), mislabeled = group("mislabeled"), shortcut = group("shortcut");
  const scores = Array.from(alpha, (a) => -a);
  const detect = (name: ReturnType<typeof truthGroup>, count: number) =>
    count > 0 && count < truth.length
      ? detectionMetrics(scores, truth.map((t) => Number(truthGroup(t) === name)))
      : undefined;
  return {
    clean,
    mislabeled,
    shortcut,
    mislabeledRatio: mislabeled.mean / clean.mean,
    shortcutRatio: shortcut.mean / clean.mean,
    mislabeledDetection: detect("mislabeled", mislabeled.count),
    shortcutDetection: detect("shortcut", shortcut.count),
  };
}

/** The `fix` mode: remove the top-k suspects of a ranking (α_i = 0), refit, and compare metrics on `evaluation`. */
export async function fixSuspects(
  fit: HeadFit,
  train: LabeledFeatures,
  evaluation: LabeledFeatures,
  scores: ArrayLike<number>,
  count: number,
): Promise<{ removed: Int32Array; before: Metrics; after: Metrics }> {
  const order = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[b] - scores[a]);
  const removed = Int32Array.from(order.slice(0, count)).sort();
  const alpha = fit.alpha.slice();
  for (const i of removed) alpha[i] = 0;
  const refit = await fitHead(train, { lambda: fit.lambda, alpha, numClasses: fit.numClasses, init: fit });
  const result = {
    removed,
    before: await evaluateHead(fit, evaluation),
    after: await evaluateHead(refit, evaluation),
  };
  disposeHead(refit);
  return result;
}
