/**
 * Post-hoc temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks", §4.2): one scalar
 * T > 0 fitted on a held-out split by minimising the NLL of softmax(z / T), the head's weights untouched.
 *
 *   T* = argmin_{T>0} L(T),   L(T) = (1/m) Σ_j CE(z_j / T, y_j) = (1/m) Σ_j [logsumexp(z_j / T) − z_{j,y_j} / T]
 *
 * With β = 1/T, L is convex in β (a mean of log-sum-exps of linear functions of β):
 *
 *   dL/dβ   = (1/m) Σ_j (E_{p_j}[z_j] − z_{j,y_j}),   p_j = softmax(β z_j)
 *   d²L/dβ² = (1/m) Σ_j Var_{p_j}(z_j) ≥ 0
 *
 * so the minimiser over a box [1/maxT, 1/minT] is the root of dL/dβ there, or an end of the box. The search is
 * Newton on β safeguarded by bisection, all in float64, stopping on the step in u = log T = −log β. Dividing the
 * logits by T > 0 keeps every argmax, so accuracy does not change; only confidence (ECE, NLL) does.
 */
import * as tf from "@tensorflow/tfjs";
import { checkLabels, type LabeledFeatures } from "./labeled_features.ts";
import { type HeadFit, headLogits } from "./head.ts";
import { type Metrics, metricsFromProbabilities } from "./metrics.ts";
import { readValues } from "./_reads.ts";

/** The fitted temperature and the validation NLL before/after. */
export interface TemperatureFit {
  /** T* ∈ [minT, maxT]; an end of that box when the unconstrained minimiser lies outside it. */
  temperature: number;
  /** L(1) = (1/m) Σ_j CE(z_j, y_j): the NLL of the unscaled head. */
  nllBefore: number;
  /** L(T*) = (1/m) Σ_j CE(z_j / T*, y_j). */
  nllAfter: number;
}

/** Options of `fitTemperatureFromLogits`: the box T is searched in. */
export interface FitTemperatureOptions {
  /** Smallest T returned, > 0 (default 0.05). Separable, all-correct logits drive T* → 0 and stop here. */
  minT?: number;
  /** Largest T returned, > minT (default 20). Uninformative or anti-correlated logits stop here. */
  maxT?: number;
}

/** L(β) and its first two derivatives in β = 1/T, in float64. */
interface Objective {
  nll: number;
  d1: number;
  d2: number;
}

/**
 * L(β) = (1/m) Σ_j [logsumexp(β z_j) − β z_{j,y_j}], dL/dβ = mean_j E_p[z − z_y], d²L/dβ² = mean_j Var_p(z).
 * Shifted by max_k z_jk (β > 0), so no overflow whatever the logit scale; centred on z_{j,y_j}, so rows with
 * equal logits give a derivative of exactly 0.
 */
function objective(z: Float32Array, labels: Int32Array, numClasses: number, beta: number): Objective {
  const m = labels.length, w = new Float64Array(numClasses);
  let nll = 0, d1 = 0, d2 = 0;
  for (let j = 0; j < m; j++) {
    const row = j * numClasses, zy = z[row + labels[j]];
    let max = -Infinity;
    for (let k = 0; k < numClasses; k++) max = Math.max(max, z[row + k]);
    let s = 0, mean = 0;
    for (let k = 0; k < numClasses; k++) {
      w[k] = Math.exp(beta * (z[row + k] - max));
      s += w[k];
      mean += w[k] * (z[row + k] - zy);
    }
    mean /= s; // E_p[z − z_y]
    let variance = 0;
    for (let k = 0; k < numClasses; k++) variance += w[k] * (z[row + k] - zy - mean) ** 2;
    nll += beta * (max - zy) + Math.log(s);
    d1 += mean;
    d2 += variance / s;
  }
  return { nll: nll / m, d1: d1 / m, d2: d2 / m };
}

function checkInputs(
  logits: Float32Array,
  labels: Int32Array,
  numClasses: number,
  options: FitTemperatureOptions,
  what: string,
): { minT: number; maxT: number } {
  const m = labels.length;
  if (m === 0) {
    throw new RangeError(`${what}: the split is empty (0 labels); temperature scaling needs labelled points`);
  }
  if (!(Number.isInteger(numClasses) && numClasses >= 2)) {
    throw new RangeError(`${what}: numClasses must be an integer ≥ 2, got ${numClasses}`);
  }
  if (logits.length !== m * numClasses) {
    throw new RangeError(
      `${what}: ${logits.length} logits for ${m} labels × ${numClasses} classes; expected ${m * numClasses}`,
    );
  }
  for (let j = 0; j < m; j++) {
    const y = labels[j];
    if (!(Number.isInteger(y) && y >= 0 && y < numClasses)) {
      throw new RangeError(`${what}: label ${y} at row ${j} is outside 0..${numClasses - 1}`);
    }
  }
  for (let i = 0; i < logits.length; i++) {
    if (!Number.isFinite(logits[i])) {
      throw new RangeError(`${what}: logit row ${Math.floor(i / numClasses)} contains NaN or Inf`);
    }
  }
  const minT = options.minT ?? 0.05, maxT = options.maxT ?? 20;
  if (!(Number.isFinite(minT) && Number.isFinite(maxT) && minT > 0 && maxT > minT)) {
    throw new RangeError(`${what}: need finite 0 < minT < maxT, got minT ${minT}, maxT ${maxT}`);
  }
  return { minT, maxT };
}

/** argmin of the convex L(β) on [lo, hi]: the root of dL/dβ by safeguarded Newton, or an end of the box. */
function minimiseBeta(
  z: Float32Array,
  labels: Int32Array,
  numClasses: number,
  lo: number,
  hi: number,
): number {
  const gLo = objective(z, labels, numClasses, lo).d1, gHi = objective(z, labels, numClasses, hi).d1;
  // dL/dβ is nondecreasing: ≥ 0 at lo and ≤ 0 at hi means L is flat (e.g. every row's logits equal): keep T = 1.
  if (gLo >= 0 && gHi <= 0) return Math.min(hi, Math.max(lo, 1));
  if (gLo >= 0) return lo; // T* ≥ maxT
  if (gHi <= 0) return hi; // T* ≤ minT: separable, all-correct logits
  let beta = Math.min(hi, Math.max(lo, 1));
  for (let iteration = 0; iteration < 200; iteration++) {
    const { d1, d2 } = objective(z, labels, numClasses, beta);
    if (d1 === 0) return beta;
    if (d1 < 0) lo = beta;
    else hi = beta;
    const newton = beta - d1 / d2;
    const next = d2 > 0 && newton > lo && newton < hi ? newton : 0.5 * (lo + hi);
    // Stop on the step in u = log T = −log β, i.e. a relative step in β.
    if (Math.abs(next - beta) <= 1e-13 * beta || hi - lo <= 1e-13 * hi) return next;
    beta = next;
  }
  return beta;
}

/**
 * T* = argmin_{T>0} mean_j CE(z_j / T, y_j) over logits z `[m, K]` (row-major Float32Array) and labels, with T
 * clamped to [minT, maxT]. Logits that classify every point correctly with a margin have L decreasing all the way
 * to T → 0; the result is then exactly `minT` (and `maxT` when the logits carry no signal, L decreasing in T).
 * Flat logits (L independent of T) give T = 1. Throws `RangeError` on an empty split, a length mismatch, a label
 * outside 0..K−1, a non-finite logit or a bad box; never returns NaN.
 */
export function fitTemperatureFromLogits(
  logits: Float32Array,
  labels: Int32Array,
  numClasses: number,
  options: FitTemperatureOptions = {},
): TemperatureFit {
  return fitChecked(logits, labels, numClasses, options, "fitTemperatureFromLogits");
}

function fitChecked(
  logits: Float32Array,
  labels: Int32Array,
  numClasses: number,
  options: FitTemperatureOptions,
  what: string,
): TemperatureFit {
  const { minT, maxT } = checkInputs(logits, labels, numClasses, options, what);
  const beta = minimiseBeta(logits, labels, numClasses, 1 / maxT, 1 / minT);
  const temperature = Math.min(maxT, Math.max(minT, 1 / beta));
  return {
    temperature,
    nllBefore: objective(logits, labels, numClasses, 1).nll,
    nllAfter: objective(logits, labels, numClasses, 1 / temperature).nll,
  };
}

function checkSplit(fit: HeadFit, data: LabeledFeatures, what: string): void {
  if (data.features.rank !== 2) throw new RangeError(`${what}: features must be a 2-D tensor [m, d]`);
  const [m, dim] = data.features.shape;
  if (m === 0) throw new RangeError(`${what}: the split is empty (0 rows); it needs labelled points`);
  if (dim + 1 !== fit.weights.shape[1]) {
    throw new RangeError(
      `${what}: features have d = ${dim}, the head expects d = ${fit.weights.shape[1] - 1}`,
    );
  }
  checkLabels(data, fit.numClasses, what);
}

/**
 * T* = argmin_{T>0} mean_j CE(z_j / T, y_j) for a fitted head on a labelled split (normally validation), with
 * z_j = W [h_j; 1] read once from `headLogits(fit, data.features)`; see `fitTemperatureFromLogits` for the box
 * [0.05, 20] and its ends. Throws `RangeError` on an empty split, a dimension mismatch or a bad label.
 */
export async function fitTemperature(fit: HeadFit, data: LabeledFeatures): Promise<TemperatureFit> {
  checkSplit(fit, data, "fitTemperature");
  const z = headLogits(fit, data.features); // [m, K]
  const values = (await readValues(z)) as Float32Array;
  z.dispose();
  return fitChecked(values, data.labels, fit.numClasses, {}, "fitTemperature");
}

/**
 * Metrics (`Metrics` of metrics.ts) of p_j = softmax(z_j / T) on a split: accuracy and per-class accuracy as
 * the unscaled head (argmax is invariant under z → z/T, T > 0, up to float32 ties in the probabilities at extreme
 * T), ECE and NLL after scaling. T = 1 reproduces `evaluateHead` exactly. Throws `RangeError` on T ≤ 0 or
 * non-finite, an empty split, a dimension mismatch or a bad label.
 */
export async function evaluateHeadWithTemperature(
  fit: HeadFit,
  data: LabeledFeatures,
  temperature: number,
): Promise<Metrics> {
  if (!(Number.isFinite(temperature) && temperature > 0)) {
    throw new RangeError(
      `evaluateHeadWithTemperature: temperature must be finite and > 0, got ${temperature}`,
    );
  }
  checkSplit(fit, data, "evaluateHeadWithTemperature");
  const p = tf.tidy(() => tf.softmax(tf.div(headLogits(fit, data.features), temperature))); // [m, K]
  const values = (await readValues(p)) as Float32Array;
  p.dispose();
  return metricsFromProbabilities(values, data.labels, fit.numClasses);
}
