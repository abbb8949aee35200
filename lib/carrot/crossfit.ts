/**
 * Cross-fitted reweighting: the outer objective of CARROT's default, a held-out loss over the *training* set.
 *
 * Why. RRO minimises L_val(W*(α)) over n free weights. With 3–10 validation images per class that objective is
 * estimated from a few hundred points and the outer loop memorises them (validation accuracy climbs while test
 * accuracy falls). Cross-fitting replaces it by a held-out loss on thousands of points: split train into F
 * stratified folds; head k is fitted on every fold but k, and scored on fold k, which it never saw:
 *
 *   L_cf(α) = (1/F) Σ_k  Σ_{j∈k} w_j ℓ_j(W*_{−k}(α)) / Σ_{j∈k} w_j,
 *   W*_{−k}(α) = argmin_W Σ_{i∉k} α_i ℓ_i(W) + (λ/2)‖W‖²_F.
 *
 * A training point i is scored only by the F − 1 heads that were fitted *with* it, on points it was not fitted
 * on, so the outer signal cannot be lowered by fitting a point to itself. The held-out labels are the (noisy)
 * training labels: under within-class-majority noise a mislabelled point still raises the held-out loss of the
 * clean majority of its observed class, so the expected gradient keeps its sign (it is the influence on a noisy
 * but unbiased-in-argmax risk); the validation set is left to *select* and to *veto* (`selection.ts`).
 *
 * Held-out weights w. "uniform" (w = 1): L_cf is the plain cross-fitted loss. Its optimum still leaves weight on
 * noisy points, because their held-out copies (noisy too) reward a head that fits the noise. "self" (w = α, and
 * differentiated as such): a held-out point counts as much as the training set trusts it, so a mislabelled held-out
 * point that its fold head cannot predict is itself down-weighted and stops voting for the training points that
 * agree with it. The derivative in its own weight is its out-of-fold loss against the fold mean — the
 * cross-validated small-loss signal — added to the influence of the training points on the others. Both are fixed
 * functions of α, so accepted steps decrease L_cf monotonically. Self-weighting cleans harder but, at heavy noise,
 * can concentrate a class's mass on its easiest points; CARROT runs both paths and lets the selection choose.
 *
 * Gradient (Theorem B per fold, one CG solve each): with g^{(k)} = ∂L_k/∂α on the training part of fold k,
 *   ∂L_cf/∂α_i = (1/F) Σ_{k : i∉k} g^{(k)}_i  [+ (1/F)(ℓ_i − L_{k(i)}) / Σ_{j∈k(i)} α_j  for "self"],
 *   g^{(k)}_i = −(p_i − e_{y_i})ᵀ H_{−k}⁻¹ ∇_W L_k h_i   (at W*_{−k}, ∇_W L_k of the w-weighted fold loss),
 * where k(i) is i's own fold. `crossFitObjective` exposes L_cf and this gradient for finite-difference checks.
 *
 * The step is RRO's (`constrainedStep`: exponentiated gradient per class, class masses kept, ESS floor ρ) with
 * backtracking on L_cf; every fold head is warm-started from its previous fit (weights and L-BFGS curvature).
 */
import * as tf from "@tensorflow/tfjs";
import { inferNumClasses, type LabeledFeatures } from "./labeled_features.ts";
import { cloneHead, disposeHead, fitHead, type HeadFit, headLogits } from "./head.ts";
import { validationAlphaGradient } from "./influence.ts";
import { type ConsistencyOptions, consistencyRegularizer } from "./consistency.ts";
import { constrainedStep, effectiveSampleSizes } from "./reweight.ts";
import { Random } from "../random.ts";
import { selectRows } from "../split.ts";
import { readValues } from "./_reads.ts";

/** How the held-out points of a fold are weighted in L_cf (see the module JSDoc). */
export type HeldOutWeighting = "uniform" | "self";

/** Options of `crossFitReweight`, with their defaults. */
export interface CrossFitOptions {
  /** λ of every fold head (the ERM head's, usually). */
  lambda: number;
  /** K (default: inferred from the labels). */
  numClasses?: number;
  /** Number of folds F ≥ 2 (default 5). */
  folds?: number;
  /** η, the largest log-change of any α_i per step (default 3). */
  stepSize?: number;
  /** ESS floor ρ ∈ [0, 1] (default 0.3). */
  rho?: number;
  /** Outer steps (default 6). */
  outerSteps?: number;
  /** Step halvings tried before giving up on a step (default 4). */
  maxHalvings?: number;
  /** Held-out weights (default "self"). */
  heldOutWeighting?: HeldOutWeighting;
  /** Weight γ ≥ 0 of the consistency regulariser, evaluated per fold on the held-out points (default 0). */
  gamma?: number;
  /** Options of that regulariser (`consistency.ts`; `carrotReweight` defaults to the "own-class" form). */
  consistency?: ConsistencyOptions;
  /**
   * Relative-gradient tolerance of every fold refit (default 1e-5: the held-out losses compared by the line search
   * move by O(tol²), far below the steps' decreases).
   */
  tol?: number;
  /** CG tolerance of each fold's Theorem-B solve (default 1e-4: the gradient's direction is what the step uses). */
  cgTol?: number;
  /** Seed of the fold assignment (default 0). */
  seed?: number;
  /** Warm start of the first fold fits, e.g. the ERM head on all of train `[K, d+1]` (not consumed; default 0). */
  init?: tf.Tensor2D;
  /**
   * Resume a path: start at this α, numbered as this step (default α ≡ 1 at step 0). Its first trajectory entry
   * is the starting point again; `outerSteps` more steps follow.
   */
  start?: { alpha: Float32Array; step: number };
  /** Called after every outer step with its trajectory entry. */
  onStep?: (entry: CrossFitStep) => void;
  /**
   * Step 0 shared by paths that start at α ≡ 1 with the same folds, λ and warm start (`SharedStart`): the first such
   * path fills it, the others reuse it. Ignored with `start`.
   */
  shared?: SharedStart;
}

/** One outer step of the cross-fitted objective (step 0 = α ≡ 1). */
export interface CrossFitStep {
  /** Outer step index. */
  step: number;
  /** α after this step `[n]` (unchanged by a rejected step). */
  alpha: Float32Array;
  /** L_cf at α (with the held-out weights the step was taken with). */
  objective: number;
  /** min_c ESS_c(α)/n_c. */
  essMin: number;
  /** The accepted η (0 at step 0 and for a rejected step). */
  stepSize: number;
  /** Halvings needed before the step was accepted (or tried in vain). */
  halvings: number;
  /** Whether this step changed α. */
  accepted: boolean;
  /** Out-of-fold loss ℓ_i(W*_{−k(i)}(α)) of every training point `[n]`, at this step's α. */
  heldOutLosses: Float32Array;
}

/** One fold's evaluation at α ≡ 1: its held-out losses, its Theorem-B gradient and solve (see `SharedStart`). */
export interface FoldAtOne {
  /** ℓ_j(W*_{−k}(1)) of the fold's held-out points. */
  losses: Float32Array;
  /** g^{(k)} on the fold's training part, held-out weights 1. */
  indirect: Float32Array;
  /** s_k = H_k⁻¹ ∇L_k, the next CG solve's warm start (owned by the `SharedStart`). */
  solution: tf.Tensor2D;
}

/**
 * Step 0 of the paths that start at α ≡ 1, computed by the first and reused by the rest. At α ≡ 1 every held-out
 * weight is 1 whichever the weighting ("uniform" or "self"), so the fold heads W*_{−k}(1), their held-out losses
 * and each fold's Theorem-B term g^{(k)} (one CG solve) are the same for every path; only the self-weighting's
 * direct term and γ's regulariser differ, and those are recomputed per path. Each path gets its own copies of the
 * fold heads and CG solutions, so its steps are exactly those it would take alone. Free it with `dispose`.
 */
export class SharedStart {
  #key = "";
  #init: tf.Tensor2D | undefined;
  #train: LabeledFeatures | undefined;
  /** The fold heads W*_{−k}(1), owned here (each path refits from its own copies). */
  fits: HeadFit[] = [];
  /** Per fold k: its held-out losses, g^{(k)} and CG solution at α ≡ 1. */
  folds: FoldAtOne[] = [];

  /** Throws unless `options` are those of the path that filled it (the first call sets them). */
  check(train: LabeledFeatures, options: CrossFitOptions & { numClasses: number }): void {
    const key = [
      options.seed ?? 0,
      options.folds ?? 5,
      options.lambda,
      options.numClasses,
      options.tol,
      options.cgTol,
    ].join("|");
    if (this.#key === "") [this.#key, this.#init, this.#train] = [key, options.init, train];
    const same = train.features === this.#train?.features && train.labels === this.#train?.labels;
    if (key !== this.#key || options.init !== this.#init || !same) {
      throw new RangeError(
        "crossFitReweight: a SharedStart serves paths with the same training set, fold seed, folds, λ, " +
          "tolerances and warm start; create one per setting",
      );
    }
  }

  /** Frees the fold heads and solutions. */
  dispose(): void {
    this.fits.forEach(disposeHead);
    tf.dispose(this.folds.map((fold) => fold.solution));
    [this.fits, this.folds] = [[], []];
  }
}

/** The cross-fitted run: one entry per outer step, and the fold of every training point. */
export interface CrossFitResult {
  /** Step 0 (α ≡ 1) first; the last entry holds the final α. */
  trajectory: CrossFitStep[];
  /** Fold index of each training point `[n]`. */
  folds: Int32Array;
  /** Why the run ended. */
  stopReason: "outer steps" | "no descent step";
}

/**
 * Stratified fold assignment: per class (in class order) a seeded permutation of its members is dealt to folds
 * 0, 1, …, F−1 in turn, starting at a fold that rotates from class to class so fold sizes differ by at most one.
 */
export function stratifiedFolds(labels: Int32Array, folds: number, seed: number): Int32Array {
  if (!(Number.isInteger(folds) && folds >= 2)) {
    throw new RangeError(`stratifiedFolds: folds must be an integer ≥ 2, got ${folds}`);
  }
  const byClass = new Map<number, number[]>();
  labels.forEach((c, i) => byClass.set(c, [...(byClass.get(c) ?? []), i]));
  const rng = new Random(seed), assignment = new Int32Array(labels.length);
  let next = 0;
  for (const c of [...byClass.keys()].sort((a, b) => a - b)) {
    const members = byClass.get(c)!, order = rng.permutation(members.length);
    for (let q = 0; q < members.length; q++) assignment[members[order[q]]] = (next + q) % folds;
    next = (next + members.length) % folds;
  }
  return assignment;
}

/** The per-fold splits (features gathered once; `dispose` frees them). */
interface FoldSplits {
  parts: { inside: Int32Array; heldOut: Int32Array; train: LabeledFeatures; test: LabeledFeatures }[];
  dispose(): void;
}

function foldSplits(train: LabeledFeatures, folds: Int32Array, count: number): FoldSplits {
  const all = Int32Array.from(train.labels.keys());
  const parts = Array.from({ length: count }, (_, k) => {
    const inside = all.filter((i) => folds[i] !== k), heldOut = all.filter((i) => folds[i] === k);
    return { inside, heldOut, train: selectRows(train, inside), test: selectRows(train, heldOut) };
  });
  return {
    parts,
    dispose: () => parts.forEach((p) => tf.dispose([p.train.features, p.test.features])),
  };
}

/** Refits every fold head at `alpha`, warm-started from `previous` (not consumed). */
async function refitFolds(
  splits: FoldSplits,
  alpha: Float32Array,
  previous: readonly (HeadFit | tf.Tensor2D | undefined)[],
  options: CrossFitOptions & { numClasses: number },
): Promise<HeadFit[]> {
  const fits: HeadFit[] = [];
  try {
    for (const [k, part] of splits.parts.entries()) {
      fits.push(
        await fitHead(part.train, {
          lambda: options.lambda,
          alpha: Float32Array.from(part.inside, (i) => alpha[i]),
          numClasses: options.numClasses,
          init: previous[k],
          tol: options.tol ?? 1e-5,
        }),
      );
    }
  } catch (error) {
    fits.forEach(disposeHead);
    throw error;
  }
  return fits;
}

/** ℓ_j = −log softmax(W h_j)_{y_j} for every row of `data` `[m]`. */
async function pointLosses(fit: HeadFit, data: LabeledFeatures): Promise<Float32Array> {
  const losses = tf.tidy(() =>
    tf.neg(
      tf.sum(
        tf.mul(
          tf.logSoftmax(headLogits(fit, data.features)),
          tf.oneHot(tf.tensor1d(data.labels, "int32"), fit.numClasses),
        ),
        1,
      ),
    )
  );
  const values = (await readValues(losses)) as Float32Array;
  losses.dispose();
  return values;
}

/** Options of `visitFoldHeads` and `outOfFoldLosses`. */
export type FoldHeadOptions = Pick<CrossFitOptions, "lambda" | "numClasses" | "folds" | "init" | "tol"> & {
  /** Training weights of every fold head `[n]` (default α ≡ 1). */
  alpha?: Float32Array;
};

/**
 * Fits, for each stratified fold assignment of `seeds` and each fold k of it, the head W*_{−k}(α) on every fold but k
 * and hands it to `visit` with the indices of its held-out points and their rows; each head is freed after its
 * visit. The building block of the out-of-fold scores (`outOfFoldLosses`, `noiseRateEvidence`).
 */
export async function visitFoldHeads(
  train: LabeledFeatures,
  seeds: readonly number[],
  options: FoldHeadOptions,
  visit: (fit: HeadFit, heldOut: Int32Array, rows: LabeledFeatures) => Promise<void>,
): Promise<void> {
  if (seeds.length === 0) {
    throw new RangeError("visitFoldHeads: seeds is empty; give at least one fold assignment");
  }
  const numClasses = options.numClasses ?? inferNumClasses(train.labels), count = options.folds ?? 5;
  const n = train.labels.length, alpha = options.alpha ?? new Float32Array(n).fill(1);
  if (alpha.length !== n) {
    throw new RangeError(`visitFoldHeads: alpha has ${alpha.length} entries for ${n} training points`);
  }
  for (const seed of seeds) {
    const splits = foldSplits(train, stratifiedFolds(train.labels, count, seed), count);
    try {
      const fits = await refitFolds(splits, alpha, splits.parts.map(() => options.init), {
        ...options,
        numClasses,
      });
      try {
        for (const [k, part] of splits.parts.entries()) await visit(fits[k], part.heldOut, part.test);
      } finally {
        fits.forEach(disposeHead);
      }
    } finally {
      splits.dispose();
    }
  }
}

/**
 * Out-of-fold losses at α (default α ≡ 1), averaged over the stratified fold assignments of `seeds` (repeated
 * cross-fitting):
 *
 *   ℓ̄_i = (1/R) Σ_r ℓ_i(W*_{−k_r(i)}(α)),   W*_{−k}(α) fitted with weights α on every fold of assignment r but k,
 *
 * where k_r(i) is i's fold in assignment r. Each term still comes from a head that never saw i; averaging over R
 * partitions removes the variance that one random partition adds to i's score (which points share i's fold decides
 * which head judges it), as repeated sample splitting does for cross-fitted estimators.
 */
export async function outOfFoldLosses(
  train: LabeledFeatures,
  seeds: readonly number[],
  options: FoldHeadOptions,
): Promise<Float32Array> {
  const sum = new Float64Array(train.labels.length); // visitFoldHeads refuses empty seeds and a wrong-length α
  await visitFoldHeads(train, seeds, options, async (fit, heldOut, rows) => {
    const losses = await pointLosses(fit, rows);
    heldOut.forEach((i, q) => sum[i] += losses[q]);
  });
  return Float32Array.from(sum, (total) => total / seeds.length);
}

/**
 * Each fold's last Theorem-B solution s_k = H_k⁻¹ ∇L_k, the warm start of its next CG solve (α moves little between
 * outer steps, so s_k does too; the solve still runs to `cgTol`).
 */
type WarmSolutions = (tf.Tensor2D | undefined)[];

/**
 * L_cf (+ γR) at the fold heads and, when `warm` is given, its gradient `[n]`: the indirect term by Theorem B (one CG solve
 * per fold), for self-weighting the direct term (ℓ_j − L_k)/Σ_{j′∈k} α_{j′} of each held-out point j of fold k, and
 * γ ∂R_k/∂α with R_k the consistency regulariser of fold head k on its held-out points (`consistency.ts`).
 */
async function crossFitLoss(
  splits: FoldSplits,
  fits: readonly HeadFit[],
  alpha: Float32Array,
  options: CrossFitOptions,
  warm: WarmSolutions | undefined,
  atOne?: FoldAtOne[],
): Promise<{ value: number; gradient?: Float32Array; heldOutLosses: Float32Array }> {
  const weighting = options.heldOutWeighting ?? "self", gamma = options.gamma ?? 0;
  const count = splits.parts.length;
  const gradient = warm ? new Float32Array(alpha.length) : undefined;
  const heldOutLosses = new Float32Array(alpha.length);
  let value = 0;
  for (const [k, part] of splits.parts.entries()) {
    const weights = weighting === "self"
      ? Float32Array.from(part.heldOut, (i) => alpha[i])
      : new Float32Array(part.heldOut.length).fill(1);
    const total = weights.reduce((sum, w) => sum + w, 0);
    const losses = atOne?.[k]?.losses ?? await pointLosses(fits[k], part.test);
    part.heldOut.forEach((i, q) => heldOutLosses[i] = losses[q]);
    const foldLoss = losses.reduce((sum, l, q) => sum + weights[q] * l, 0) / total;
    value += foldLoss / count;
    if (!warm || !gradient) continue;
    const indirect = atOne?.[k]
      ? { gradient: atOne[k].indirect, solution: atOne[k].solution.clone() }
      : await validationAlphaGradient(fits[k], part.train, part.test, {
        valWeights: weights,
        tol: options.cgTol ?? 1e-4,
        initialSolution: warm[k],
        keepSolution: true,
      });
    if (atOne && !atOne[k]) {
      atOne[k] = { losses, indirect: indirect.gradient, solution: indirect.solution!.clone() };
    }
    warm[k]?.dispose();
    warm[k] = indirect.solution;
    part.inside.forEach((i, q) => gradient[i] += indirect.gradient[q] / count);
    if (weighting === "self") {
      part.heldOut.forEach((i, q) => gradient[i] += (losses[q] - foldLoss) / total / count);
    }
  }
  for (const [k, part] of (gamma > 0 ? splits.parts : []).entries()) {
    const r = await consistencyRegularizer(fits[k], part.train, part.test, options.consistency);
    value += gamma * r.value / count;
    if (gradient) part.inside.forEach((i, q) => gradient[i] += gamma * r.gradient[q] / count);
  }
  return { value, gradient, heldOutLosses };
}

/**
 * L_cf(α) and ∂L_cf/∂α `[n]` at one α (every fold head fitted from scratch): the objective and gradient
 * `crossFitReweight` descends, exposed for checks against finite differences and for diagnostics.
 */
export async function crossFitObjective(
  train: LabeledFeatures,
  alpha: Float32Array,
  options: CrossFitOptions,
): Promise<{ value: number; gradient: Float32Array; folds: Int32Array }> {
  const numClasses = options.numClasses ?? inferNumClasses(train.labels), count = options.folds ?? 5;
  const folds = stratifiedFolds(train.labels, count, options.seed ?? 0);
  const splits = foldSplits(train, folds, count);
  const fits = await refitFolds(splits, alpha, splits.parts.map(() => options.init), {
    ...options,
    numClasses,
  })
    .catch((error) => {
      splits.dispose();
      throw error;
    });
  const warm: WarmSolutions = [];
  try {
    const { value, gradient } = await crossFitLoss(splits, fits, alpha, options, warm);
    return { value, gradient: gradient!, folds };
  } finally {
    tf.dispose(warm.filter((s) => s !== undefined));
    fits.forEach(disposeHead);
    splits.dispose();
  }
}

/**
 * Minimises the cross-fitted held-out loss L_cf(α) (see the module JSDoc) from α ≡ 1 (or `start`) under RRO's
 * constraints, with backtracking. Returns every step's α so that a caller can select among them on data the gradient never saw.
 */
export async function crossFitReweight(
  train: LabeledFeatures,
  options: CrossFitOptions,
): Promise<CrossFitResult> {
  const numClasses = options.numClasses ?? inferNumClasses(train.labels);
  const count = options.folds ?? 5, rho = options.rho ?? 0.3, eta0 = options.stepSize ?? 3;
  if (!(rho >= 0 && rho <= 1)) throw new RangeError(`crossFitReweight: rho must lie in [0, 1], got ${rho}`);
  if (!(eta0 > 0)) throw new RangeError(`crossFitReweight: stepSize must be > 0, got ${eta0}`);
  const folds = stratifiedFolds(train.labels, count, options.seed ?? 0);
  const splits = foldSplits(train, folds, count);
  const resolved = { ...options, numClasses };
  let alpha: Float32Array = options.start?.alpha ?? new Float32Array(train.labels.length).fill(1);
  const first = options.start?.step ?? 0;
  let fits: HeadFit[] = [];
  let current: Awaited<ReturnType<typeof crossFitLoss>>;
  const trajectory: CrossFitStep[] = [];
  const record = (entry: Omit<CrossFitStep, "essMin" | "alpha" | "heldOutLosses">) => {
    const ess = Array.from(effectiveSampleSizes(alpha, train.labels, numClasses)).filter(Number.isFinite);
    const full: CrossFitStep = {
      ...entry,
      alpha,
      essMin: Math.min(...ess),
      heldOutLosses: current.heldOutLosses,
    };
    trajectory.push(full);
    options.onStep?.(full);
  };
  let stopReason: CrossFitResult["stopReason"] = "outer steps";
  const warm: WarmSolutions = [];
  try {
    const shared = options.start ? undefined : options.shared;
    shared?.check(train, resolved);
    if (shared?.fits.length) fits = shared.fits.map(cloneHead);
    else {
      fits = await refitFolds(splits, alpha, splits.parts.map(() => options.init), resolved);
      if (shared) shared.fits = fits.map(cloneHead);
    }
    current = await crossFitLoss(splits, fits, alpha, options, warm, shared?.folds);
    record({ step: first, objective: current.value, stepSize: 0, halvings: 0, accepted: true });
    for (let step = first + 1; step <= first + (options.outerSteps ?? 6); step++) {
      let eta = eta0, halvings = 0, accepted: { alpha: Float32Array; fits: HeadFit[] } | undefined;
      for (; halvings <= (options.maxHalvings ?? 4); halvings++, eta /= 2) {
        const candidate = constrainedStep(alpha, current.gradient!, train.labels, numClasses, eta, rho);
        const trialFits = await refitFolds(splits, candidate, fits, resolved);
        if ((await crossFitLoss(splits, trialFits, candidate, options, undefined)).value < current.value) {
          accepted = { alpha: candidate, fits: trialFits };
          break;
        }
        trialFits.forEach(disposeHead);
      }
      if (!accepted) {
        record({ step, objective: current.value, stepSize: 0, halvings, accepted: false });
        stopReason = "no descent step";
        break;
      }
      fits.forEach(disposeHead);
      ({ alpha, fits } = accepted);
      current = await crossFitLoss(splits, fits, alpha, options, warm);
      record({ step, objective: current.value, stepSize: eta, halvings, accepted: true });
    }
  } finally {
    tf.dispose(warm.filter((s) => s !== undefined));
    fits.forEach(disposeHead);
    splits.dispose();
  }
  return { trajectory, folds, stopReason };
}
