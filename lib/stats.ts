/**
 * Summary statistics for agreement tables and reported results: rank correlations (Spearman ρ, Kendall τ-b),
 * Pearson r, mean ± sample std and percentile-bootstrap intervals. Everything runs in float64 on plain
 * arrays.
 *
 * Every function takes `ArrayLike<number>` and throws a `RangeError` when paired inputs differ in length,
 * when there are fewer than two values, or when a value is NaN (ranks and moments of NaN are undefined).
 */
import { Random } from "./random.ts";

/** `{ mean, std, n }` of a sample; `std` is the sample standard deviation (divisor n − 1). */
export interface MeanStd {
  /** x̄ = Σ x_i / n. */
  mean: number;
  /** s = sqrt(Σ (x_i − x̄)² / (n − 1)). */
  std: number;
  /** Number of values. */
  n: number;
}

/** Options of `bootstrapInterval`. */
export interface BootstrapOptions {
  /** Number of bootstrap resamples B (default 2000). */
  resamples?: number;
  /** Two-sided coverage of the interval, in (0, 1) (default 0.95). */
  level?: number;
  /** Seed of the resampling stream (default 0); equal seeds give equal intervals. */
  seed?: number;
}

/** A bootstrap interval `[low, high]` around `estimate`, the statistic of the full sample. */
export interface BootstrapInterval {
  /** The (1 − level)/2 quantile of the bootstrap statistics. */
  low: number;
  /** The (1 + level)/2 quantile of the bootstrap statistics. */
  high: number;
  /** The statistic of the full sample. */
  estimate: number;
}

/** Options of `formatMeanStd`. */
export interface FormatMeanStdOptions {
  /** Digits after the decimal point (default 1). */
  digits?: number;
  /** Factor applied to mean and std before printing, e.g. 100 for fractions shown as percent (default 1). */
  scale?: number;
}

function checkSample(values: ArrayLike<number>, what: string): void {
  if (values.length < 2) {
    throw new RangeError(`${what}: needs at least 2 values, got ${values.length}`);
  }
  for (let i = 0; i < values.length; i++) {
    if (Number.isNaN(values[i])) {
      throw new RangeError(`${what}: value at index ${i} is NaN; drop or impute it`);
    }
  }
}

function checkPair(x: ArrayLike<number>, y: ArrayLike<number>, what: string): void {
  if (x.length !== y.length) {
    throw new RangeError(`${what}: x has ${x.length} values and y has ${y.length}; pass paired samples`);
  }
  checkSample(x, `${what} (x)`);
  checkSample(y, `${what} (y)`);
}

/** Ascending order that also sorts ±Infinity (a plain difference gives NaN for Infinity − Infinity). */
function compare(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Σ over runs of t(t − 1)/2, the number of tied pairs, in a sorted sequence of length n where
 * `tiedWithPrevious(i)` says whether entry i equals entry i − 1.
 */
function tiedPairs(n: number, tiedWithPrevious: (i: number) => boolean): number {
  let pairs = 0, run = 1;
  for (let i = 1; i <= n; i++) {
    if (i < n && tiedWithPrevious(i)) {
      run++;
    } else {
      pairs += run * (run - 1) / 2;
      run = 1;
    }
  }
  return pairs;
}

/**
 * Average ranks (1-based): the i-th entry is 1 + #{j : v_j < v_i} + (#{j ≠ i : v_j = v_i})/2, so a tie group
 * shares the mean of the ranks it spans. O(n log n). Throws `RangeError` on NaN or fewer than 2 values.
 */
export function rank(values: ArrayLike<number>): Float64Array {
  checkSample(values, "rank");
  const n = values.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => compare(values[a], values[b]));
  const ranks = new Float64Array(n);
  for (let start = 0; start < n;) {
    let end = start + 1;
    while (end < n && values[order[end]] === values[order[start]]) end++;
    const average = (start + 1 + end) / 2; // mean of the 1-based ranks start+1..end
    for (let k = start; k < end; k++) ranks[order[k]] = average;
    start = end;
  }
  return ranks;
}

/**
 * Pearson correlation r = Σ(x_i − x̄)(y_i − ȳ) / sqrt(Σ(x_i − x̄)² · Σ(y_i − ȳ)²), two-pass in float64.
 * NaN when either sample is constant (r is undefined there) or holds ±Infinity.
 */
export function pearson(x: ArrayLike<number>, y: ArrayLike<number>): number {
  checkPair(x, y, "pearson");
  const n = x.length;
  let meanX = 0, meanY = 0;
  for (let i = 0; i < n; i++) {
    meanX += x[i] / n;
    meanY += y[i] / n;
  }
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i] - meanX, dy = y[i] - meanY;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : NaN;
}

/**
 * Spearman ρ = Pearson r of the average ranks (`rank`), which is the tie-corrected ρ.
 * NaN when either sample is constant.
 */
export function spearman(x: ArrayLike<number>, y: ArrayLike<number>): number {
  checkPair(x, y, "spearman");
  return pearson(rank(x), rank(y));
}

/**
 * Sorts `values` ascending in place by bottom-up merge sort and returns the number of swaps a bubble sort
 * would make: the inversions #{i < j : v_i > v_j} (equal values are not inversions).
 */
function sortCountingInversions(values: Float64Array<ArrayBuffer>): number {
  const n = values.length;
  let source = values, target = new Float64Array(n), inversions = 0;
  for (let width = 1; width < n; width *= 2) {
    for (let lo = 0; lo < n; lo += 2 * width) {
      const mid = Math.min(lo + width, n), hi = Math.min(lo + 2 * width, n);
      let i = lo, j = mid, k = lo;
      while (i < mid && j < hi) {
        if (source[j] < source[i]) {
          inversions += mid - i; // source[j] jumps every remaining left element
          target[k++] = source[j++];
        } else {
          target[k++] = source[i++];
        }
      }
      while (i < mid) target[k++] = source[i++];
      while (j < hi) target[k++] = source[j++];
    }
    [source, target] = [target, source];
  }
  if (source !== values) values.set(source);
  return inversions;
}

/**
 * Kendall τ-b by Knight's O(n log n) algorithm (Knight 1966, as in SciPy): sort the pairs by x then y; with
 *   n0 = n(n−1)/2, n1 = pairs tied in x, n2 = pairs tied in y, n3 = pairs tied in both,
 *   swaps = inversions of y in that order (counted by merge sort),
 *   τ_b = (n0 − n1 − n2 + n3 − 2·swaps) / sqrt((n0 − n1)(n0 − n2)),
 * the numerator being #concordant − #discordant. NaN when either sample is constant (n0 = n1 or n0 = n2).
 */
export function kendallTau(x: ArrayLike<number>, y: ArrayLike<number>): number {
  checkPair(x, y, "kendallTau");
  const n = x.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) =>
    compare(x[a], x[b]) || compare(y[a], y[b])
  );
  const xs = Float64Array.from(order, (i) => x[i]);
  const ys = Float64Array.from(order, (i) => y[i]);
  const n0 = n * (n - 1) / 2;
  const n1 = tiedPairs(n, (i) => xs[i] === xs[i - 1]);
  const n3 = tiedPairs(n, (i) => xs[i] === xs[i - 1] && ys[i] === ys[i - 1]);
  const swaps = sortCountingInversions(ys);
  const n2 = tiedPairs(n, (i) => ys[i] === ys[i - 1]);
  const denominator = Math.sqrt((n0 - n1) * (n0 - n2));
  return denominator > 0 ? (n0 - n1 - n2 + n3 - 2 * swaps) / denominator : NaN;
}

/** Mean x̄ = Σ x_i / n and sample standard deviation s = sqrt(Σ (x_i − x̄)² / (n − 1)); needs n ≥ 2. */
export function meanStd(values: ArrayLike<number>): MeanStd {
  checkSample(values, "meanStd");
  const n = values.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += values[i];
  mean /= n;
  let squares = 0;
  for (let i = 0; i < n; i++) squares += (values[i] - mean) ** 2;
  return { mean, std: Math.sqrt(squares / (n - 1)), n };
}

/** "mean ± std" with fixed digits: `formatMeanStd({ mean: 0.812, std: 0.004 }, { scale: 100 })` → "81.2 ± 0.4". */
export function formatMeanStd(
  summary: Pick<MeanStd, "mean" | "std">,
  { digits = 1, scale = 1 }: FormatMeanStdOptions = {},
): string {
  return `${(summary.mean * scale).toFixed(digits)} ± ${(summary.std * scale).toFixed(digits)}`;
}

/** The q-quantile of ascending `sorted`, interpolating linearly between order statistics (NumPy's default). */
function quantile(sorted: Float64Array, q: number): number {
  const position = q * (sorted.length - 1), below = Math.floor(position);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below] + (position - below) * (sorted[above] - sorted[below]);
}

/**
 * Percentile bootstrap interval of `statistic`: draw B resamples of the n values with replacement (seeded
 * `Random`), evaluate θ*_b = statistic(resample b), and return the (1 − level)/2 and (1 + level)/2 quantiles
 * of the θ*_b, with `estimate` = statistic(values). For a paired statistic (e.g. Spearman of two arrays),
 * bootstrap the indices 0..n−1 and look the pairs up inside `statistic`. Throws `RangeError` on bad options
 * or when the statistic returns NaN on a resample (make it total, e.g. by handling constant resamples).
 * `statistic` gets one buffer that is refilled for every resample: copy it to keep it.
 */
export function bootstrapInterval(
  values: ArrayLike<number>,
  statistic: (sample: Float64Array) => number,
  { resamples = 2000, level = 0.95, seed = 0 }: BootstrapOptions = {},
): BootstrapInterval {
  checkSample(values, "bootstrapInterval");
  if (!Number.isInteger(resamples) || resamples < 2) {
    throw new RangeError(`bootstrapInterval: resamples must be an integer ≥ 2, got ${resamples}`);
  }
  if (!(level > 0 && level < 1)) {
    throw new RangeError(`bootstrapInterval: level must lie in (0, 1), got ${level} (e.g. 0.95)`);
  }
  const n = values.length, rng = new Random(seed);
  const sample = new Float64Array(n), thetas = new Float64Array(resamples);
  for (let b = 0; b < resamples; b++) {
    for (let i = 0; i < n; i++) sample[i] = values[rng.int(n)];
    thetas[b] = statistic(sample);
    if (Number.isNaN(thetas[b])) {
      throw new RangeError(`bootstrapInterval: the statistic returned NaN on resample ${b}`);
    }
  }
  thetas.sort();
  return {
    low: quantile(thetas, (1 - level) / 2),
    high: quantile(thetas, (1 + level) / 2),
    estimate: statistic(Float64Array.from(values)),
  };
}
