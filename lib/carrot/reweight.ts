/**
 * RRO, the representer reweighting objective: the method CARROT is named after.
 *
 *   minimise_α  F(α) = L_val(W*(α)) + γ R(α)   with  W*(α) = argmin_W J(W; α),
 *   subject to  α ≥ 0,  Σ_{i∈c} α_i = n_c  (class masses are kept),  ESS_c(α) = (Σ_{i∈c} α_i)² / Σ_{i∈c} α_i² ≥ ρ n_c,
 * for every (observed) training class c. Each outer step:
 *   1. refit the head from the previous W (weights and L-BFGS curvature; to `tol`, see "Inexact inner solves");
 *   2. g = ∂L_val/∂α by the chosen estimator, plus γ ∂R/∂α (`consistency.ts`):
 *      influence    Theorem B, one CG solve (exact up to `cgTol`);
 *      representer  Theorem B with H ≈ λI: g_i ≈ −(1/λ)(p_i − e_{y_i})ᵀ ∇_W L_val h_i. Derivation from β: at
 *                   stationarity W = Σ_i β_i h_iᵀ with β_i = −(α_i/λ)(p_i − e_{y_i}); holding the p_i fixed,
 *                   ∂W/∂α_i = β_i h_iᵀ/α_i, so ∂L_val/∂α_i ≈ ⟨∇_W L_val, β_i h_iᵀ⟩/α_i — exact when H = λI, i.e. it
 *                   ignores the data term of the Hessian (how the other points re-balance after the change);
 *      tracin       −TracIn-CP(i, L_val)/α_i over SGD checkpoints trained at the current α;
 *      trak         −mean_j τ(x_j, i) over the validation points (TRAK supports the margin, so it lowers the loss);
 *   3. a mirror-descent (exponentiated-gradient) step per class, α_i ← α_i exp(−η ĝ_i) with ĝ = g / max|g|
 *      (so η bounds the log-change of any α_i), rescaled to the class mass n_c — the KL projection onto the
 *      scaled simplex — then the Euclidean projection onto the ESS floor (below);
 *   4. backtracking: the step is accepted only if F decreased after the refit, else η is halved and retried
 *      (`maxHalvings` times). With the exact estimator and γ = 0, F = L_val is therefore non-increasing over outer
 *      steps (at each tolerance, below). When no halving decreases F, the solves are tightened and the step retried
 *      (below); once it fails at `finalTol` the run stops; it also stops after `patience` consecutive accepted
 *      steps that improved F by less than 1e-6 relative.
 *
 * Inexact inner solves (after Pedregosa, "Hyperparameter optimization with approximate gradient", ICML 2016). The
 * outer step uses g only through ĝ = g / max|g| and moves each log α_i by at most η, so a gradient accurate to
 * 0.1–1% moves α by as little; refits and CG solves therefore stop at relative tolerance 1e-3 inside the loop, each
 * warm-started (refits from the previous W and its L-BFGS pairs, CG from the previous solution s = H⁻¹∇L_val, which
 * changes where CG starts, not what it converges to). When no halving of a step descends, both tolerances are
 * divided by 100 (down to `finalTol`), the current head is refitted and re-evaluated and the step retried, as HOAG
 * tightens its tolerances: a refit warm-started at a loose relative tolerance can stop before it moves, and a loose
 * CG solve can point the wrong way, so "no descent" is only believed at `finalTol`. (On the CUB-sized cell of the
 * robustness grid, λ ≈ 0.32, every step failed at 1e-3 and the run stopped at α ≡ 1; at 1e-6 it descends.) Later
 * steps keep the tightened tolerances, and F is compared with the re-evaluated current point. The returned head is
 * then refitted to `finalTol` (1e-6), so it is stationary and Theorem A holds for it. On the CUB-sized preset (20
 * steps, `deno task bench reweight`) the whole call takes 53–59 s instead of 155–190 s with every solve to 1e-6,
 * with max |Δα_i| = 0.009 and the same test top-1.
 *
 * The ESS projection. With the mass fixed, Σ_{i∈c} α_i² = ‖α_c − 1‖² + n_c, so ESS_c ≥ ρ n_c ⇔
 * ‖α_c − 1‖² ≤ n_c (1/ρ − 1): a ball around the uniform weights inside the mass hyperplane. The Euclidean
 * projection of a point of the hyperplane onto it is the radial shrink α_c ← 1 + t(α_c − 1),
 * t = min(1, √(n_c(1/ρ − 1)) / ‖α_c − 1‖); it keeps the mass, and keeps α ≥ 0 because it is a convex combination
 * of α_c ≥ 0 and 1. So it is also the projection onto {α ≥ 0, mass, ESS} (the projection onto the larger set
 * already lies in the smaller one).
 */
import type * as tf from "@tensorflow/tfjs";
import type { LabeledFeatures } from "./labeled_features.ts";
import { disposeHead, fitHead, type HeadFit } from "./head.ts";
import { validationAlphaGradient } from "./influence.ts";
import { disposeCheckpoints, tracInValidation, trainTracInCheckpoints } from "./tracin.ts";
import { trakScores } from "./trak.ts";
import { type ConsistencyOptions, consistencyRegularizer } from "./consistency.ts";
import { evaluateHead } from "./metrics.ts";
import { tuneLambda } from "./lambda.ts";

/** Default relative tolerance of the refits and CG solves inside the outer loop ("Inexact inner solves"). */
const LOOP_TOL = 1e-3;

/** How g = ∂L_val/∂α is estimated. */
export type ReweightEstimator = "influence" | "representer" | "tracin" | "trak";

/** Outer steps of `reweight` when `outerSteps` is not given. */
export const defaultReweightOuterSteps = 20;

/** Options of `reweight`, with their defaults. */
export interface ReweightOptions {
  /** λ; when absent it is tuned on val over `lambdaGrid` for the ERM head (α = 1) and reused. */
  lambda?: number;
  /** Grid for that tuning (default `defaultLambdaGrid` of lambda.ts). */
  lambdaGrid?: readonly number[];
  /** K (default: inferred from the labels). */
  numClasses?: number;
  /** Estimator of g (default "influence"). */
  estimator?: ReweightEstimator;
  /** η, the largest log-change of any α_i per step (default 1). */
  stepSize?: number;
  /** ESS floor ρ ∈ [0, 1] (default 0.5; 0 disables the floor). */
  rho?: number;
  /** Weight γ ≥ 0 of the consistency regulariser (default 0). */
  gamma?: number;
  /** Options of that regulariser (default its "pairwise" form; see `consistency.ts` for why "own-class"). */
  consistency?: ConsistencyOptions;
  /** Outer steps (default `defaultReweightOuterSteps`, 20). */
  outerSteps?: number;
  /** Stop after this many accepted steps in a row that improve F by < 1e-6 relative (default 3). */
  patience?: number;
  /** Step halvings tried before giving up on a step (default 6). */
  maxHalvings?: number;
  /**
   * Relative-gradient tolerance of the refits inside the outer loop (default 1e-3; see "Inexact inner solves" in the
   * module JSDoc).
   */
  tol?: number;
  /** CG tolerance of the estimator "influence" inside the loop (default 1e-3). */
  cgTol?: number;
  /**
   * Tolerance of the returned head, refitted to it after the loop, and of the λ tuning when `lambda` is not given
   * (default 1e-6). A given λ's ERM start is the loop's first point, fitted to `tol`.
   */
  finalTol?: number;
  /** Seed of the stochastic estimators (TracIn order, TRAK projections; default 0). */
  seed?: number;
  /** Called after every outer step with its trajectory entry and the α in use after it (a copy). */
  onStep?: (entry: TrajectoryEntry, alpha: Float32Array) => void;
}

/** One outer step (step 0 = the ERM start). */
export interface TrajectoryEntry {
  /** Outer step index (0 = the ERM start). */
  step: number;
  /** L_val at this step's head. */
  valLoss: number;
  /** Validation top-1 accuracy. */
  valAccuracy: number;
  /** F = L_val + γR. */
  objective: number;
  /** min_c ESS_c(α)/n_c. */
  essMin: number;
  /** ESS_c(α)/n_c per class (NaN for classes absent from train). */
  essPerClass: Float64Array;
  /** The accepted η (0 at step 0 and for a rejected step). */
  stepSize: number;
  /** Halvings needed before the step was accepted (or tried in vain). */
  halvings: number;
  /** Whether this step changed α. */
  accepted: boolean;
}

/** The reweighting result. */
export interface ReweightResult {
  /** Final α `[n]`. */
  alpha: Float32Array;
  /** The final head (as fitHead returns it, with its λ and α); the caller disposes it. */
  fit: HeadFit;
  /** λ used (given or tuned). */
  lambda: number;
  /** One entry per outer step, step 0 first. */
  trajectory: TrajectoryEntry[];
  /** Why the run ended. */
  stopReason: "outer steps" | "no descent step" | "patience";
}

/** ESS_c(α)/n_c for every class (NaN where n_c = 0). */
export function effectiveSampleSizes(
  alpha: Float32Array,
  labels: Int32Array,
  numClasses: number,
): Float64Array {
  const sum = new Float64Array(numClasses),
    squares = new Float64Array(numClasses),
    count = new Float64Array(numClasses);
  labels.forEach((c, i) => {
    sum[c] += alpha[i];
    squares[c] += alpha[i] * alpha[i];
    count[c]++;
  });
  return sum.map((s, c) => (count[c] > 0 ? s * s / squares[c] / count[c] : NaN));
}

/**
 * One constrained step: α_i exp(−η ĝ_i) per class, rescaled to the class mass n_c, then projected onto
 * ‖α_c − 1‖² ≤ n_c(1/ρ − 1) by the radial shrink towards 1 (see the module JSDoc). `g` need not be normalised.
 */
export function constrainedStep(
  alpha: Float32Array,
  g: Float32Array,
  labels: Int32Array,
  numClasses: number,
  stepSize: number,
  rho: number,
): Float32Array {
  let scale = 0;
  for (const v of g) scale = Math.max(scale, Math.abs(v));
  const next = Float64Array.from(alpha, (a, i) => a * Math.exp(scale > 0 ? -stepSize * g[i] / scale : 0));
  const mass = new Float64Array(numClasses), count = new Float64Array(numClasses);
  labels.forEach((c, i) => {
    mass[c] += next[i];
    count[c]++;
  });
  labels.forEach((c, i) => next[i] *= count[c] / mass[c]);
  if (rho > 0) {
    const deviation = new Float64Array(numClasses);
    labels.forEach((c, i) => deviation[c] += (next[i] - 1) ** 2);
    const shrink = deviation.map((dev, c) => {
      const radius = Math.sqrt(count[c] * (1 / rho - 1));
      return dev > radius * radius ? radius / Math.sqrt(dev) : 1;
    });
    labels.forEach((c, i) => next[i] = 1 + shrink[c] * (next[i] - 1));
  }
  return Float32Array.from(next);
}

/** The last Theorem-B solution s = H⁻¹∇L_val of a run, the warm start of the next solve. */
interface WarmStart {
  solution?: tf.Tensor2D;
}

/** ∂L_val/∂α `[n]` by the chosen estimator (see the module JSDoc). */
async function estimateGradient(
  fit: HeadFit,
  train: LabeledFeatures,
  val: LabeledFeatures,
  options: ReweightOptions,
  warm: WarmStart,
): Promise<Float32Array> {
  const estimator = options.estimator ?? "influence";
  if (estimator === "representer") {
    return (await validationAlphaGradient(fit, train, val, { solver: "identity" })).gradient;
  }
  if (estimator === "influence") {
    const result = await validationAlphaGradient(fit, train, val, {
      tol: options.cgTol ?? LOOP_TOL,
      initialSolution: warm.solution,
      keepSolution: true,
    });
    warm.solution?.dispose();
    warm.solution = result.solution;
    return result.gradient;
  }
  if (estimator === "tracin") {
    const checkpoints = await trainTracInCheckpoints(train, {
      lambda: fit.lambda,
      alpha: fit.alpha,
      numClasses: fit.numClasses,
      seed: options.seed,
    });
    const tracin = await tracInValidation(checkpoints, train, val);
    disposeCheckpoints(checkpoints);
    return tracin.map((v, i) => (fit.alpha[i] > 0 ? -v / fit.alpha[i] : 0));
  }
  const m = val.labels.length;
  const tau = await trakScores(fit, train, val, { seed: options.seed });
  return Float32Array.from({ length: fit.alpha.length }, (_, i) => {
    let s = 0;
    for (let j = 0; j < m; j++) s += tau[i * m + j];
    return -s / m;
  });
}

/** F = L_val + γR at a fit, and ∂F/∂α on demand (while the fit is alive). */
interface Evaluation {
  valLoss: number;
  valAccuracy: number;
  objective: number;
  gradient(): Promise<Float32Array>;
}

/** F at a fit: one evaluation path for every comparison; the gradient is computed only if a step needs it. */
async function evaluateObjective(
  fit: HeadFit,
  train: LabeledFeatures,
  val: LabeledFeatures,
  options: ReweightOptions,
  warm: WarmStart,
): Promise<Evaluation> {
  const gamma = options.gamma ?? 0;
  const metrics = await evaluateHead(fit, val);
  const consistency = gamma > 0
    ? await consistencyRegularizer(fit, train, val, options.consistency)
    : undefined;
  return {
    valLoss: metrics.nll,
    valAccuracy: metrics.accuracy,
    objective: metrics.nll + gamma * (consistency?.value ?? 0),
    gradient: async () => {
      const g = await estimateGradient(fit, train, val, options, warm);
      return consistency ? g.map((v, i) => v + gamma * consistency.gradient[i]) : g;
    },
  };
}

/**
 * Runs RRO (see the module JSDoc) from α = 1 on `train`, with the validation loss on `val`. Returns the final α,
 * the final head and one trajectory entry per outer step (step 0 = the ERM start).
 */
export async function reweight(
  train: LabeledFeatures,
  val: LabeledFeatures,
  options: ReweightOptions = {},
): Promise<ReweightResult> {
  const rho = options.rho ?? 0.5, eta0 = options.stepSize ?? 1;
  if (!(rho >= 0 && rho <= 1)) throw new RangeError(`reweight: rho must lie in [0, 1], got ${rho}`);
  if (!(eta0 > 0)) throw new RangeError(`reweight: stepSize must be > 0, got ${eta0}`);
  if (!((options.gamma ?? 0) >= 0)) throw new RangeError(`reweight: gamma must be ≥ 0, got ${options.gamma}`);
  let fit: HeadFit;
  if (options.lambda === undefined) {
    fit = (await tuneLambda(train, val, {
      grid: options.lambdaGrid,
      numClasses: options.numClasses,
      tol: options.finalTol,
    })).fit;
  } else { // the start is the loop's first point: fitted to the loop's tolerance, polished at the end like the rest
    fit = await fitHead(train, {
      lambda: options.lambda,
      numClasses: options.numClasses,
      tol: options.tol ?? LOOP_TOL,
    });
  }
  const k = fit.numClasses, labels = train.labels;
  let alpha = fit.alpha;
  const trajectory: TrajectoryEntry[] = [];
  const record = (
    step: number,
    at: { objective: number; valLoss: number; valAccuracy: number },
    stepSize: number,
    halvings: number,
    accepted: boolean,
  ) => {
    const essPerClass = effectiveSampleSizes(alpha, labels, k);
    const entry: TrajectoryEntry = {
      step,
      valLoss: at.valLoss,
      valAccuracy: at.valAccuracy,
      objective: at.objective,
      essMin: Math.min(...Array.from(essPerClass).filter(Number.isFinite)),
      essPerClass,
      stepSize,
      halvings,
      accepted,
    };
    trajectory.push(entry);
    options.onStep?.(entry, alpha.slice());
  };
  const warm: WarmStart = {};
  let stopReason: ReweightResult["stopReason"] = "outer steps";
  const finalTol = options.finalTol ?? 1e-6;
  let tol = options.tol ?? LOOP_TOL, cgTol = options.cgTol ?? LOOP_TOL;
  const evaluate = (head: HeadFit) => evaluateObjective(head, train, val, { ...options, cgTol }, warm);
  try {
    let current = await evaluate(fit);
    record(0, current, 0, 0, true);
    let stalled = 0;
    for (let step = 1; step <= (options.outerSteps ?? defaultReweightOuterSteps); step++) {
      let eta = eta0, halvings = 0;
      let accepted: { fit: HeadFit; alpha: Float32Array; at: Evaluation } | undefined;
      for (;;) {
        const gradient = await current.gradient();
        for (eta = eta0, halvings = 0; halvings <= (options.maxHalvings ?? 6); halvings++, eta /= 2) {
          const candidate = constrainedStep(alpha, gradient, labels, k, eta, rho);
          const refit = await fitHead(train, {
            lambda: fit.lambda,
            alpha: candidate,
            numClasses: k,
            init: fit,
            tol,
          });
          const at = await evaluate(refit);
          if (at.objective < current.objective) {
            accepted = { fit: refit, alpha: candidate, at };
            break;
          }
          disposeHead(refit);
        }
        if (accepted || Math.max(tol, cgTol) <= finalTol) break;
        // no halving descended with the inexact solves: tighten them 100× (HOAG's decreasing tolerances), refit the
        // current point and retry, until the step fails at finalTol
        [tol, cgTol] = [Math.max(finalTol, tol / 100), Math.max(finalTol, cgTol / 100)];
        const sharper = await fitHead(train, { lambda: fit.lambda, alpha, numClasses: k, init: fit, tol });
        disposeHead(fit);
        fit = sharper;
        current = await evaluate(fit);
      }
      if (!accepted) {
        record(step, current, 0, halvings, false);
        stopReason = "no descent step";
        break;
      }
      const previous = current.objective;
      disposeHead(fit);
      [fit, alpha, current] = [accepted.fit, accepted.alpha, accepted.at];
      record(step, current, eta, halvings, true);
      stalled = previous - current.objective < 1e-6 * Math.abs(previous) ? stalled + 1 : 0;
      if (stalled >= (options.patience ?? 3)) {
        stopReason = "patience";
        break;
      }
    }
    if (fit.relativeGradNorm > finalTol) {
      const polished = await fitHead(train, {
        lambda: fit.lambda,
        alpha,
        numClasses: k,
        init: fit,
        tol: finalTol,
      });
      disposeHead(fit);
      fit = polished;
    }
  } finally {
    warm.solution?.dispose();
  }
  return { alpha, fit, lambda: fit.lambda, trajectory, stopReason };
}
