/**
 * The graded trim as the selection's incumbent where the training data show label noise (`gradedIncumbent`).
 *
 *   gate:       q̂ > z_q s.e.(q̂)   (z_q = `noiseEvidenceZ` = 2; q̂ from the fold heads, `noise_evidence.ts`);
 *   incumbent:  I = α^graded, unless ERM's paired calibrated validation gain over it exceeds z s.e. (then I = α ≡ 1);
 *   selection:  the selection's head S (the top-k mean) replaces I only if its paired calibrated validation gain
 *               over I exceeds z s.e.; when the selection fell back to α ≡ 1, I stays.
 *
 * With the gate closed the selection's own rule stands: S against ERM, the fallback to α ≡ 1.
 *
 * Why: the selection compares a few dozen candidates (the path steps, the trims) on m validation images, and its
 * fallback treats α ≡ 1 as the safe default. Where the out-of-fold errors show that the training labels are noisy
 * beyond what val's own noise explains, α ≡ 1 is not safe: it trains on the noise. The graded trim (`trim.ts`),
 * the mean of the trims at 10, 20 and 30% by out-of-fold loss, needs neither the noise rate nor a choice on val;
 * it is then the better prior, and val is asked only for evidence against it (ERM's veto) or for a head that beats
 * it beyond val's noise. The gate's 2 s.e. keeps clean training sets on ERM's side: q̂ ≈ 0 there.
 *
 * Opt-in (`CarrotOptions.gradedIncumbent`): measured in session 20 against a rule fixed before its cells ran, it
 * gained +0.13 point on four new image sets but lost 0.058 over the grid and 0.001 over the fresh seeds (README,
 * "The graded incumbent").
 */
import type { LabeledFeatures } from "./labeled_features.ts";
import { disposeHead, fitHead, type HeadFit } from "./head.ts";
import type { NoiseRateEvidence } from "./noise_evidence.ts";
import { pairedCalibratedGain, pairedGain } from "./selection.ts";
import { fitTemperature } from "./temperature.ts";

/** z_q of the gate: q̂ must exceed this many standard errors (fixed before its cells ran; README). */
export const noiseEvidenceZ = 2;

/** A weighting with its head and its temperature fitted on val. */
export interface CalibratedHead {
  /** α `[n]`. */
  alpha: Float32Array;
  /** The head fitted at α (owned by whoever holds this). */
  fit: HeadFit;
  /** T of that head, fitted on val. */
  temperature: number;
}

/** What the incumbent rule saw and decided. */
export interface IncumbentReport extends NoiseRateEvidence {
  /** Whether the gate was open (q̂ > z_q s.e.). */
  open: boolean;
  /** Whether the graded trim's head is the one returned. */
  used: boolean;
  /** The rule and numbers behind the decision, in one sentence. */
  reason: string;
}

/**
 * Applies the rule of the module JSDoc to the selection's head `selected` (its `fallback`: whether it is α ≡ 1
 * because the selection fell back). `graded` carries the graded trim's α and its per-point calibrated validation
 * losses, `ermLosses` ERM's (`CandidateScorer.pointLosses`). Returns the head in use, the other freed.
 */
export async function gradedIncumbent(
  train: LabeledFeatures,
  val: LabeledFeatures,
  selected: CalibratedHead & { fallback: boolean },
  graded: { alpha: Float32Array; losses: Float64Array },
  ermLosses: Float64Array,
  evidence: NoiseRateEvidence,
  options: { lambda: number; numClasses: number; init?: HeadFit; z?: number; tol?: number },
): Promise<{ chosen: CalibratedHead; report: IncumbentReport }> {
  const z = options.z ?? 1;
  const open = evidence.rate > noiseEvidenceZ * evidence.standardError;
  const seen =
    `q̂ ${evidence.rate.toFixed(3)} (out-of-fold error ${evidence.trainError.toFixed(3)} on train, ` +
    `${evidence.valError.toFixed(3)} on val)`;
  const keep = (used: boolean, reason: string) => ({ ...evidence, open, used, reason });
  const { fit, alpha, temperature } = selected;
  if (!open) {
    const reason = `no evidence of label noise: ${seen} ≤ ${noiseEvidenceZ} × s.e. ${
      evidence.standardError.toFixed(3)
    }; the selection's rule stands`;
    return { chosen: { fit, alpha, temperature }, report: keep(false, reason) };
  }
  const noisy = `label noise: ${seen} > ${noiseEvidenceZ} × s.e. ${evidence.standardError.toFixed(3)}`;
  const veto = pairedGain(graded.losses, ermLosses); // ERM's gain over the graded trim
  if (veto.gain > z * veto.standardError) {
    const reason = `${noisy}, but ERM beat the graded trim on val by ${veto.gain.toFixed(4)} > ${z} × s.e. ${
      veto.standardError.toFixed(4)
    }; the selection's rule stands`;
    return { chosen: { fit, alpha, temperature }, report: keep(false, reason) };
  }
  const gradedFit = await fitHead(train, {
    lambda: options.lambda,
    alpha: graded.alpha,
    numClasses: options.numClasses,
    init: options.init,
    tol: options.tol,
  });
  try {
    const own = {
      alpha: graded.alpha,
      fit: gradedFit,
      temperature: (await fitTemperature(gradedFit, val)).temperature,
    };
    if (selected.fallback) {
      disposeHead(fit);
      const reason =
        `${noisy}: the graded trim is the incumbent and the selection fell back to α ≡ 1; graded trim used`;
      return { chosen: own, report: keep(true, reason) };
    }
    const { gain, standardError, m } = await pairedCalibratedGain(gradedFit, fit, val);
    const beat = gain > z * standardError;
    const reason = `${noisy}: the graded trim is the incumbent; the selection's head ${
      beat ? "beat" : "did not beat"
    } it on val by ${gain.toFixed(4)} ${beat ? ">" : "≤"} ${z} × s.e. ${
      standardError.toFixed(4)
    } (m = ${m}); ${beat ? "selection kept" : "graded trim used"}`;
    disposeHead(beat ? gradedFit : fit);
    return { chosen: beat ? { fit, alpha, temperature } : own, report: keep(!beat, reason) };
  } catch (error) {
    disposeHead(gradedFit);
    throw error;
  }
}
