/**
 * Averaging over the selection's best candidates: instead of the single candidate with the lowest calibrated
 * validation loss, take the mean weighting of the k best,
 *
 *   α^(k) = (1/k) Σ_{c ∈ top_k} α_c,   top_k = the k candidates with the lowest mean_j ℓ_j^c (ERM among them),
 *
 * refit the head at α^(k), fit its temperature on val, and keep it only if its paired calibrated-loss gain over
 * ERM exceeds z standard errors (the fallback rule of `selection.ts`). With a few validation images per class the
 * calibrated losses of near-tied candidates (neighbouring steps of a path, the trims) differ by less than their
 * noise, so which one is lowest is partly chance; the mean of the leading few hedges that choice, as averaging the
 * trims does for the trimming fraction (`gradedTrimAlpha`). When ERM is among the k, the mean is pulled toward
 * α ≡ 1. CARROT's default since session 14 with k = 3 (`defaultAverageTop`; the rule and its cells: README).
 */
import type { LabeledFeatures } from "./labeled_features.ts";
import {
  type SelectionCandidate,
  type SelectionOptions,
  type SelectionResult,
  type SelectionRow,
  selectWeighting,
} from "./selection.ts";
import { meanAlpha } from "./trim.ts";

/**
 * The k best of `candidates` by their `rows`' calibrated validation loss (earliest first on ties), their mean α
 * scored against candidate 0 (α ≡ 1) by `selectWeighting`: the averaged candidate, labelled
 * `{ weighting: "top-k mean", gamma: 0, step: 0, k, of }` (`of` names the members with `describe`), and the
 * two-row selection between ERM and it. Undefined when fewer than two candidates exist. Throws `RangeError`
 * unless k is an integer ≥ 2 and rows match candidates.
 */
export async function averageTopCandidates(
  train: LabeledFeatures,
  val: LabeledFeatures,
  candidates: readonly SelectionCandidate[],
  rows: readonly Pick<SelectionRow, "valLoss">[],
  k: number,
  options: SelectionOptions & { describe?: (label: SelectionCandidate["label"]) => string },
): Promise<{ candidate: SelectionCandidate; selection: SelectionResult } | undefined> {
  if (!(Number.isInteger(k) && k >= 2)) {
    throw new RangeError(`averageTopCandidates: k must be an integer ≥ 2, got ${k}`);
  }
  if (rows.length !== candidates.length) {
    throw new RangeError(`averageTopCandidates: ${rows.length} rows for ${candidates.length} candidates`);
  }
  if (candidates.length < 2) return undefined;
  const top = rows.map((_, c) => c).sort((a, b) => rows[a].valLoss - rows[b].valLoss || a - b).slice(0, k);
  const describe = options.describe ?? ((label) => JSON.stringify(label));
  const averaged: SelectionCandidate = {
    alpha: meanAlpha(top.map((c) => candidates[c].alpha)),
    label: {
      weighting: "top-k mean",
      gamma: 0,
      step: 0,
      k: top.length,
      of: top.map((c) => describe(candidates[c].label)).join("; "),
    },
  };
  return {
    candidate: averaged,
    selection: await selectWeighting(train, val, [candidates[0], averaged], options),
  };
}
