/**
 * The agreement table, CARROT's core scientific check: how well does each attribution method predict what
 * exact leave-one-out refits do?
 *
 * Every method (`attribution.ts`) is brought to one orientation, M = −S `[n, m]` with M_ij ≈ ∂ℓ_j/∂α_i (positive:
 * up-weighting training point i raises validation point j's loss). Its prediction of removing i is ΔL_val ≈ −α_i · mean_j M_ij,
 * compared with exact LOO refits on a seeded sample of training points by Spearman ρ and Kendall τ-b; the full
 * matrix also gives the LDS (TRAK's linear datamodeling score over random half subsets).
 * The influence rows compute their L_val scores with one solve (`validationAlphaGradient`), the others as the
 * row means of M; the LDS always uses M.
 * The wall time of a row is the time to compute that method's L_val scores from the fitted head (for TracIn
 * including its SGD run, for TRAK its projection and kernel).
 */
import type { LabeledFeatures } from "./labeled_features.ts";
import { disposeHead, fitHead, type HeadFit } from "./head.ts";
import { validationAlphaGradient } from "./influence.ts";
import { type AttributionMethod, type AttributionOptions, attributionScores } from "./attribution.ts";
import { linearDatamodelingScore, looExact } from "./loo.ts";
import { kendallTau, spearman } from "../stats.ts";
import { Random } from "../random.ts";

/** All methods, in table order. */
export const agreementMethods: readonly AttributionMethod[] = [
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
export interface AgreementOptions extends AttributionOptions {
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

/** M = −S: the support matrix turned into loss-influence orientation, M_ij ≈ ∂ℓ_j/∂α_i. */
async function lossScores(
  method: AttributionMethod,
  fit: HeadFit,
  train: LabeledFeatures,
  val: LabeledFeatures,
  options: AttributionOptions,
): Promise<Float32Array> {
  return (await attributionScores(method, fit, train, val, options)).map((v) => -v);
}

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  const start = performance.now();
  const value = await work();
  return { value, seconds: (performance.now() - start) / 1000 };
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
  const methods = options.methods ?? agreementMethods;
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
        const scores = matrix = await lossScores(method, fit, train, val, options);
        return Float64Array.from({ length: n }, (_, i) => {
          let s = 0;
          for (let j = 0; j < m; j++) s += scores[i * m + j];
          return -alpha[i] * s / m;
        });
      });
      const picked = Array.from(looIndices, (i) => predicted[i]);
      let lds = NaN;
      if (ldsSubsets > 0) {
        matrix ??= await lossScores(method, fit, train, val, options);
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
