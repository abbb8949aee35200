/**
 * Choosing λ for the ERM baseline: fit the head for each λ of a grid (warm-starting along the grid, largest λ
 * first, where the problem is best conditioned) and keep the λ with the lowest validation NLL. CARROT then reuses
 * that λ, so ERM and reweighting differ only in α.
 */
import type { LabeledFeatures } from "./labeled_features.ts";
import { disposeHead, fitHead, type HeadFit } from "./head.ts";
import { evaluateHead, type Metrics } from "./metrics.ts";

/** The default grid: 10^{-1}, 10^{-0.5}, …, 10^{3}. */
export const defaultLambdaGrid: readonly number[] = Array.from({ length: 9 }, (_, i) => 10 ** (-1 + i / 2));

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
  /** Called after each fit with (λ values done, grid size). */
  onProgress?: (done: number, total: number) => void;
}

/** The selected λ, its fit (owned by the caller) and the validation metrics of every candidate. */
export interface TuneLambdaResult {
  /** The λ with the lowest validation NLL. */
  lambda: number;
  /** The head at that λ (owned by the caller). */
  fit: HeadFit;
  /** Validation metrics per λ, ascending λ. */
  rows: ({ lambda: number } & Metrics)[];
}

/** Grid search of λ by validation NLL (see the module JSDoc). */
export async function tuneLambda(
  train: LabeledFeatures,
  val: LabeledFeatures,
  options: TuneLambdaOptions = {},
): Promise<TuneLambdaResult> {
  const grid = [...(options.grid ?? defaultLambdaGrid)].sort((a, b) => b - a);
  if (grid.length === 0) throw new RangeError("tuneLambda: the λ grid is empty");
  const rows: TuneLambdaResult["rows"] = [];
  let best: HeadFit | undefined, previous: HeadFit | undefined, bestNll = Infinity;
  for (const lambda of grid) {
    const fit = await fitHead(train, {
      lambda,
      alpha: options.alpha,
      numClasses: options.numClasses,
      tol: options.tol,
      init: previous?.weights,
    });
    if (previous && previous !== best) disposeHead(previous); // only needed as the warm start
    const metrics = await evaluateHead(fit, val);
    rows.push({ lambda, ...metrics });
    if (metrics.nll < bestNll) {
      if (best) disposeHead(best);
      [best, bestNll] = [fit, metrics.nll];
    }
    previous = fit;
    options.onProgress?.(rows.length, grid.length);
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
  } is the ${end} value of the λ grid (${range}): the validation NLL ` +
    `may fall further at ${beyond} λ; rerun with --lambdaGrid extended beyond it`;
}
