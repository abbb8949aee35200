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

/** Which classes the validation split can speak for (see `validationCoverage`). */
export interface ValidationCoverage {
  /** Classes with no validation image, ascending. */
  classesWithoutVal: number[];
  /** Classes with exactly one validation image, ascending. */
  classesWithOneVal: number[];
  /** Classes with no training image, ascending. */
  classesWithoutTrain: number[];
  /** True when the validation set has fewer images than there are classes (m < K). */
  valSmallerThanClasses: boolean;
  /** One sentence per problem found, naming the classes and the consequence; empty when none. */
  warnings: string[];
}

/** "class 3" or "classes 0, 1, …, 9 and 5 more" (the first 10 listed), with the verb and pronouns to match. */
function nameClasses(classes: readonly number[]) {
  const single = classes.length === 1;
  const more = classes.length > 10 ? ` and ${classes.length - 10} more` : "";
  return {
    names: single ? `class ${classes[0]}` : `classes ${classes.slice(0, 10).join(", ")}${more}`,
    has: single ? "has" : "have",
    they: single ? "it" : "they",
    them: single ? "it" : "them",
    their: single ? "its" : "their",
    does: single ? "does" : "do",
    is: single ? "is" : "are",
  };
}

function countPerClass(labels: Int32Array, numClasses: number, what: string): Int32Array {
  const count = new Int32Array(numClasses);
  labels.forEach((y, i) => {
    if (!(Number.isInteger(y) && y >= 0 && y < numClasses)) {
      throw new RangeError(
        `validationCoverage: ${what} label ${y} at row ${i} is outside 0..${numClasses - 1}`,
      );
    }
    count[y]++;
  });
  return count;
}

/**
 * Which classes the validation labels cover, and what that means for a run. L_val is the unweighted mean
 * cross-entropy over the m validation points, so a class c with m_c validation images enters L_val, the λ tuning
 * and CARROT's selection with weight m_c / m: with m_c = 0 not at all (its test accuracy is still reported), with
 * m_c = 1 through one point's loss (noisy; CARROT falls back to α = 1 more often). With m < K at least K − m classes
 * have m_c = 0. A class without training images (n_c = 0) can only have its logit pushed down by the head.
 * Pure: counts labels and writes sentences; throws a `RangeError` on a label outside 0..K−1.
 */
export function validationCoverage(
  trainLabels: Int32Array,
  valLabels: Int32Array,
  numClasses: number,
): ValidationCoverage {
  if (!(Number.isInteger(numClasses) && numClasses >= 1)) {
    throw new RangeError(`validationCoverage: numClasses must be an integer ≥ 1, got ${numClasses}`);
  }
  const nTrain = countPerClass(trainLabels, numClasses, "train");
  const nVal = countPerClass(valLabels, numClasses, "val");
  const where = (keep: (c: number) => boolean) =>
    Array.from({ length: numClasses }, (_, c) => c).filter(keep);
  const m = valLabels.length;
  const coverage: ValidationCoverage = {
    classesWithoutVal: where((c) => nVal[c] === 0),
    classesWithOneVal: where((c) => nVal[c] === 1),
    classesWithoutTrain: where((c) => nTrain[c] === 0),
    valSmallerThanClasses: m < numClasses,
    warnings: [],
  };
  const warn = (line: string) => coverage.warnings.push(line);
  if (m === 0) {
    warn(
      "the validation set is empty: no class enters L_val, λ tuning, CARROT's selection or the validation " +
        "metrics, so there is nothing to tune or select on",
    );
  } else {
    if (coverage.valSmallerThanClasses) {
      const missing = numClasses - m;
      warn(
        `the validation set (${m} images) is smaller than the number of classes (${numClasses}): at least ` +
          `${missing} classes have no validation evidence, so L_val, λ tuning and CARROT's selection ` +
          "reflect the other classes only",
      );
    }
    if (coverage.classesWithoutVal.length) {
      const c = nameClasses(coverage.classesWithoutVal);
      warn(
        `${c.names} ${c.has} no validation images: ${c.they} ${c.does} not enter L_val, λ tuning, CARROT's ` +
          `selection or the validation metrics (${c.their} test accuracy is still reported)`,
      );
    }
    if (coverage.classesWithOneVal.length) {
      const c = nameClasses(coverage.classesWithOneVal);
      warn(
        `${c.names} ${c.has} a single validation image: ${c.their} validation loss is one point's, so ` +
          "λ tuning and CARROT's selection are noisy there (CARROT then falls back to α = 1 more often)",
      );
    }
  }
  if (coverage.classesWithoutTrain.length) {
    const c = nameClasses(coverage.classesWithoutTrain);
    warn(
      `${c.names} ${c.has} no training images: the head cannot learn ${c.them} (${c.their} logits are ` +
        `only pushed down), so ${c.they} ${c.is} almost never predicted`,
    );
  }
  return coverage;
}
