/**
 * The value that passes between CARROT's functions: a feature matrix and its integer labels.
 *
 * Features h_i are the backbone's pooled outputs, *without* the constant 1; the head appends it (bias last).
 */
import * as tf from "@tensorflow/tfjs";
import { readValues } from "./_reads.ts";

/** Features `[n, d]` (float32 tensor) and labels in 0..K−1 (`Int32Array [n]`). */
export interface LabeledFeatures {
  /** h without the constant column `[n, d]`. */
  features: tf.Tensor2D;
  /** y_i ∈ 0..K−1 `[n]`. */
  labels: Int32Array;
}

/**
 * Throws a `RangeError` naming the first offending entry unless `labels` has one entry per feature row and every
 * label lies in 0..numClasses−1. `what` names the split in the message ("train", "val", …).
 */
export function checkLabels(data: LabeledFeatures, numClasses: number, what: string): void {
  const n = data.features.shape[0];
  if (data.labels.length !== n) {
    throw new RangeError(`${what}: ${data.labels.length} labels for ${n} feature rows; they must match`);
  }
  for (let i = 0; i < n; i++) {
    const y = data.labels[i];
    if (!Number.isInteger(y) || y < 0 || y >= numClasses) {
      throw new RangeError(`${what}: label ${y} at row ${i} is outside 0..${numClasses - 1}`);
    }
  }
}

/** Throws a `RangeError` naming the first row of `features` that holds a NaN or ±Inf. */
export async function checkFinite(features: tf.Tensor2D, what: string): Promise<void> {
  const rowOk = tf.tidy(() => tf.all(tf.isFinite(features), 1));
  const ok = await readValues(rowOk);
  rowOk.dispose();
  const bad = ok.indexOf(0);
  if (bad >= 0) throw new RangeError(`${what}: feature row ${bad} contains NaN or Inf`);
}

/** The largest label plus one: the number of classes when the caller does not say. */
export function inferNumClasses(labels: Int32Array): number {
  let max = -1;
  for (const y of labels) max = Math.max(max, y);
  return max + 1;
}
