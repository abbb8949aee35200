/**
 * Limited-memory BFGS for convex objectives, on tfjs tensors (private to `lib/carrot/`).
 *
 * Nocedal & Wright, Numerical Optimization (2nd ed.): two-loop recursion (Alg. 7.4) with H₀ = γ M⁻¹,
 * γ = sᵀy / yᵀM⁻¹y of the newest pair (M = I unless a preconditioner is given: preconditioned L-BFGS), and a Wolfe
 * line search (c₁ = 1e-4, c₂ = 0.9) that brackets on the directional derivative (see `lineSearch`).
 *
 * Reads are the cost model (`_reads.ts`): the iterate, gradient, history and the two-loop recursion
 * (`_lbfgs_vectors.ts`) stay on the backend, and each line-search trial is ONE read of a packed tensor
 * [J, φ′(t), ‖∇J‖², φ′(0), sᵀy, yᵀy, sᵀs, t];
 * the start costs one more (J, ‖∇J‖² and the caller's `extras`). When the objective can evaluate its line cheaply
 * (`LbfgsObjective.line`: for the head, logits are affine in W), the first trial of every iteration is decided
 * on the device without a read: t = 1 when φ′(1) ∈ [−c₂, c₃]·|φ′(0)|, else the secant root of φ′ through 0 and 1
 * (clamped to [0.1, 4], the moves the CPU search would make); only that point is evaluated and read — so an
 * iteration costs one read and one gradient whether or not the unit step was taken. The updated data carry
 * rounding that adds up: after 16 line-updated steps in a row the next iteration starts with a full evaluation
 * (it was the gradient floor of small-λ fits: drifted logits held ‖∇J‖ 40× above the tolerance), and a point
 * reached through more than 16 is re-evaluated before it is reported. Pairs with sᵀy ≤ 1e-10‖s‖‖y‖
 * (non-positive curvature in float32) are skipped and counted. In float32 the gradient eventually stops improving:
 * that is the precision floor, and the solver stops there (in `stallIterations` steps neither a new best ‖∇J‖ nor a
 * new best J by more than 1e-6|J|, or no acceptable step) and says so. Both count as progress because on ill-conditioned problems ‖∇J‖ can stall for dozens of steps while
 * J still falls: a gradient-only test stopped such fits at relative ‖∇J‖ 4e-4, far above the floor.
 */
import * as tf from "@tensorflow/tfjs";
import { yieldToEventLoop } from "../_yield.ts";
import { readPacked, type ReadTally } from "./_reads.ts";
import { type CurvaturePair, difference, readWithInnerProducts, twoLoopDirection } from "./_lbfgs_vectors.ts";

export type { CurvaturePair };

const c1 = 1e-4, c2 = 0.9, c3 = 0.8;
/** Line-updated steps in a row after which the next iteration, and the reported point, are fully evaluated. */
const maxLineSteps = 16;

/** One evaluation on the backend (owned by the caller of `evaluate`): J, ∇J and what the objective keeps at x. */
export interface DeviceEvaluation {
  value: tf.Scalar;
  gradient: tf.Tensor2D;
  /** The objective's own data at x for `line` (the head: its logits). */
  cache?: tf.Tensor[];
}

/** The line x + t·d through an evaluated point, as `LbfgsObjective.line` returns it. */
export interface DeviceLine {
  /** φ′(1) = ∇J(x + d)ᵀd. */
  slopeAtUnit: tf.Scalar;
  /**
   * The evaluation at `point` = x + t·d for a scalar tensor t, from the line's data (e.g. logits updated as
   * z + t·z_d rather than recomputed: rounding adds up over many iterations, so the solver re-evaluates the
   * final point with `evaluate` before it reports it when more than 16 steps in a row were line-updated).
   */
  at(t: tf.Scalar, point: tf.Tensor2D): DeviceEvaluation;
  /** Frees the line's tensors. */
  dispose(): void;
}

/** The function to minimise: evaluations, and optionally cheap lines (see the module JSDoc). */
export interface LbfgsObjective {
  /** J(x), ∇J(x) and the cache at x. */
  evaluate(x: tf.Tensor2D): DeviceEvaluation;
  /** The line from x (with its `cache`) along d; without it every trial is a full `evaluate`. */
  line?(x: tf.Tensor2D, cache: tf.Tensor[], direction: tf.Tensor2D): DeviceLine;
}

/** Options of `minimizeLbfgs`. */
export interface LbfgsOptions {
  /**
   * Stop when ‖∇J‖_F ≤ gradTol; a function receives the values of `extras` (read with the first evaluation) and
   * returns the tolerance, or throws to abort the run (its tensors are freed first).
   */
  gradTol: number | ((extras: Float32Array[]) => number | Promise<number>);
  /** Tensors read together with the first evaluation, in the same single read (not consumed). */
  extras?: tf.Tensor[];
  maxIter: number;
  /** History pairs kept (default 20). */
  memory?: number;
  /** Stop at the precision floor after this many steps without a new best ‖∇J‖ or J (module JSDoc; default 50). */
  stallIterations?: number;
  /**
   * Curvature pairs to start from (cloned, not consumed): a warm start from a nearby problem (e.g. after a small
   * change of α) reuses its predecessor's curvature model and needs a handful of steps instead of a cold ramp-up.
   */
  initialHistory?: CurvaturePair[];
  /**
   * v ↦ M⁻¹v for a symmetric positive definite M ≈ ∇²J (result owned by the caller): H₀ = γM⁻¹. When a direction
   * built on it is not a descent direction even without history, the preconditioner is dropped (reported).
   */
  preconditioner?: (v: tf.Tensor2D) => tf.Tensor2D;
  /** Counts this run's reads (in addition to the result's `reads`). */
  tally?: ReadTally;
  /** Called after every accepted step. */
  onIteration?: (iteration: number, value: number, gradNorm: number) => void;
}

/** The result: the final iterate and gradient (owned by the caller) and how the run ended. */
export interface LbfgsResult {
  x: tf.Tensor2D;
  value: number;
  gradient: tf.Tensor2D;
  gradNorm: number;
  iterations: number;
  evaluations: number;
  /** GPU→CPU reads of the run, the first one (start + extras) included. */
  reads: number;
  /** The values of `options.extras`, in order. */
  extras: Float32Array[];
  /** Curvature pairs rejected for sᵀy ≤ 1e-10‖s‖‖y‖ (not positive in float32). */
  skippedPairs: number;
  /** True when the preconditioner gave no descent direction and the run went on without it. */
  preconditionerDropped: boolean;
  stopReason: "gradient tolerance" | "max iterations" | "precision floor";
  /** The final curvature pairs (owned by the caller), for warm starts of nearby problems. */
  history: CurvaturePair[];
}

/** A point of the line x + t d: the step, what was read, and the tensors of the trial. */
interface Trial {
  step: number;
  value: number;
  slope: number;
  gradSquared: number;
  /** φ′(0) = ∇J(x)ᵀd, read with the trial (its own value is the same for every trial along d). */
  startSlope: number;
  sy: number;
  yy: number;
  ss: number;
  x: tf.Tensor2D;
  gradient: tf.Tensor2D;
  cache?: tf.Tensor[];
  /** From `evaluate` (true) or from the line's data (false). */
  fresh: boolean;
  s: tf.Tensor2D;
  y: tf.Tensor2D;
}

/** The accepted point of an iteration (the start of the next). */
interface Current {
  value: number;
  x: tf.Tensor2D;
  gradient: tf.Tensor2D;
  cache?: tf.Tensor[];
  /** Consecutive accepted steps whose value and gradient came from a line's data, not from `evaluate`. */
  lineSteps: number;
}

const sumProduct = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(a, b));

function disposeTrial(p: Trial | undefined, keep?: Trial): void {
  if (p && p !== keep) tf.dispose([p.x, p.gradient, p.s, p.y, ...(p.cache ?? [])]);
}

/**
 * Line search for a *convex* objective along a descent direction, driven by the directional derivative φ′(t).
 *
 * For convex φ, φ′ is non-decreasing, so (i) the line minimiser is bracketed by the sign of φ′ and (ii) any t with
 * φ′(t) ≤ c₁φ′(0) satisfies the Armijo condition exactly: φ(t) − φ(0) = ∫₀ᵗ φ′ ≤ t φ′(t) ≤ c₁ t φ′(0). Steps
 * slightly past the minimiser (0 < φ′(t) ≤ c₃|φ′(0)|) are accepted when φ(t) ≤ φ(0) + c₁tφ′(0) + ε|φ(0)|: the
 * approximate-Wolfe rule of Hager & Zhang (2005), which keeps working where float32 values of J stop resolving
 * decreases but gradients still do. The first trial is given; every further one is one read (`at`). Returns no
 * point when no acceptable step is found, or when the first trial shows that d is not a descent direction
 * (`notDescent`).
 */
async function lineSearch(
  at: (step: number) => Promise<Trial>,
  startValue: number,
  first: Trial,
): Promise<{ accepted?: Trial; notDescent: boolean }> {
  const epsilon = 1e-6, maxEvaluations = 40;
  let lo: Trial | undefined; // φ′(lo) < −c₂ s0 (undefined: t = 0)
  let hi: Trial | undefined; // φ′(hi) > 0 or rejected
  let step = first.step;
  for (let used = 0; used < maxEvaluations; used++) {
    const p = used === 0 ? first : await at(step);
    const s0 = -p.startSlope;
    if (!(s0 > 0)) {
      disposeTrial(p);
      disposeTrial(lo);
      return { notDescent: true };
    }
    const finite = Number.isFinite(p.value) && Number.isFinite(p.slope);
    const decrease = finite &&
      (p.slope <= -c1 * s0 || p.value <= startValue - c1 * step * s0 + epsilon * Math.abs(startValue));
    if (finite && decrease && p.slope >= -c2 * s0 && p.slope <= c3 * s0) {
      disposeTrial(lo);
      disposeTrial(hi);
      return { accepted: p, notDescent: false };
    }
    if (finite && p.slope < -c2 * s0) {
      disposeTrial(lo);
      lo = p;
    } else {
      disposeTrial(hi);
      hi = p;
    }
    const loStep = lo?.step ?? 0, loSlope = lo?.slope ?? -s0;
    if (!hi) {
      step *= 4;
    } else {
      // secant on φ′ (the root of the line through the bracket's slopes), kept in the inner 80% of the bracket
      const width = hi.step - loStep;
      const secant = Number.isFinite(hi.slope) && hi.slope > loSlope
        ? loStep - loSlope * width / (hi.slope - loSlope)
        : loStep + width / 2;
      step = Math.min(Math.max(secant, loStep + 0.1 * width), hi.step - 0.1 * width);
      if (width <= 1e-12 * hi.step) break;
    }
  }
  disposeTrial(hi);
  return { accepted: lo, notDescent: false }; // φ′(lo) < 0: a certified decrease, curvature not reached
}

/** Minimises a smooth convex function from `x0` (not consumed) with L-BFGS; see the module JSDoc. */
export async function minimizeLbfgs(
  objective: LbfgsObjective,
  x0: tf.Tensor2D,
  options: LbfgsOptions,
): Promise<LbfgsResult> {
  const m = options.memory ?? 20;
  const tally: ReadTally = { reads: 0 };
  const read = async (tensors: tf.Tensor[]) => {
    const values = await readPacked(tensors, tally);
    if (options.tally) options.tally.reads++;
    return values;
  };
  let preconditioner = options.preconditioner;
  let preconditionerDropped = false;
  const history: CurvaturePair[] = (options.initialHistory ?? []).slice(-m)
    .map((h) => ({ s: h.s.clone(), y: h.y.clone(), rho: h.rho }));
  // γ = sᵀy / yᵀM⁻¹y of the newest pair, kept on the backend (no read)
  const scaleOf = (pair: CurvaturePair): tf.Scalar =>
    tf.tidy(() => {
      const my = preconditioner ? preconditioner(pair.y) : pair.y;
      return tf.div(sumProduct(pair.s, pair.y), sumProduct(pair.y, my)) as tf.Scalar;
    });
  let gamma: tf.Scalar | undefined = history.length ? scaleOf(history[history.length - 1]) : undefined;
  const clearHistory = () => {
    for (const h of history) tf.dispose([h.s, h.y]);
    history.length = 0;
    gamma?.dispose();
    gamma = undefined;
  };
  let evaluations = 1;
  const xStart = x0.clone();
  const first = objective.evaluate(xStart);
  let current: Current = { value: 0, x: xStart, gradient: first.gradient, cache: first.cache, lineSteps: 0 };
  const disposeCurrent = () => tf.dispose([current.x, current.gradient, ...(current.cache ?? [])]);
  let gradNorm: number, gradTol: number, extras: Float32Array[];
  try {
    const norm = tf.tidy(() => tf.sum(tf.square(first.gradient)));
    const [value, squared, ...rest] = await read([first.value, norm, ...(options.extras ?? [])]);
    tf.dispose([norm, first.value]);
    current.value = value[0];
    gradNorm = Math.sqrt(squared[0]);
    extras = rest;
    gradTol = typeof options.gradTol === "function" ? await options.gradTol(extras) : options.gradTol;
  } catch (error) {
    clearHistory();
    disposeCurrent();
    first.value.dispose();
    throw error;
  }
  let iterations = 0, skippedPairs = 0;
  let best = gradNorm, bestValue = current.value, sinceBest = 0;
  let stopReason: LbfgsResult["stopReason"] = "max iterations";
  // re-evaluates the current point with `evaluate` (one read), so that what is reported is not line data
  const refresh = async () => {
    const e = objective.evaluate(current.x);
    evaluations++;
    const stats = tf.tidy(() => tf.stack([e.value, tf.sum(tf.square(e.gradient))]));
    const [v] = await read([stats]);
    tf.dispose([stats, e.value, current.gradient, ...(current.cache ?? [])]);
    current = { value: v[0], x: current.x, gradient: e.gradient, cache: e.cache, lineSteps: 0 };
    gradNorm = Math.sqrt(v[1]);
  };

  while (true) {
    await yieldToEventLoop(); // Ctrl-C during long fits
    if (gradNorm <= gradTol && current.lineSteps > maxLineSteps) await refresh(); // confirm on evaluated numbers
    if (gradNorm <= gradTol) {
      stopReason = "gradient tolerance";
      break;
    }
    if (iterations >= options.maxIter) break;
    // Two-loop recursion (`_lbfgs_vectors.ts`): direction = −H_k ∇J with H₀ = γ M⁻¹, no read; without history or
    // preconditioner the first step is scaled to length 1 (Nocedal & Wright's 1/‖∇J‖).
    const firstStep = history.length || preconditioner ? 1 : 1 / gradNorm;
    const direction = twoLoopDirection(current.gradient, history, { gamma, preconditioner, c: firstStep });
    const start = current;
    // one read of everything the line search and the history need about the point x + t·d
    const complete = async (
      step: number | tf.Scalar,
      e: DeviceEvaluation,
      x: tf.Tensor2D,
    ): Promise<Trial> => {
      evaluations++;
      const s = difference(x, start.x), y = difference(e.gradient, start.gradient);
      const pairs: [tf.Tensor, tf.Tensor][] = [
        [e.gradient, direction], // φ′(t)
        [e.gradient, e.gradient],
        [start.gradient, direction], // φ′(0)
        [s, y],
        [y, y],
        [s, s],
      ];
      const { scalars, products } = await readWithInnerProducts(
        read,
        typeof step === "number" ? [e.value] : [e.value, step],
        pairs,
      );
      e.value.dispose();
      const [slope, gradSquared, startSlope, sy, yy, ss] = products;
      return {
        step: typeof step === "number" ? step : scalars[1],
        value: scalars[0],
        slope,
        gradSquared,
        startSlope,
        sy,
        yy,
        ss,
        x,
        gradient: e.gradient,
        cache: e.cache,
        fresh: typeof step === "number",
        s,
        y,
      };
    };
    const at = (step: number): Promise<Trial> => {
      const x = tf.tidy(() => tf.add(start.x, tf.mul(step, direction)) as tf.Tensor2D);
      return complete(step, objective.evaluate(x), x);
    };
    let firstTrial: Trial;
    if (objective.line && start.cache && start.lineSteps < maxLineSteps) {
      // the first trial, chosen on the device from φ′(1) (module JSDoc)
      const line = objective.line(start.x, start.cache, direction);
      const step = tf.tidy(() => {
        const s0 = tf.neg(sumProduct(start.gradient, direction)); // −φ′(0)
        const slope = line.slopeAtUnit;
        const unit = tf.logicalAnd(
          tf.greaterEqual(slope, tf.mul(-c2, s0)),
          tf.lessEqual(slope, tf.mul(c3, s0)),
        );
        const secant = tf.clipByValue(tf.div(s0, tf.add(s0, slope)), 0.1, 4);
        return tf.where(unit, 1, tf.where(tf.isFinite(secant), secant, 0.25)) as tf.Scalar;
      });
      const x = tf.tidy(() => tf.add(start.x, tf.mul(step, direction)) as tf.Tensor2D);
      firstTrial = await complete(step, line.at(step, x), x);
      tf.dispose(step);
      line.dispose();
    } else firstTrial = await at(1);
    const { accepted: next, notDescent } = await lineSearch(at, current.value, firstTrial);
    direction.dispose();
    if (!next && history.length > 0) {
      clearHistory(); // a stale curvature model: retry once along the (preconditioned) steepest descent
      continue;
    }
    if (!next && notDescent && preconditioner) {
      preconditioner = undefined; // M⁻¹ is not positive definite: go on without it
      preconditionerDropped = true;
      continue;
    }
    if (!next) {
      stopReason = "precision floor";
      break;
    }
    if (next.sy > 1e-10 * Math.sqrt(next.yy) * Math.sqrt(next.ss)) {
      const pair = { s: next.s, y: next.y, rho: 1 / next.sy };
      history.push(pair);
      if (history.length > m) {
        const old = history.shift()!;
        tf.dispose([old.s, old.y]);
      }
      gamma?.dispose();
      gamma = scaleOf(pair);
    } else {
      skippedPairs++;
      tf.dispose([next.s, next.y]);
    }
    disposeCurrent();
    current = {
      value: next.value,
      x: next.x,
      gradient: next.gradient,
      cache: next.cache,
      lineSteps: next.fresh ? 0 : current.lineSteps + 1,
    };
    gradNorm = Math.sqrt(next.gradSquared);
    iterations++;
    options.onIteration?.(iterations, current.value, gradNorm);
    // J's reference moves only by steps above its float32 noise, so that a slow steady decrease still counts
    const valueProgress = current.value < bestValue - 1e-6 * Math.abs(bestValue);
    if (valueProgress) bestValue = current.value;
    if (gradNorm < best || valueProgress) sinceBest = 0;
    else if (++sinceBest >= (options.stallIterations ?? 50) && gradNorm > gradTol) {
      stopReason = "precision floor";
      break;
    }
    best = Math.min(best, gradNorm);
  }
  if (current.lineSteps > maxLineSteps) {
    await refresh();
    if (gradNorm <= gradTol) stopReason = "gradient tolerance";
  }
  gamma?.dispose();
  tf.dispose(current.cache ?? []);
  return {
    history,
    x: current.x,
    value: current.value,
    gradient: current.gradient,
    gradNorm,
    iterations,
    evaluations,
    reads: tally.reads,
    extras,
    skippedPairs,
    preconditionerDropped,
    stopReason,
  };
}
