/**
 * Refined trimming: rank the training points a second time, by the out-of-fold losses of fold heads fitted at the
 * graded trim's α instead of at α ≡ 1,
 *
 *   ℓ^(1)_i = (1/R) Σ_r ℓ_i(W*_{−k_r(i)}(α^graded(ℓ^(0)))),
 *
 * with ℓ^(0) the out-of-fold losses at α ≡ 1, α^graded their graded trim over the fractions Q (`trim.ts`) and
 * W*_{−k}(α) the head fitted with weights α on every fold of assignment r but k (`outOfFoldLosses`).
 *
 * Why: the first ranking's judges were fitted on the noisy labels. A mislabelled training point pulls its fold heads
 * towards its wrong class, so clean points near it get higher out-of-fold losses (false positives) and mislabelled
 * points that agree with other mislabelled ones get lower ones. Heads refitted with the suspects down-weighted are
 * cleaner judges; each point is still judged by heads that never saw it. This is one round of iterative trimmed-loss
 * minimisation (Shen & Sanghavi 2019), kept cross-fitted. Cost: one more set of F fold fits per fold assignment.
 */
import type { LabeledFeatures } from "./labeled_features.ts";
import { type CrossFitOptions, outOfFoldLosses } from "./crossfit.ts";
import { gradedTrimAlpha } from "./trim.ts";

/** ℓ^(1) of the module JSDoc: out-of-fold losses over the fold assignments `seeds` at α^graded(`losses`). */
export async function refinedTrimLosses(
  train: LabeledFeatures,
  losses: ArrayLike<number>,
  fractions: readonly number[],
  seeds: readonly number[],
  options: Pick<CrossFitOptions, "lambda" | "numClasses" | "folds" | "init" | "tol">,
): Promise<Float32Array> {
  const alpha = gradedTrimAlpha(losses, train.labels, fractions);
  return await outOfFoldLosses(train, seeds, { ...options, alpha });
}
