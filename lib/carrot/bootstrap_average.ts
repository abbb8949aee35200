/**
 * Bootstrap smoothing of the selection (Efron 2014, "Estimation and accuracy after model selection"; bootstrap
 * model weights as in Buckland, Burnham & Augustin 1997): instead of the candidate lowest on val, or the mean of a
 * fixed number of the lowest (`top_average.ts`), weight each candidate by how often it is the lowest when val is
 * resampled,
 *
 *   π_c = (1/B) Σ_b 1[c = argmin_{c'} mean_{j ∈ val*_b} ℓ_j^{c'}],   α_boot = Σ_c π_c α_c,
 *
 * with ℓ_j^c the per-point calibrated validation losses of `selection.ts` and val*_b the b-th resample, drawn with
 * replacement within each class (val is class-balanced by construction, and a class's few images should count as
 * many times in every resample). The head is refitted at α_boot, its temperature fitted on val, and it is kept only
 * if its paired calibrated-loss gain over ERM exceeds z standard errors (the fallback rule of `selection.ts`). The
 * number of candidates averaged follows the evidence: one candidate that wins on most resamples gets most of the
 * weight; near-ties that a few validation images cannot order share it; ERM's share pulls α toward 1. Since every
 * candidate keeps the class masses, so does their convex combination. Opt-in (`CarrotOptions.bootstrapAverage`).
 */
import type { LabeledFeatures } from "./labeled_features.ts";
import { Random } from "../random.ts";
import {
  type SelectionCandidate,
  type SelectionOptions,
  type SelectionResult,
  selectWeighting,
} from "./selection.ts";

/** Options of `bootstrapSelectionWeights`. */
export interface BootstrapWeightOptions {
  /** B, the number of resamples (an integer ≥ 1). */
  replicates: number;
  /** Seed of the resampling (the same seed gives the same π). */
  seed: number;
}

/**
 * π_c (module JSDoc) for per-point losses `losses[c][j]` of candidates c on val points j with labels `labels`:
 * B resamples, each drawing n_k points with replacement among the n_k of class k; ties go to the earliest
 * candidate. Returns `Float64Array` π (Σ π = 1). Throws `RangeError` on no candidates, a length mismatch or B < 1.
 */
export function bootstrapSelectionWeights(
  losses: readonly Float64Array[],
  labels: Int32Array,
  options: BootstrapWeightOptions,
): Float64Array {
  const { replicates, seed } = options, m = labels.length;
  if (!(Number.isInteger(replicates) && replicates >= 1)) {
    throw new RangeError(`bootstrapSelectionWeights: replicates must be an integer ≥ 1, got ${replicates}`);
  }
  if (losses.length === 0) throw new RangeError("bootstrapSelectionWeights: no candidates");
  const bad = losses.findIndex((l) => l.length !== m);
  if (bad >= 0) {
    throw new RangeError(
      `bootstrapSelectionWeights: candidate ${bad} has ${losses[bad].length} losses for ${m} labels`,
    );
  }
  const classes = new Map<number, number[]>();
  labels.forEach((y, j) => {
    if (!classes.has(y)) classes.set(y, []);
    classes.get(y)!.push(j);
  });
  const members = [...classes.values()], random = new Random(seed);
  const counts = new Float64Array(m), weights = new Float64Array(losses.length);
  for (let b = 0; b < replicates; b++) {
    counts.fill(0);
    for (const rows of members) for (let r = 0; r < rows.length; r++) counts[rows[random.int(rows.length)]]++;
    let best = 0, bestLoss = Infinity;
    losses.forEach((l, c) => {
      let sum = 0;
      for (let j = 0; j < m; j++) sum += counts[j] * l[j];
      if (sum < bestLoss) [best, bestLoss] = [c, sum];
    });
    weights[best]++;
  }
  return weights.map((w) => w / replicates);
}

/**
 * The bootstrap-weighted candidate (module JSDoc) scored against candidate 0 (α ≡ 1) by `selectWeighting`:
 * α_boot = Σ_c π_c α_c, labelled `{ weighting: "bootstrap mean", gamma: 0, step: 0, replicates, of }` (`of`
 * names the candidates with π_c > 0 and their π, largest first, with `describe`), π itself, and the two-row
 * selection between ERM and it. `losses[c]` are candidate c's per-point calibrated validation losses
 * (`CandidateScorer.pointLosses`). Throws `RangeError` when losses and candidates differ in number.
 */
export async function bootstrapAverageCandidates(
  train: LabeledFeatures,
  val: LabeledFeatures,
  candidates: readonly SelectionCandidate[],
  losses: readonly Float64Array[],
  options: SelectionOptions & BootstrapWeightOptions & {
    describe?: (label: SelectionCandidate["label"]) => string;
  },
): Promise<{ candidate: SelectionCandidate; weights: Float64Array; selection: SelectionResult }> {
  if (losses.length !== candidates.length) {
    throw new RangeError(
      `bootstrapAverageCandidates: ${losses.length} loss vectors for ${candidates.length} candidates`,
    );
  }
  const weights = bootstrapSelectionWeights(losses, val.labels, options);
  const alpha = new Float32Array(train.labels.length);
  weights.forEach((w, c) => {
    if (w > 0) candidates[c].alpha.forEach((a, i) => alpha[i] += w * a);
  });
  const describe = options.describe ?? ((label) => JSON.stringify(label));
  const members = [...weights.keys()].filter((c) => weights[c] > 0).sort((a, b) =>
    weights[b] - weights[a] || a - b
  );
  const candidate: SelectionCandidate = {
    alpha,
    label: {
      weighting: "bootstrap mean",
      gamma: 0,
      step: 0,
      replicates: options.replicates,
      of: members.map((c) => `${describe(candidates[c].label)} ${weights[c].toFixed(3)}`).join("; "),
    },
  };
  return {
    candidate,
    weights,
    selection: await selectWeighting(train, val, [candidates[0], candidate], options),
  };
}
