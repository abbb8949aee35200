/**
 * The agreement table, CARROT's core scientific check: how well does each attribution method predict what
 * exact leave-one-out refits do?
 *
 * Every method is brought to one orientation, a score matrix M `[n, m]` with M_ij ≈ ∂ℓ_j/∂α_i (positive: up-weighting
 * training point i raises validation point j's loss). Its prediction of removing i is ΔL_val ≈ −α_i · mean_j M_ij,
 * compared with exact LOO refits on a seeded sample of training points by Spearman ρ and Kendall τ-b; the full
 * matrix also gives the LDS (TRAK's linear datamodeling score over random half subsets).
 *   influence       Theorem B, exact solve (one CG solve for the L_val scores; one per val point for M).
 *   influence-ekfac the same with the eigenvalue-corrected Kronecker inverse.
 *   representer     influence with H ≈ λI: M_ij = −(1/λ)((p_i − e_{y_i})·(p_j − e_{y_j}))(h_i·h_j) — the change of
 *                   ℓ_j when i's representer term β_i h_iᵀ (β_i = −(α_i/λ)(p_i − e_{y_i})) is scaled with α_i.
 *   tracin-cp       −TracIn-CP(i, j)/α_i over SGD checkpoints; tracin-last the final checkpoint only.
 *   trak            −τ(j, i): TRAK scores support the margin, i.e. lower the loss.
 *   knn             −s(i, j) of the kNN-cosine control.
 * The wall time of a row is the time to compute that method's L_val scores from the fitted head (for TracIn
 * including its SGD run, for TRAK its projection and kernel).
 */
import * as tf from "@tensorflow/tfjs";
import type { LabeledFeatures } from "./labeled_features.ts";
import { disposeHead, fitHead, type HeadFit, headProbabilities } from "./head.ts";
import { testInfluence, validationAlphaGradient } from "./influence.ts";
import {
  disposeCheckpoints,
  tracInMatrix,
  type TracInTrainingOptions,
  trainTracInCheckpoints,
} from "./tracin.ts";
import { type TrakOptions, trakScores } from "./trak.ts";
import { knnCosineScores } from "./knn.ts";
import { linearDatamodelingScore, looExact } from "./loo.ts";
import { kendallTau, spearman } from "../stats.ts";
import { Random } from "../random.ts";

/** The attribution methods of the table. */
export type AttributionMethod =
  | "representer"
  | "influence"
  | "influence-ekfac"
  | "tracin-cp"
  | "tracin-last"
  | "trak"
  | "knn";

/** All methods, in table order. */
export const attributionMethods: readonly AttributionMethod[] = [
  "representer",
  "influence",
  "influence-ekfac",
  "tracin-cp",
  "tracin-last",
  "trak",
  "knn",
];

/** One row of the table. */
export interface AgreementRow {
  /** The method of this row. */
  method: AttributionMethod;
  /** Spearman ρ between predicted and exact LOO changes of L_val over the sampled points. */
  spearman: number;
  /** Kendall τ-b of the same. */
  kendall: number;
  /** LDS (NaN when disabled). */
  lds: number;
  /** Seconds to compute the method's L_val scores. */
  seconds: number;
}

/** Options of `attributionAgreement`. */
export interface AgreementOptions {
  /** λ of the ERM head. */
  lambda: number;
  /** α of the ERM head (default all ones; every α_i must be > 0). */
  alpha?: Float32Array;
  /** K (default: inferred from the labels). */
  numClasses?: number;
  /** Methods to score (default all, in table order). */
  methods?: readonly AttributionMethod[];
  /** Training points with exact LOO refits (default 100). */
  looSample?: number;
  /** LDS subsets (default 30; 0 disables the LDS column). */
  ldsSubsets?: number;
  /** Seed of the LOO sample, LDS subsets, TracIn order and TRAK projections (default 0). */
  seed?: number;
  /** Overrides of the TracIn SGD schedule. */
  tracin?: Partial<TracInTrainingOptions>;
  /** TRAK options. */
  trak?: TrakOptions;
  /** Called with a stage name and (done, total). */
  onProgress?: (stage: string, done: number, total: number) => void;
}

/** The table and what its ground truth cost. */
export interface AgreementResult {
  /** One row per method, in the order asked for. */
  rows: AgreementRow[];
  /** How the ERM head was solved. */
  fit: { iterations: number; relativeGradNorm: number; converged: boolean };
  /** The training points with exact LOO refits. */
  looIndices: Int32Array;
  /** Throughput of those refits. */
  looRefitsPerSecond: number;
  /** LOO refits that stopped short of the tolerance. */
  looUnconverged: number;
}

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  const start = performance.now();
  const value = await work();
  return { value, seconds: (performance.now() - start) / 1000 };
}

const scale = (values: Float32Array, factor: (i: number) => number, m: number) =>
  values.map((v, q) => v * factor(Math.floor(q / m)));

/** M for the representer row: influence with H ≈ λI. */
async function representerMatrix(
  fit: HeadFit,
  train: LabeledFeatures,
  val: LabeledFeatures,
): Promise<Float32Array> {
  const matrix = tf.tidy(() => {
    const residual = (data: LabeledFeatures) =>
      tf.sub(
        headProbabilities(fit, data.features),
        tf.oneHot(tf.tensor1d(data.labels, "int32"), fit.numClasses),
      );
    const kernel = tf.add(tf.matMul(train.features, val.features.transpose()), 1);
    return tf.mul(tf.matMul(residual(train), residual(val).transpose()), tf.mul(kernel, -1 / fit.lambda));
  });
  const out = (await matrix.data()) as Float32Array;
  matrix.dispose();
  return out;
}

/** Exact-influence M, one column block per CG solve. */
async function influenceMatrix(
  fit: HeadFit,
  train: LabeledFeatures,
  val: LabeledFeatures,
  method: "exact" | "ekfac",
): Promise<Float32Array> {
  const n = train.features.shape[0], m = val.features.shape[0];
  const matrix = new Float32Array(n * m);
  await testInfluence(fit, train, val, {
    method,
    topK: 1,
    onBlock: (start, scores, b) => {
      for (let i = 0; i < n; i++) for (let j = 0; j < b; j++) matrix[i * m + start + j] = scores[i * b + j];
    },
  });
  return matrix;
}

/**
 * Computes the agreement table on (train, val): fits the ERM head (λ, α), runs exact LOO on a seeded sample,
 * scores every method and returns one row per method. See the module JSDoc for the orientation of each method.
 */
export async function attributionAgreement(
  train: LabeledFeatures,
  val: LabeledFeatures,
  options: AgreementOptions,
): Promise<AgreementResult> {
  const n = train.features.shape[0], m = val.features.shape[0];
  const methods = options.methods ?? attributionMethods;
  const alpha = options.alpha ?? new Float32Array(n).fill(1);
  const zero = alpha.findIndex((a) => !(a > 0));
  if (zero >= 0) {
    throw new RangeError(`attributionAgreement: α_${zero} = ${alpha[zero]}; every α_i must be > 0`);
  }
  const progress = options.onProgress ?? (() => {});
  const fit = await fitHead(train, { lambda: options.lambda, alpha, numClasses: options.numClasses });
  try {
    const rng = new Random(options.seed ?? 0);
    const looIndices = rng.permutation(n).slice(0, Math.min(options.looSample ?? 100, n)).sort();
    const loo = await looExact(fit, train, val, looIndices, {
      onProgress: (d, t) => progress("exact LOO", d, t),
    });
    const rows: AgreementRow[] = [];
    const ldsSubsets = options.ldsSubsets ?? 30;
    for (const method of methods) {
      // L_val scores: ΔL_val(remove i) ≈ −α_i mean_j M_ij, computed the cheapest way each method allows
      const viaSolve = method === "influence" || method === "influence-ekfac";
      let matrix: Float32Array | undefined;
      const { value: predicted, seconds } = await timed(async () => {
        if (viaSolve) {
          const g = await validationAlphaGradient(fit, train, val, {
            solver: method === "influence" ? "cg" : "ekfac",
          });
          return Float64Array.from(g.gradient, (gi, i) => -alpha[i] * gi);
        }
        const scores = matrix = await scoreMatrix(method, fit, train, val, options);
        return Float64Array.from({ length: n }, (_, i) => {
          let s = 0;
          for (let j = 0; j < m; j++) s += scores[i * m + j];
          return -alpha[i] * s / m;
        });
      });
      const picked = Array.from(looIndices, (i) => predicted[i]);
      let lds = NaN;
      if (ldsSubsets > 0) {
        matrix ??= await scoreMatrix(method, fit, train, val, options);
        lds = (await linearDatamodelingScore(matrix, train, val, {
          lambda: options.lambda,
          numClasses: fit.numClasses,
          subsets: ldsSubsets,
          seed: options.seed,
          onProgress: (d, t) => progress(`LDS ${method}`, d, t),
        })).lds;
      }
      rows.push({
        method,
        spearman: spearman(picked, loo.valLossChange),
        kendall: kendallTau(picked, loo.valLossChange),
        lds,
        seconds,
      });
      progress("methods", rows.length, methods.length);
    }
    return {
      rows,
      fit: { iterations: fit.iterations, relativeGradNorm: fit.relativeGradNorm, converged: fit.converged },
      looIndices,
      looRefitsPerSecond: loo.refitsPerSecond,
      looUnconverged: loo.unconverged,
    };
  } finally {
    disposeHead(fit);
  }
}

/** M `[n, m]` ≈ ∂ℓ_j/∂α_i of one method (see the module JSDoc). */
async function scoreMatrix(
  method: AttributionMethod,
  fit: HeadFit,
  train: LabeledFeatures,
  val: LabeledFeatures,
  options: AgreementOptions,
): Promise<Float32Array> {
  const m = val.features.shape[0];
  switch (method) {
    case "representer":
      return await representerMatrix(fit, train, val);
    case "influence":
    case "influence-ekfac":
      return await influenceMatrix(fit, train, val, method === "influence" ? "exact" : "ekfac");
    case "tracin-cp":
    case "tracin-last": {
      const checkpoints = await trainTracInCheckpoints(train, {
        lambda: fit.lambda,
        alpha: fit.alpha,
        numClasses: fit.numClasses,
        seed: options.seed,
        ...options.tracin,
      });
      const tracin = await tracInMatrix(checkpoints, train, val, { last: method === "tracin-last" });
      disposeCheckpoints(checkpoints);
      return scale(tracin, (i) => -1 / fit.alpha[i], m);
    }
    case "trak":
      return scale(await trakScores(fit, train, val, { seed: options.seed, ...options.trak }), () => -1, m);
    case "knn":
      return scale(await knnCosineScores(train, val), () => -1, m);
  }
}
