/**
 * Limited-memory BFGS for convex objectives, on tfjs tensors (private to `lib/carrot/`).
 *
 * Nocedal & Wright, Numerical Optimization (2nd ed.): two-loop recursion (Alg. 7.4) with H₀ = (sᵀy / yᵀy) I, and
 * a Wolfe line search (c₁ = 1e-4, c₂ = 0.9) that brackets on the directional derivative (see `lineSearch`).
 * The iterate, gradient and history stay on the backend; only scalars (J, directional derivatives, norms) are
 * read back. In float32 the gradient eventually stops improving: that is the precision floor, and the solver
 * stops there (no new best ‖∇J‖ in `stallIterations` steps, or no acceptable step) and says so.
 */
import * as tf from "@tensorflow/tfjs";
import { yieldToEventLoop } from "../_yield.ts";

/** One curvature pair of the L-BFGS history, ρ = 1 / sᵀy. */
export interface CurvaturePair {
  /** s = W_{k+1} − W_k. */
  s: tf.Tensor2D;
  /** y = ∇J(W_{k+1}) − ∇J(W_k). */
  y: tf.Tensor2D;
  /** 1 / sᵀy. */
  rho: number;
}

/** One evaluation: the objective value and its gradient (owned by the caller of `evaluate`). */
export interface Evaluation {
  value: number;
  gradient: tf.Tensor2D;
}

/** Options of `minimizeLbfgs`. */
export interface LbfgsOptions {
  /** Stop when ‖∇J‖_F ≤ gradTol. */
  gradTol: number;
  maxIter: number;
  /** History pairs kept (default 20). */
  memory?: number;
  /** Stop at the precision floor after this many steps without a new best ‖∇J‖ (default 25). */
  stallIterations?: number;
  /**
   * Curvature pairs to start from (cloned, not consumed): a warm start from a nearby problem (e.g. after a small
   * change of α) reuses its predecessor's curvature model and needs a handful of steps instead of a cold ramp-up.
   */
  initialHistory?: CurvaturePair[];
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
  stopReason: "gradient tolerance" | "max iterations" | "precision floor";
  /** The final curvature pairs (owned by the caller), for warm starts of nearby problems. */
  history: CurvaturePair[];
}

interface Point {
  step: number;
  value: number;
  slope: number;
  x: tf.Tensor2D;
  gradient: tf.Tensor2D;
}

async function scalar(t: tf.Tensor): Promise<number> {
  const v = (await t.data())[0];
  t.dispose();
  return v;
}

const dot = (a: tf.Tensor, b: tf.Tensor) => scalar(tf.tidy(() => tf.sum(tf.mul(a, b))));

function disposePoint(p: Point | undefined, keep?: Point): void {
  if (p && p !== keep) {
    p.x.dispose();
    p.gradient.dispose();
  }
}

/**
 * Line search for a *convex* objective along a descent direction, driven by the directional derivative φ′(t).
 *
 * For convex φ, φ′ is non-decreasing, so (i) the line minimiser is bracketed by the sign of φ′ and (ii) any t with
 * φ′(t) ≤ c₁φ′(0) satisfies the Armijo condition exactly: φ(t) − φ(0) = ∫₀ᵗ φ′ ≤ t φ′(t) ≤ c₁ t φ′(0). Steps
 * slightly past the minimiser (0 < φ′(t) ≤ c₃|φ′(0)|) are accepted when φ(t) ≤ φ(0) + c₁tφ′(0) + ε|φ(0)|: the
 * approximate-Wolfe rule of Hager & Zhang (2005), which keeps working where float32 values of J stop resolving
 * decreases but gradients still do. Returns `undefined` when no acceptable step is found.
 */
async function lineSearch(
  evaluate: (x: tf.Tensor2D) => Promise<Evaluation>,
  start: Point,
  direction: tf.Tensor2D,
  firstStep: number,
  counter: { evaluations: number },
): Promise<Point | undefined> {
  const c1 = 1e-4, c2 = 0.9, c3 = 0.8, epsilon = 1e-6, maxEvaluations = 40;
  const s0 = -start.slope; // > 0
  const at = async (step: number): Promise<Point> => {
    const x = tf.tidy(() => tf.add(start.x, tf.mul(step, direction)) as tf.Tensor2D);
    const e = await evaluate(x);
    counter.evaluations++;
    return { step, value: e.value, slope: await dot(e.gradient, direction), x, gradient: e.gradient };
  };
  let lo: Point = start; // φ′(lo) < −c₂ s0 (or t = 0)
  let hi: Point | undefined; // φ′(hi) > 0 or rejected
  let step = firstStep;
  for (let used = 0; used < maxEvaluations; used++) {
    const p = await at(step);
    const finite = Number.isFinite(p.value) && Number.isFinite(p.slope);
    const decrease = finite &&
      (p.slope <= -c1 * s0 || p.value <= start.value - c1 * step * s0 + epsilon * Math.abs(start.value));
    if (finite && decrease && p.slope >= -c2 * s0 && p.slope <= c3 * s0) {
      disposePoint(lo, start);
      disposePoint(hi);
      return p;
    }
    if (finite && p.slope < -c2 * s0) {
      disposePoint(lo, start);
      lo = p;
    } else {
      disposePoint(hi);
      hi = p;
    }
    if (!hi) {
      step *= 4;
    } else {
      // secant on φ′ (the root of the line through the bracket's slopes), kept in the inner 80% of the bracket
      const width = hi.step - lo.step;
      const secant = Number.isFinite(hi.slope) && hi.slope > lo.slope
        ? lo.step - lo.slope * width / (hi.slope - lo.slope)
        : lo.step + width / 2;
      step = Math.min(Math.max(secant, lo.step + 0.1 * width), hi.step - 0.1 * width);
      if (width <= 1e-12 * hi.step) break;
    }
  }
  disposePoint(hi);
  return lo === start ? undefined : lo; // φ′(lo) < 0: a certified decrease, curvature not reached
}

/** Minimises a smooth function from `x0` (not consumed) with L-BFGS; see the module JSDoc. */
export async function minimizeLbfgs(
  evaluate: (x: tf.Tensor2D) => Promise<Evaluation>,
  x0: tf.Tensor2D,
  options: LbfgsOptions,
): Promise<LbfgsResult> {
  const m = options.memory ?? 20;
  const history: CurvaturePair[] = (options.initialHistory ?? []).slice(-m)
    .map((h) => ({ s: h.s.clone(), y: h.y.clone(), rho: h.rho }));
  const counter = { evaluations: 1 };
  const xStart = x0.clone();
  const first = await evaluate(xStart);
  let current: Point = { step: 0, value: first.value, slope: 0, x: xStart, gradient: first.gradient };
  let gradNorm = Math.sqrt(await dot(current.gradient, current.gradient));
  let iterations = 0;
  let best = gradNorm, sinceBest = 0;
  let stopReason: LbfgsResult["stopReason"] = "max iterations";
  const clearHistory = () => {
    for (const h of history) tf.dispose([h.s, h.y]);
    history.length = 0;
  };

  while (true) {
    await yieldToEventLoop(); // Ctrl-C during long fits
    if (gradNorm <= options.gradTol) {
      stopReason = "gradient tolerance";
      break;
    }
    if (iterations >= options.maxIter) break;
    // Two-loop recursion: direction = −H_k ∇J, all on the backend.
    const direction = tf.tidy(() => {
      let q: tf.Tensor = current.gradient;
      const coefficients: tf.Scalar[] = [];
      for (let i = history.length - 1; i >= 0; i--) {
        const a = tf.mul(history[i].rho, tf.sum(tf.mul(history[i].s, q))) as tf.Scalar;
        coefficients[i] = a;
        q = tf.sub(q, tf.mul(a, history[i].y));
      }
      if (history.length > 0) {
        const last = history[history.length - 1];
        q = tf.mul(tf.div(tf.sum(tf.mul(last.s, last.y)), tf.sum(tf.mul(last.y, last.y))), q);
      }
      for (let i = 0; i < history.length; i++) {
        const b = tf.mul(history[i].rho, tf.sum(tf.mul(history[i].y, q)));
        q = tf.add(q, tf.mul(tf.sub(coefficients[i], b), history[i].s));
      }
      return tf.neg(q) as tf.Tensor2D;
    });
    current.step = 0;
    current.slope = await dot(current.gradient, direction);
    let next: Point | undefined;
    if (current.slope < 0) {
      next = await lineSearch(evaluate, current, direction, history.length ? 1 : 1 / gradNorm, counter);
    }
    direction.dispose();
    if (!next && history.length > 0) {
      clearHistory(); // a stale curvature model: retry once along steepest descent
      continue;
    }
    if (!next) {
      stopReason = "precision floor";
      break;
    }
    const s = tf.sub(next.x, current.x) as tf.Tensor2D;
    const y = tf.sub(next.gradient, current.gradient) as tf.Tensor2D;
    const sy = await dot(s, y);
    if (sy > 1e-10 * Math.sqrt(await dot(y, y)) * Math.sqrt(await dot(s, s))) {
      history.push({ s, y, rho: 1 / sy });
      if (history.length > m) {
        const old = history.shift()!;
        tf.dispose([old.s, old.y]);
      }
    } else tf.dispose([s, y]);
    disposePoint(current);
    current = next;
    gradNorm = Math.sqrt(await dot(current.gradient, current.gradient));
    iterations++;
    options.onIteration?.(iterations, current.value, gradNorm);
    if (gradNorm < best) [best, sinceBest] = [gradNorm, 0];
    else if (++sinceBest >= (options.stallIterations ?? 25) && gradNorm > options.gradTol) {
      stopReason = "precision floor";
      break;
    }
  }
  return {
    history,
    x: current.x,
    value: current.value,
    gradient: current.gradient,
    gradNorm,
    iterations,
    evaluations: counter.evaluations,
    stopReason,
  };
}
