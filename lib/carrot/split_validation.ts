/**
 * Split-validation RRO: the original RRO's outer objective, made honest by splitting the validation set.
 *
 * The original RRO (`reweight.ts`) descends L_val(W*(α)) with the exact Theorem B gradient, and is the most accurate
 * row of the robustness grid when validation data is plentiful — but the same points that drive the gradient also
 * decide where to stop, so it memorises a small validation set (validation top-1 → 100%, test below ERM, ECE after
 * temperature scaling 7–36%). Here the two roles get disjoint points:
 *
 *   val = A ∪ B, stratified per class (`stratifiedSplitIndices`, half of each class to B, rounded up; a class with
 *   one validation image keeps it in A);
 *   1. descend: RRO on A, α_{t+1} = argmin over the simplex / ESS ball of the linearised L_A(W*(α)) (`reweight`);
 *      every step's α is a candidate;
 *   2. select on B (`selection.ts`): each candidate refitted on all of train, temperature-scaled on B, scored by
 *      its mean calibrated loss on B; the best replaces α ≡ 1 only when its paired gain over ERM on B exceeds z
 *      standard errors, otherwise the fallback α ≡ 1 is taken and reported.
 *
 * B never drives a gradient: it only picks the number of steps and vetoes gains within its noise, which shrinks as
 * 1/√|B|. The price is half of the descent signal: with 3 validation images per class A holds 1.
 */
import * as tf from "@tensorflow/tfjs";
import type { LabeledFeatures } from "./labeled_features.ts";
import { disposeHead } from "./head.ts";
import { reweight, type ReweightOptions, type TrajectoryEntry } from "./reweight.ts";
import { type SelectionCandidate, type SelectionResult, selectWeighting } from "./selection.ts";
import { selectRows, stratifiedSplitIndices } from "../split.ts";

/** Options of `splitValidationReweight`: RRO's on A (λ required: tune it on all of val for ERM), and the split. */
export interface SplitValidationOptions extends Omit<ReweightOptions, "lambda"> {
  /** λ of the descent and of every refit. */
  lambda: number;
  /** Seed of the split of val into A and B (default 0). */
  splitSeed?: number;
  /** Standard errors the selected gain must exceed on B (default 1). */
  z?: number;
}

/** The outcome: α, its head with T fitted on B, the selection on B and RRO's trajectory on A. */
export interface SplitValidationResult {
  /** α in use (all ones when the fallback was taken). */
  alpha: Float32Array;
  /** The selection on B; `selection.fit` is the head in use (owned by the caller), `selection.temperature` its T. */
  selection: SelectionResult;
  /** RRO's trajectory on A (step 0: ERM). */
  trajectory: TrajectoryEntry[];
  /** Indices into val of A, the half RRO descends. */
  descent: Int32Array;
  /** Indices into val of B, the half that selects. */
  selectionSplit: Int32Array;
}

/** The split of val into A (`descent`) and B (`selectionSplit`), as `splitValidationReweight` makes it (indices). */
export function validationHalves(
  labels: ArrayLike<number>,
  seed: number,
): { descent: Int32Array; selectionSplit: Int32Array } {
  const { train: descent, val: selectionSplit } = stratifiedSplitIndices(labels, { fraction: 0.5 }, seed);
  return { descent, selectionSplit };
}

/**
 * RRO on half of val, its number of steps selected on the other half with a fallback to α ≡ 1 (module JSDoc).
 * Throws `RangeError` when no class has two validation images (B would be empty).
 */
export async function splitValidationReweight(
  train: LabeledFeatures,
  val: LabeledFeatures,
  options: SplitValidationOptions,
): Promise<SplitValidationResult> {
  const { descent, selectionSplit } = validationHalves(val.labels, options.splitSeed ?? 0);
  if (selectionSplit.length === 0) {
    throw new RangeError(
      `splitValidationReweight: ${val.labels.length} validation points and no class with two of them, so the ` +
        "selection half would be empty; give val ≥ 2 images in some class, or use carrotReweight",
    );
  }
  const a = selectRows(val, descent), b = selectRows(val, selectionSplit);
  try {
    const candidates: SelectionCandidate[] = [];
    const { fit, trajectory } = await reweight(train, a, {
      ...options,
      onStep: (entry, alpha) => {
        if (entry.accepted) candidates.push({ alpha, label: { step: entry.step } });
        options.onStep?.(entry, alpha);
      },
    });
    const selection = await selectWeighting(train, b, candidates, {
      lambda: options.lambda,
      numClasses: fit.numClasses,
      z: options.z,
    }).finally(() => disposeHead(fit));
    return {
      alpha: candidates[selection.chosen].alpha,
      selection,
      trajectory,
      descent,
      selectionSplit,
    };
  } finally {
    tf.dispose([a.features, b.features]);
  }
}
