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
import { readValues } from "./_reads.ts";

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
export async function calibratedLosses(fit: HeadFit, val: LabeledFeatures) {
  const z = headLogits(fit, val.features);
  const logits = (await readValues(z)) as Float32Array;
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

/** d̄ = mean_j (a_j − b_j) over paired per-point losses and its standard error s/√m (∞ for m = 1). */
export function pairedGain(a: Float64Array, b: Float64Array): { gain: number; standardError: number } {
  const m = a.length, differences = a.map((v, j) => v - b[j]);
  const gain = differences.reduce((s, v) => s + v, 0) / m;
  const variance = m > 1 ? differences.reduce((s, v) => s + (v - gain) ** 2, 0) / (m - 1) : Infinity;
  return { gain, standardError: Math.sqrt(variance / m) };
}

/**
 * The paired calibrated-loss gain of `challenger` over `baseline` on `val`: d̄ = mean_j (ℓ_j^baseline −
 * ℓ_j^challenger) with ℓ as in the module JSDoc (each head with its own T fitted on val), its standard error and
 * m. For an arbiter between two heads that were each selected elsewhere.
 */
export async function pairedCalibratedGain(
  baseline: HeadFit,
  challenger: HeadFit,
  val: LabeledFeatures,
): Promise<{ gain: number; standardError: number; m: number }> {
  const a = await calibratedLosses(baseline, val), b = await calibratedLosses(challenger, val);
  return { ...pairedGain(a.losses, b.losses), m: a.losses.length };
}

/**
 * Scores candidates one at a time, so that a caller can decide from the scores so far whether to produce more
 * (CARROT extends a path while its last step is the best): `add` refits and scores one candidate, `bestIndex` is
 * the best so far, `finish` applies the fallback rule and hands over the chosen head. Candidate 0 must be α ≡ 1.
 * Call `dispose` instead of `finish` to abandon it.
 */
export class CandidateScorer {
  /** The candidates added so far, in order. */
  readonly candidates: SelectionCandidate[] = [];
  /** Their scores, in the same order. */
  readonly rows: SelectionRow[] = [];
  /** Their per-point calibrated validation losses ℓ_j^c `[m]`, in the same order. */
  readonly pointLosses: Float64Array[] = [];
  #bestIndex = 0;
  #best?: { fit: HeadFit; losses: Float64Array; temperature: number };
  #erm?: { fit: HeadFit; losses: Float64Array; temperature: number };
  // each refit starts from the ERM head or from the previous candidate's, whichever α is closer in L1
  // (consecutive steps of a path are close): the same optimum, fewer iterations
  #previous?: { alpha: Float32Array; weights: tf.Tensor2D };

  /** Throws `RangeError` on an empty validation split. */
  constructor(
    readonly train: LabeledFeatures,
    readonly val: LabeledFeatures,
    readonly options: SelectionOptions,
  ) {
    if (val.labels.length === 0) {
      throw new RangeError("selectWeighting: the validation split is empty; selection needs val points");
    }
  }

  /** Index of the candidate with the lowest mean calibrated validation loss so far (earliest on ties). */
  get bestIndex(): number {
    return this.#bestIndex;
  }

  async #fitAt(alpha: Float32Array): Promise<HeadFit> {
    const distance = (a: Float32Array, b?: Float32Array) =>
      a.reduce((s, v, i) => s + Math.abs(v - (b ? b[i] : 1)), 0);
    const previous = this.#previous;
    const fromPrevious = previous && distance(alpha, previous.alpha) < distance(alpha);
    const fit = await fitHead(this.train, {
      lambda: this.options.lambda,
      alpha,
      numClasses: this.options.numClasses,
      init: fromPrevious ? previous!.weights : this.options.erm?.weights,
      tol: this.options.tol,
    });
    previous?.weights.dispose();
    this.#previous = { alpha, weights: fit.weights.clone() };
    return fit;
  }

  /** Refits on train at the candidate's α, fits T on val and scores it; returns its row. */
  async add(candidate: SelectionCandidate): Promise<SelectionRow> {
    const c = this.candidates.length;
    if (c === 0 && candidate.alpha.some((a) => a !== 1)) {
      throw new RangeError("selectWeighting: candidate 0 must be α ≡ 1 (the ERM fallback)");
    }
    const fit = c === 0 && this.options.erm ? this.options.erm : await this.#fitAt(candidate.alpha);
    const scored = await calibratedLosses(fit, this.val);
    const valLoss = scored.losses.reduce((s, v) => s + v, 0) / scored.losses.length;
    const row = {
      label: candidate.label,
      valLoss,
      valAccuracy: scored.accuracy,
      temperature: scored.temperature,
    };
    this.candidates.push(candidate);
    this.rows.push(row);
    this.pointLosses.push(scored.losses);
    const entry = { fit, losses: scored.losses, temperature: scored.temperature };
    if (c === 0) [this.#erm, this.#best] = [entry, entry];
    else if (valLoss < this.rows[this.#bestIndex].valLoss) {
      if (this.#best !== this.#erm) disposeHead(this.#best!.fit);
      [this.#bestIndex, this.#best] = [c, entry];
    } else disposeHead(fit);
    return row;
  }

  /** Frees every head held (not the caller's ERM head); the scorer is unusable afterwards. */
  dispose(): void {
    for (const held of new Set([this.#best, this.#erm])) {
      if (held && held.fit !== this.options.erm) disposeHead(held.fit);
    }
    this.#previous?.weights.dispose();
    [this.#best, this.#erm, this.#previous] = [undefined, undefined, undefined];
  }

  /** Applies the fallback rule (module JSDoc) to the candidates added; the returned head is the caller's. */
  async finish(): Promise<SelectionResult> {
    const erm = this.#erm, best = this.#best;
    if (!erm || !best) throw new RangeError("selectWeighting: no candidates");
    const m = erm.losses.length, z = this.options.z ?? 1, bestIndex = this.#bestIndex;
    const { gain, standardError } = pairedGain(erm.losses, best.losses);
    const accept = bestIndex > 0 && gain > z * standardError;
    const what = JSON.stringify(this.candidates[bestIndex].label);
    const reason = bestIndex === 0
      ? `no candidate lowered the calibrated validation loss of ERM (${
        this.rows[0].valLoss.toFixed(4)
      }); α ≡ 1 kept`
      : accept
      ? `${what} lowered the calibrated validation loss by ${gain.toFixed(4)} > ${z} × s.e. ${
        standardError.toFixed(4)
      } (m = ${m}); kept`
      : `${what} lowered the calibrated validation loss by ${gain.toFixed(4)}, within ${z} × s.e. ${
        standardError.toFixed(4)
      } (m = ${m}): fallback to α ≡ 1`;
    const kept = accept ? best : erm;
    this.#previous?.weights.dispose();
    const dropped = accept ? erm : best;
    if (dropped !== kept && dropped.fit !== this.options.erm) disposeHead(dropped.fit);
    [this.#best, this.#erm, this.#previous] = [undefined, undefined, undefined];
    return {
      chosen: accept ? bestIndex : 0,
      best: bestIndex,
      fallback: !accept,
      gain,
      standardError,
      reason,
      rows: this.rows,
      // the caller owns the returned head: a copy of the ERM head it passed in (its own optimum: no iterations)
      fit: kept.fit === this.options.erm
        ? await fitHead(this.train, {
          lambda: this.options.lambda,
          alpha: this.candidates[0].alpha,
          numClasses: this.options.numClasses,
          init: kept.fit,
          tol: this.options.tol,
        })
        : kept.fit,
      temperature: kept.temperature,
    };
  }
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
  const scorer = new CandidateScorer(train, val, options);
  if (candidates.length === 0) throw new RangeError("selectWeighting: no candidates");
  try {
    for (const [c, candidate] of candidates.entries()) {
      await scorer.add(candidate);
      options.onProgress?.(c + 1, candidates.length);
    }
  } catch (error) {
    scorer.dispose();
    throw error;
  }
  return scorer.finish();
}
