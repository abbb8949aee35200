/**
 * Classification metrics of a fitted head on a labelled split: top-1 accuracy, mean per-class accuracy (the
 * official FGVC-Aircraft metric: the mean of the diagonal of the row-normalised confusion matrix), expected
 * calibration error with 15 equal-width confidence bins (Guo et al. 2017: ECE = Σ_b (|B_b|/N)·|acc(B_b) − conf(B_b)|),
 * and the negative log-likelihood (mean cross-entropy, = L_val on the validation split).
 */
import * as tf from "@tensorflow/tfjs";
import type { LabeledFeatures } from "./labeled_features.ts";
import { type HeadFit, headLogits } from "./head.ts";
import { readValues } from "./_reads.ts";

/** The metrics of one head on one split. */
export interface Metrics {
  /** Fraction of points whose argmax class is the label. */
  accuracy: number;
  /** Mean over classes present in the split of the per-class accuracy. */
  perClassAccuracy: number;
  /** Expected calibration error, 15 bins. */
  ece: number;
  /** Mean cross-entropy. */
  nll: number;
}

/** Metrics from predicted probabilities `[t, K]` (row-major) and labels. */
export function metricsFromProbabilities(
  probabilities: Float32Array,
  labels: Int32Array,
  numClasses: number,
): Metrics {
  const t = labels.length, bins = 15;
  const binCount = new Float64Array(bins),
    binCorrect = new Float64Array(bins),
    binConfidence = new Float64Array(bins);
  const classCount = new Float64Array(numClasses), classCorrect = new Float64Array(numClasses);
  let correct = 0, nll = 0;
  for (let j = 0; j < t; j++) {
    let best = 0;
    for (let k = 1; k < numClasses; k++) {
      if (probabilities[j * numClasses + k] > probabilities[j * numClasses + best]) best = k;
    }
    const confidence = probabilities[j * numClasses + best];
    const hit = best === labels[j] ? 1 : 0;
    const b = Math.min(bins - 1, Math.floor(confidence * bins));
    binCount[b]++;
    binCorrect[b] += hit;
    binConfidence[b] += confidence;
    classCount[labels[j]]++;
    classCorrect[labels[j]] += hit;
    correct += hit;
    nll -= Math.log(Math.max(probabilities[j * numClasses + labels[j]], 1e-30));
  }
  let ece = 0;
  for (let b = 0; b < bins; b++) if (binCount[b] > 0) ece += Math.abs(binCorrect[b] - binConfidence[b]) / t;
  let present = 0, perClass = 0;
  for (let k = 0; k < numClasses; k++) {
    if (classCount[k] > 0) [present, perClass] = [present + 1, perClass + classCorrect[k] / classCount[k]];
  }
  return { accuracy: correct / t, perClassAccuracy: perClass / present, ece, nll: nll / t };
}

/** Metrics of `fit` on `data`. */
export async function evaluateHead(fit: HeadFit, data: LabeledFeatures): Promise<Metrics> {
  const p = tf.tidy(() => tf.softmax(headLogits(fit, data.features)));
  const values = (await readValues(p)) as Float32Array;
  p.dispose();
  return metricsFromProbabilities(values, data.labels, fit.numClasses);
}
