/**
 * Choosing λ for the ERM baseline: fit the head for each λ of a grid (warm-starting along the grid, largest λ
 * first, where the problem is best conditioned) and keep the λ with the lowest validation NLL. CARROT then reuses
 * that λ, so ERM and reweighting differ only in α.
 *
 * The grid's end is not a property of the data: the objective Σ_i α_i ℓ_i(W h_i) + (λ/2)‖W‖²_F has, for features
 * scaled by c, the same minimiser up to W → W/c at λ → c²λ (exactly so but for the bias column), so L2-normalised
 * embeddings (‖h‖ = 1) want a λ about ‖h‖² ≈ 10³ times smaller than the same features at ‖h‖ ≈ 30. So where the
 * best λ of a grid of at least 3 values is its smallest (largest), the search goes on past that end by the grid's
 * own ratio there, λ_{j+1} = λ_j · (λ_1/λ_2) (resp. λ_j · (λ_n/λ_{n−1})), warm-started from the previous fit, while
 * each value lowers the validation NLL by more than the fraction `defaultLambdaExtensionMinDecrease` (0.1%) of the
 * best so far, for at most `extend` values (default `defaultLambdaExtension`); a λ inside the grid is never
 * affected. The margin keeps the search from walking towards an unregularised head where the NLL is flat (a
 * non-separable problem whose NLL tends to the MLE's as λ → 0 falls by 10⁻⁶ per step there). `lambdaGridEdge` warns
 * only when the extension ran out.
 */
import type { LabeledFeatures } from "./labeled_features.ts";
import { disposeHead, fitHead, type HeadFit } from "./head.ts";
import { evaluateHead, type Metrics } from "./metrics.ts";

/** The default grid: 10^{-1}, 10^{-0.5}, …, 10^{3}. */
export const defaultLambdaGrid: readonly number[] = Array.from({ length: 9 }, (_, i) => 10 ** (-1 + i / 2));

/** Extra λ values tried past the end of the grid where its best λ lies (10: five decades of the default grid). */
export const defaultLambdaExtension = 10;

/** A λ past the grid's end is kept only if it lowers the best validation NLL by more than this fraction. */
export const defaultLambdaExtensionMinDecrease = 1e-3;

/** Options of `tuneLambda`. */
export interface TuneLambdaOptions {
  /** λ candidates (default `defaultLambdaGrid`). */
  grid?: readonly number[];
  /** α of every fit (default all ones). */
  alpha?: Float32Array;
  /** K (default: inferred from the labels). */
  numClasses?: number;
  /** Solver tolerance (default fitHead's). */
  tol?: number;
  /**
   * At most this many λ values past the grid's end when the best λ is its smallest or largest (default
   * `defaultLambdaExtension`; 0: the grid alone). Grids of fewer than 3 values are never extended.
   */
  extend?: number;
  /** Called after each fit with (λ values done, values planned so far). */
  onProgress?: (done: number, total: number) => void;
}

/** The selected λ, its fit (owned by the caller) and the validation metrics of every candidate. */
export interface TuneLambdaResult {
  /**
   * The λ with the lowest validation NLL among the grid and the extension's kept values (a value past the grid's end
   * that lowered it by no more than the margin is in `rows` but not kept).
   */
  lambda: number;
  /** The head at that λ (owned by the caller). */
  fit: HeadFit;
  /** Validation metrics per λ, ascending λ. */
  rows: ({ lambda: number } & Metrics)[];
}

/** Grid search of λ by validation NLL, extended past the grid's end where the best λ lies (see the module JSDoc). */
export async function tuneLambda(
  train: LabeledFeatures,
  val: LabeledFeatures,
  options: TuneLambdaOptions = {},
): Promise<TuneLambdaResult> {
  const grid = [...(options.grid ?? defaultLambdaGrid)].sort((a, b) => b - a);
  if (grid.length === 0) throw new RangeError("tuneLambda: the λ grid is empty");
  const extend = options.extend ?? defaultLambdaExtension;
  if (!(Number.isInteger(extend) && extend >= 0)) {
    throw new RangeError(`tuneLambda: extend must be a non-negative integer, got ${extend}`);
  }
  const rows: TuneLambdaResult["rows"] = [];
  let best: HeadFit | undefined, previous: HeadFit | undefined, bestNll = Infinity, planned = grid.length;
  /** Fits at λ from `init`, keeps the fit if its NLL is below (1 − margin) × the best so far; true when it is. */
  const visit = async (lambda: number, init: HeadFit | undefined, margin = 0): Promise<boolean> => {
    const fit = await fitHead(train, {
      lambda,
      alpha: options.alpha,
      numClasses: options.numClasses,
      tol: options.tol,
      init: init?.weights,
    });
    if (previous && previous !== best) disposeHead(previous); // only needed as the warm start
    const metrics = await evaluateHead(fit, val);
    rows.push({ lambda, ...metrics });
    const improved = metrics.nll < bestNll * (1 - margin);
    if (improved) {
      if (best) disposeHead(best);
      [best, bestNll] = [fit, metrics.nll];
    }
    previous = fit;
    options.onProgress?.(rows.length, planned);
    return improved;
  };
  for (const lambda of grid) await visit(lambda, previous);
  const n = grid.length, end = best!.lambda === grid[n - 1] ? n - 1 : best!.lambda === grid[0] ? 0 : -1;
  if (n >= 3 && end >= 0) {
    // descending grid: past the smallest λ by λ_n/λ_{n−1} < 1, past the largest by λ_1/λ_2 > 1
    const ratio = end === 0 ? grid[0] / grid[1] : grid[n - 1] / grid[n - 2];
    for (let j = 1, lambda = grid[end]; j <= extend; j++) {
      planned = n + j;
      lambda *= ratio;
      const init = end === 0 && j === 1 ? best : previous;
      if (!(await visit(lambda, init, defaultLambdaExtensionMinDecrease))) break;
    }
  }
  if (previous !== best) disposeHead(previous!);
  rows.sort((a, b) => a.lambda - b.lambda);
  return { lambda: best!.lambda, fit: best!, rows };
}

/**
 * A warning when the tuned λ is the smallest or the largest of a grid of at least 3 values: the validation NLL was
 * still falling at the grid's end, so the best λ may lie beyond it (features on an unusual scale, say). Undefined
 * when λ is inside the grid.
 */
export function lambdaGridEdge(result: Pick<TuneLambdaResult, "lambda" | "rows">): string | undefined {
  const grid = result.rows.map((r) => r.lambda);
  const [smallest, largest] = [Math.min(...grid), Math.max(...grid)];
  if (grid.length < 3 || (result.lambda !== smallest && result.lambda !== largest)) return undefined;
  const [end, beyond] = result.lambda === smallest ? ["smallest", "smaller"] : ["largest", "larger"];
  const range = `${grid.length} values, ${smallest.toPrecision(3)} to ${largest.toPrecision(3)}`;
  return `λ = ${
    result.lambda.toPrecision(3)
  } is the ${end} value of the λ grid (${range}, its extension included): the validation NLL ` +
    `may fall further at ${beyond} λ; rerun with --lambdaGrid extended beyond it or a larger --lambdaExtend`;
}
