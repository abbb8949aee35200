/**
 * Stratified, seeded validation splits: a share of each class moves to validation, the rest stays for training.
 * CUB and most fine-grained sets have no official validation split, so CARROT carves one from train; α then lives
 * on the remaining training points only.
 */
import * as tf from "@tensorflow/tfjs";
import type { LabeledFeatures } from "./carrot/labeled_features.ts";
import { Random } from "./random.ts";

/** How much of each class goes to validation: a fraction (rounded, at least 1) or a fixed count. */
export type ValidationSize = { fraction: number; perClass?: never } | { perClass: number; fraction?: never };

/**
 * Indices of the training and validation parts (each ascending) of a stratified split by `labels`: per class, a
 * seeded random `fraction` (rounded, ≥ 1) or `perClass` points go to validation, always leaving ≥ 1 for training.
 */
export function stratifiedSplitIndices(
  labels: ArrayLike<number>,
  size: ValidationSize,
  seed: number,
): { train: Int32Array; val: Int32Array } {
  if (size.fraction !== undefined && !(size.fraction > 0 && size.fraction < 1)) {
    throw new RangeError(`stratifiedSplit: fraction must lie in (0, 1), got ${size.fraction}`);
  }
  if (size.perClass !== undefined && !(Number.isInteger(size.perClass) && size.perClass >= 1)) {
    throw new RangeError(`stratifiedSplit: perClass must be an integer ≥ 1, got ${size.perClass}`);
  }
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const list = byClass.get(labels[i]) ?? [];
    list.push(i);
    byClass.set(labels[i], list);
  }
  const rng = new Random(seed);
  const val: number[] = [];
  for (const label of [...byClass.keys()].sort((a, b) => a - b)) {
    const members = byClass.get(label)!;
    const want = size.perClass ?? Math.max(1, Math.round(size.fraction! * members.length));
    const take = Math.min(want, members.length - 1);
    const order = rng.permutation(members.length);
    for (let q = 0; q < take; q++) val.push(members[order[q]]);
  }
  const isVal = new Uint8Array(labels.length);
  for (const i of val) isVal[i] = 1;
  const train = Int32Array.from({ length: labels.length }, (_, i) => i).filter((i) => !isVal[i]);
  return { train, val: Int32Array.from(val).sort() };
}

/** The rows `indices` of `data` as a new `LabeledFeatures` (the caller disposes its features). */
export function selectRows(data: LabeledFeatures, indices: Int32Array): LabeledFeatures {
  return {
    features: tf.tidy(() => tf.gather(data.features, tf.tensor1d(indices, "int32")) as tf.Tensor2D),
    labels: Int32Array.from(indices, (i) => data.labels[i]),
  };
}

/** Splits labelled features into train and validation parts by `stratifiedSplitIndices`. */
export function splitFeatures(
  data: LabeledFeatures,
  size: ValidationSize,
  seed: number,
): { train: LabeledFeatures; val: LabeledFeatures; trainIndices: Int32Array; valIndices: Int32Array } {
  const { train, val } = stratifiedSplitIndices(data.labels, size, seed);
  return { train: selectRows(data, train), val: selectRows(data, val), trainIndices: train, valIndices: val };
}
