/**
 * Honest selection with a fallback: choose among candidate weightings α on a validation split that did not drive
 * their gradient, and keep α ≡ 1 (ERM) unless the chosen one wins by more than the noise of the split.
 *
 * For every candidate c (α ≡ 1 is always candidate 0) the head is refitted on the full training set, its
 * temperature T_c is fitted on val (`temperature.ts`), and the per-point calibrated validation losses
 *   ℓ_j^c = CE(z_j^c / T_c, y_j)
 * are compared. Temperature scaling first means a candidate cannot win by changing the confidence scale alone:
 * what is compared is how well each head ranks the classes. The chosen candidate minimises mean_j ℓ_j^c; its gain
 * over ERM is the paired mean d̄ = mean_j (ℓ_j^0 − ℓ_j^c) with standard error s/√m (s the std of the differences).
 * It is kept only when d̄ > z · s/√m (default z = 1); otherwise the fallback to α ≡ 1 is taken, and the reason says
 * which test failed with the numbers. With m validation points the noise shrinks as 1/√m: the evidence required
 * follows the amount of validation data, so a tiny validation set falls back unless the gain is large.
 */
import type * as tf from "@tensorflow/tfjs";
import type { LabeledFeatures } from "./labeled_features.ts";
import { disposeHead, fitHead, type HeadFit, headLogits } from "./head.ts";
import { fitTemperatureFromLogits } from "./temperature.ts";

/** One candidate weighting, with what produced it (for the report). */
export interface SelectionCandidate {
  /** α `[n]` on the training split. */
  alpha: Float32Array;
  /** What produced it, e.g. `{ step: 3, gamma: 0 }`. */
  label: Record<string, number | string>;
}

/** Options of `selectWeighting`. */
export interface SelectionOptions {
  /** λ of every refit. */
  lambda: number;
  /** K (default: inferred from the labels). */
  numClasses?: number;
  /** The ERM head (α ≡ 1) at λ, reused for candidate 0 and as the warm start (not consumed). */
  erm?: HeadFit;
  /** Standard errors the gain must exceed (default 1). */
  z?: number;
  /** Tolerance of every refit (default fitHead's). */
  tol?: number;
  /** Called after each candidate is scored. */
  onProgress?: (done: number, total: number) => void;
}

/** How one candidate scored on val. */
export interface SelectionRow {
  /** The candidate's label. */
  label: Record<string, number | string>;
  /** Mean calibrated validation loss. */
  valLoss: number;
  /** Validation top-1 accuracy. */
  valAccuracy: number;
  /** T fitted on val. */
  temperature: number;
}

/** The selection's outcome. */
export interface SelectionResult {
  /** Index of the candidate in use (0 when the fallback was taken). */
  chosen: number;
  /** Index of the best candidate on val (may differ from `chosen` when the fallback was taken). */
  best: number;
  /** Whether α ≡ 1 was kept because the best gain was within noise (or there was no better candidate). */
  fallback: boolean;
  /** d̄: mean paired calibrated-loss gain of the best candidate over ERM on val. */
  gain: number;
  /** s/√m of that gain. */
  standardError: number;
  /** The rule and numbers behind the decision, in one sentence. */
  reason: string;
  /** One row per candidate, in input order. */
  rows: SelectionRow[];
  /** The head of the candidate in use (owned by the caller), with its temperature. */
  fit: HeadFit;
  /** T of that head, fitted on val. */
  temperature: number;
}

/** Per-point calibrated losses, accuracy and T of a head on val. */
async function calibratedLosses(fit: HeadFit, val: LabeledFeatures) {
  const z = headLogits(fit, val.features);
  const logits = (await z.data()) as Float32Array;
  z.dispose();
  const k = fit.numClasses, m = val.labels.length;
  const { temperature } = fitTemperatureFromLogits(logits, val.labels, k);
  const losses = new Float64Array(m);
  let correct = 0;
  for (let j = 0; j < m; j++) {
    let max = -Infinity, best = 0;
    for (let c = 0; c < k; c++) {
      if (logits[j * k + c] > max) [max, best] = [logits[j * k + c], c];
    }
    let sum = 0;
    for (let c = 0; c < k; c++) sum += Math.exp((logits[j * k + c] - max) / temperature);
    losses[j] = Math.log(sum) - (logits[j * k + val.labels[j]] - max) / temperature;
    if (best === val.labels[j]) correct++;
  }
  return { losses, accuracy: correct / m, temperature };
}

/**
 * Scores every candidate on val and applies the fallback rule (see the module JSDoc). Candidate 0 must be α ≡ 1.
 * Throws `RangeError` on an empty validation split or candidate list.
 */
export async function selectWeighting(
  train: LabeledFeatures,
  val: LabeledFeatures,
  candidates: readonly SelectionCandidate[],
  options: SelectionOptions,
): Promise<SelectionResult> {
  const m = val.labels.length;
  if (m === 0) {
    throw new RangeError("selectWeighting: the validation split is empty; selection needs val points");
  }
  if (candidates.length === 0) throw new RangeError("selectWeighting: no candidates");
  if (candidates[0].alpha.some((a) => a !== 1)) {
    throw new RangeError("selectWeighting: candidate 0 must be α ≡ 1 (the ERM fallback)");
  }
  const z = options.z ?? 1;
  // each refit starts from the ERM head or from the previous candidate's, whichever α is closer in L1
  // (consecutive steps of a path are close): the same optimum, fewer iterations
  let previous: { alpha: Float32Array; weights: tf.Tensor2D } | undefined;
  const fitAt = async (alpha: Float32Array) => {
    const distance = (a: Float32Array, b?: Float32Array) =>
      a.reduce((s, v, i) => s + Math.abs(v - (b ? b[i] : 1)), 0);
    const fromPrevious = previous && distance(alpha, previous.alpha) < distance(alpha);
    const fit = await fitHead(train, {
      lambda: options.lambda,
      alpha,
      numClasses: options.numClasses,
      init: fromPrevious ? previous!.weights : options.erm?.weights,
      tol: options.tol,
    });
    previous?.weights.dispose();
    previous = { alpha, weights: fit.weights.clone() };
    return fit;
  };
  const rows: SelectionRow[] = [];
  let bestIndex = 0, bestLosses: Float64Array | undefined, ermLosses: Float64Array | undefined;
  let bestFit: HeadFit | undefined, ermFit: HeadFit | undefined;
  let bestTemperature = 1, ermTemperature = 1;
  try {
    for (const [c, candidate] of candidates.entries()) {
      const fit = c === 0 && options.erm ? options.erm : await fitAt(candidate.alpha);
      const scored = await calibratedLosses(fit, val);
      const valLoss = scored.losses.reduce((s, v) => s + v, 0) / m;
      rows.push({
        label: candidate.label,
        valLoss,
        valAccuracy: scored.accuracy,
        temperature: scored.temperature,
      });
      if (c === 0) [ermFit, ermLosses, ermTemperature] = [fit, scored.losses, scored.temperature];
      if (c === 0 || valLoss < rows[bestIndex].valLoss) {
        if (bestFit && bestFit !== ermFit) disposeHead(bestFit);
        [bestIndex, bestFit, bestLosses, bestTemperature] = [c, fit, scored.losses, scored.temperature];
      } else disposeHead(fit);
      options.onProgress?.(c + 1, candidates.length);
    }
  } catch (error) {
    for (const fit of new Set([bestFit, ermFit])) if (fit && fit !== options.erm) disposeHead(fit);
    throw error;
  } finally {
    previous?.weights.dispose();
  }
  const differences = ermLosses!.map((v, j) => v - bestLosses![j]);
  const gain = differences.reduce((s, v) => s + v, 0) / m;
  const variance = m > 1 ? differences.reduce((s, v) => s + (v - gain) ** 2, 0) / (m - 1) : Infinity;
  const standardError = Math.sqrt(variance / m);
  const accept = bestIndex > 0 && gain > z * standardError;
  const what = JSON.stringify(candidates[bestIndex].label);
  const reason = bestIndex === 0
    ? `no candidate lowered the calibrated validation loss of ERM (${rows[0].valLoss.toFixed(4)}); α ≡ 1 kept`
    : accept
    ? `${what} lowered the calibrated validation loss by ${gain.toFixed(4)} > ${z} × s.e. ${
      standardError.toFixed(4)
    } (m = ${m}); kept`
    : `${what} lowered the calibrated validation loss by ${gain.toFixed(4)}, within ${z} × s.e. ${
      standardError.toFixed(4)
    } (m = ${m}): fallback to α ≡ 1`;
  const chosen = accept ? bestIndex : 0;
  if (bestFit !== ermFit) {
    if (accept) {
      if (ermFit !== options.erm) disposeHead(ermFit!);
    } else disposeHead(bestFit!);
  }
  const fit = accept ? bestFit! : ermFit!;
  return {
    chosen,
    best: bestIndex,
    fallback: !accept,
    gain,
    standardError,
    reason,
    rows,
    // the caller owns the returned head: a copy of the ERM head it passed in (its own optimum: no iterations)
    fit: fit === options.erm
      ? await fitHead(train, {
        lambda: options.lambda,
        alpha: candidates[0].alpha,
        numClasses: options.numClasses,
        init: fit,
        tol: options.tol,
      })
      : fit,
    temperature: accept ? bestTemperature : ermTemperature,
  };
}
