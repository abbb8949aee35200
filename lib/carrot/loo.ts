/**
 * Ground truth by refitting: exact leave-one-out, finite differences in α (the check of Theorem B) and the
 * linear datamodeling score (LDS) of TRAK (Park et al. 2023). Every refit warm-starts from the full fit (its
 * weights and L-BFGS curvature) and is solved to the same tolerance.
 */
import * as tf from "@tensorflow/tfjs";
import { inferNumClasses, type LabeledFeatures } from "./labeled_features.ts";
import { disposeHead, fitHead, type HeadFit, headLogits } from "./head.ts";
import { meanLossGradient } from "./influence.ts";
import { Random } from "../random.ts";
import { spearman } from "../stats.ts";
import { readPacked, readScalar, readValues } from "./_reads.ts";

/** Options shared by the refitting functions. */
export interface RefitOptions {
  /** Solver tolerance of every refit (default: 1e-6, fitHead's default). */
  tol?: number;
  /** Iteration cap of every refit. */
  maxIter?: number;
  /** Called after each refit with (done, total). */
  onProgress?: (done: number, total: number) => void;
}

async function refit(fit: HeadFit, train: LabeledFeatures, alpha: Float32Array, options: RefitOptions) {
  return await fitHead(train, {
    lambda: fit.lambda,
    alpha,
    numClasses: fit.numClasses,
    init: fit,
    tol: options.tol,
    maxIter: options.maxIter,
  });
}

async function meanLoss(fit: HeadFit, data: LabeledFeatures): Promise<number> {
  const { gradient, loss } = meanLossGradient(fit, data);
  const value = await readScalar(loss);
  tf.dispose([gradient, loss]);
  return value;
}

/** Exact leave-one-out: per index, the change of L_val and of the val logits after refitting with α_i = 0. */
export interface LooResult {
  /** The training points removed, in order. */
  indices: Int32Array;
  /** L_val(α with α_i = 0) − L_val(α), per index. */
  valLossChange: Float64Array;
  /** Change of every val logit per index, `[indices, m, K]` row-major. */
  logitChange: Float32Array;
  /** Refits per second (wall clock). */
  refitsPerSecond: number;
  /** Refits that did not reach the tolerance (reported, never hidden). */
  unconverged: number;
}

/**
 * For each index i: refit with α_i = 0 (warm start from `fit`, same tolerance) and return ΔL_val and the change of
 * each val logit. `val` may be any labelled split (e.g. test) whose logits should be tracked.
 */
export async function looExact(
  fit: HeadFit,
  train: LabeledFeatures,
  val: LabeledFeatures,
  indices: ArrayLike<number>,
  options: RefitOptions = {},
): Promise<LooResult> {
  const m = val.features.shape[0], k = fit.numClasses, count = indices.length;
  const base = await meanLoss(fit, val);
  const baseLogits = headLogits(fit, val.features);
  const valLossChange = new Float64Array(count), logitChange = new Float32Array(count * m * k);
  let unconverged = 0;
  const start = performance.now();
  for (let q = 0; q < count; q++) {
    const i = indices[q];
    if (!(Number.isInteger(i) && i >= 0 && i < fit.alpha.length)) {
      baseLogits.dispose();
      throw new RangeError(`looExact: index ${i} is outside 0..${fit.alpha.length - 1}`);
    }
    const alpha = fit.alpha.slice();
    alpha[i] = 0;
    const loo = await refit(fit, train, alpha, options);
    if (!loo.converged) unconverged++;
    const { gradient, loss } = meanLossGradient(loo, val);
    const change = tf.tidy(() => tf.sub(headLogits(loo, val.features), baseLogits));
    const [lossValue, changeValues] = await readPacked([loss, change]); // one read per refit
    valLossChange[q] = lossValue[0] - base;
    logitChange.set(changeValues, q * m * k);
    tf.dispose([gradient, loss, change]);
    disposeHead(loo);
    options.onProgress?.(q + 1, count);
  }
  baseLogits.dispose();
  const seconds = (performance.now() - start) / 1000;
  return {
    indices: Int32Array.from(indices),
    valLossChange,
    logitChange,
    refitsPerSecond: count / seconds,
    unconverged,
  };
}

/**
 * Central finite differences of L_val(W*(α)) in α_i with full refits:
 * (L_val(α + h e_i) − L_val(α − h e_i)) / 2h, the numerical check of Theorem B (default h = 0.05; the error is
 * O(h²) since L_val(W*(α)) is smooth, and h must stay ≤ α_i so that α − h e_i ≥ 0).
 */
export async function alphaFiniteDifference(
  fit: HeadFit,
  train: LabeledFeatures,
  val: LabeledFeatures,
  indices: ArrayLike<number>,
  options: RefitOptions & { step?: number } = {},
): Promise<Float64Array> {
  const h = options.step ?? 0.05;
  const out = new Float64Array(indices.length);
  for (let q = 0; q < indices.length; q++) {
    const i = indices[q];
    if (fit.alpha[i] < h) throw new RangeError(`alphaFiniteDifference: α_${i} = ${fit.alpha[i]} < step ${h}`);
    const sides: number[] = [];
    for (const sign of [1, -1]) {
      const alpha = fit.alpha.slice();
      alpha[i] += sign * h;
      const moved = await refit(fit, train, alpha, options);
      sides.push(await meanLoss(moved, val));
      disposeHead(moved);
    }
    out[q] = (sides[0] - sides[1]) / (2 * h);
    options.onProgress?.(q + 1, indices.length);
  }
  return out;
}

/** Options of `linearDatamodelingScore`. */
export interface LdsOptions extends RefitOptions {
  /** λ of the refits (the head the scores were computed for). */
  lambda: number;
  /** K (default: inferred from train and val labels). */
  numClasses?: number;
  /** Number of random subsets M (default 50). */
  subsets?: number;
  /** Fraction of training points in each subset (default 0.5). */
  fraction?: number;
  /** Seed of the subsets (default 0). */
  seed?: number;
}

/**
 * LDS: refit the head on M random subsets S_1..S_M (α = indicator of S), and for each validation point j take the
 * Spearman correlation over subsets between the actual output ℓ_j(W*(1_S)) (its loss) and the predicted output
 * Σ_{i∈S} τ_ij; average over j. `scores` is `[n, m]` row-major (train-major) and must be oriented like ∂ℓ_j/∂α_i
 * (positive = including i raises j's loss), as influence scores are. Returns the mean and the per-point values.
 */
export async function linearDatamodelingScore(
  scores: Float32Array,
  train: LabeledFeatures,
  val: LabeledFeatures,
  options: LdsOptions,
): Promise<{ lds: number; perPoint: Float64Array }> {
  const n = train.features.shape[0], m = val.features.shape[0];
  if (scores.length !== n * m) {
    throw new RangeError(
      `linearDatamodelingScore: scores has ${scores.length} entries, expected n·m = ${n * m}`,
    );
  }
  const subsets = options.subsets ?? 50, fraction = options.fraction ?? 0.5;
  const rng = new Random(options.seed ?? 0);
  const actual = new Float64Array(subsets * m), predicted = new Float64Array(subsets * m);
  const numClasses = options.numClasses ??
    Math.max(inferNumClasses(train.labels), inferNumClasses(val.labels));
  const y = tf.tidy(() => tf.oneHot(tf.tensor1d(val.labels, "int32"), numClasses).toFloat());
  let previous: HeadFit | undefined;
  for (let s = 0; s < subsets; s++) {
    const alpha = new Float32Array(n);
    const order = rng.permutation(n);
    for (let q = 0; q < Math.round(fraction * n); q++) alpha[order[q]] = 1;
    const fit = await fitHead(train, {
      lambda: options.lambda,
      alpha,
      numClasses,
      init: previous?.weights,
      tol: options.tol,
      maxIter: options.maxIter,
    });
    const losses = tf.tidy(() => tf.neg(tf.sum(tf.mul(y, tf.logSoftmax(headLogits(fit, val.features))), 1)));
    actual.set(await readValues(losses), s * m);
    losses.dispose();
    for (let i = 0; i < n; i++) {
      if (alpha[i] === 0) continue;
      for (let j = 0; j < m; j++) predicted[s * m + j] += scores[i * m + j];
    }
    if (previous) disposeHead(previous);
    previous = fit;
    options.onProgress?.(s + 1, subsets);
  }
  if (previous) disposeHead(previous);
  y.dispose();
  const perPoint = new Float64Array(m);
  const column = (a: Float64Array, j: number) =>
    Float64Array.from({ length: subsets }, (_, s) => a[s * m + j]);
  for (let j = 0; j < m; j++) perPoint[j] = spearman(column(actual, j), column(predicted, j));
  const finite = Array.from(perPoint).filter(Number.isFinite);
  return { lds: finite.reduce((a, b) => a + b, 0) / finite.length, perPoint };
}
