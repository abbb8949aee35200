/**
 * Evidence of label noise in the training set: how much worse the cross-fitted heads predict their held-out
 * training points than the clean validation points. With F fold heads W*_{−k} at α ≡ 1,
 *
 *   e_tr  = (1/n) Σ_i 1[argmax_c p_c(h_i; W*_{−k(i)}) ≠ ỹ_i],
 *   e_val = (1/F) Σ_k (1/m) Σ_j 1[argmax_c p_c(h_j; W*_{−k}) ≠ y_j],
 *   q̂ = (e_tr − e_val) / (1 − e_val),   s.e.(q̂) = √(e_tr (1 − e_tr)/n + e_val (1 − e_val)/m) / (1 − e_val).
 *
 * Why q̂ estimates the noise rate q: every held-out training point and every validation point is predicted by heads
 * that never saw it, so without label noise both error rates estimate the same error e. When a share q of the
 * training labels names a wrong class that the heads seldom predict, e_tr ≈ (1 − q) e + q, hence
 * q = (e_tr − e)/(1 − e). Where the heads do predict the wrong labels (systematic flips between similar classes,
 * learnt from the other flipped points) q̂ underestimates q, and shortcut images that are easier in train than in val
 * lower it too. So CARROT uses q̂ as evidence that noise exists at all (q̂ > 2 s.e., `incumbent.ts`), not to place
 * a cut: confident learning's confident-joint estimate (Northcutt et al. 2021) came out at 2.2–2.5 × the true rate
 * on our features, counting hard classes as noise, and a trim at q̂ tested below the graded trim (README).
 */
import type { LabeledFeatures } from "./labeled_features.ts";
import { type FoldHeadOptions, visitFoldHeads } from "./crossfit.ts";
import { type HeadFit, headLogits } from "./head.ts";
import { readValues } from "./_reads.ts";

/** q̂, its standard error and the two error rates behind them (see the module JSDoc). */
export interface NoiseRateEvidence {
  /** q̂ = (e_tr − e_val)/(1 − e_val); negative when the held-out training points are predicted better than val. */
  rate: number;
  /** s.e.(q̂) (∞ when e_val = 1). */
  standardError: number;
  /** e_tr: the out-of-fold error on the training labels. */
  trainError: number;
  /** e_val: the fold heads' mean error on val. */
  valError: number;
  /** n: training points. */
  n: number;
  /** m: validation points. */
  m: number;
}

/** q̂ and s.e.(q̂) of the module JSDoc from the two error rates and their sample sizes. */
export function noiseRateFromErrors(
  trainError: number,
  n: number,
  valError: number,
  m: number,
): { rate: number; standardError: number } {
  if (!(n >= 1 && m >= 1)) throw new RangeError(`noiseRateFromErrors: need n, m ≥ 1, got n ${n}, m ${m}`);
  const inRange = (e: number) => e >= 0 && e <= 1;
  if (!inRange(trainError) || !inRange(valError)) {
    throw new RangeError(
      `noiseRateFromErrors: error rates must lie in [0, 1], got ${trainError} and ${valError}`,
    );
  }
  if (valError === 1) return { rate: 0, standardError: Infinity };
  const variance = trainError * (1 - trainError) / n + valError * (1 - valError) / m;
  return {
    rate: (trainError - valError) / (1 - valError),
    standardError: Math.sqrt(variance) / (1 - valError),
  };
}

/** How many rows of `data` the head's argmax gets wrong. */
async function errors(fit: HeadFit, data: LabeledFeatures): Promise<number> {
  const z = headLogits(fit, data.features), k = fit.numClasses;
  const logits = (await readValues(z)) as Float32Array;
  z.dispose();
  let wrong = 0;
  data.labels.forEach((y, j) => {
    let best = 0;
    for (let c = 1; c < k; c++) if (logits[j * k + c] > logits[j * k + best]) best = c;
    if (best !== y) wrong++;
  });
  return wrong;
}

/**
 * e_tr, e_val, q̂ and s.e.(q̂) of the module JSDoc, from the F fold heads at α ≡ 1 of the stratified fold assignment
 * `seed` (default 0; CARROT passes its paths' seed, so these are the folds its paths and trims use). Throws
 * `RangeError` on an empty validation split.
 */
export async function noiseRateEvidence(
  train: LabeledFeatures,
  val: LabeledFeatures,
  options: Omit<FoldHeadOptions, "alpha"> & { seed?: number },
): Promise<NoiseRateEvidence> {
  const n = train.labels.length, m = val.labels.length;
  if (m === 0) throw new RangeError("noiseRateEvidence: the validation split is empty");
  let trainWrong = 0, valWrong = 0, heads = 0;
  await visitFoldHeads(train, [options.seed ?? 0], options, async (fit, _heldOut, rows) => {
    trainWrong += await errors(fit, rows);
    valWrong += await errors(fit, val);
    heads++;
  });
  const trainError = trainWrong / n, valError = valWrong / (heads * m);
  return { ...noiseRateFromErrors(trainError, n, valError, m), trainError, valError, n, m };
}
