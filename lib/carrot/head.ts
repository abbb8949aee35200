/**
 * The CARROT head: a weighted, L2-regularised linear softmax classifier solved to stationarity.
 *
 *   minimise  J(W; α) = Σ_i α_i CE(W h_i, y_i) + (λ/2)‖W‖²_F   over W ∈ R^{K×(d+1)},  h_i = [x_i; 1]
 *
 * The bias is the last column of W and is regularised like every other weight: that is what makes the
 * representer form of Theorem A (`representer.ts`) exact at a stationary point, λW = −Σ_i α_i (p_i − e_{y_i}) h_iᵀ.
 */
import * as tf from "@tensorflow/tfjs";
import { checkFinite, checkLabels, inferNumClasses, type LabeledFeatures } from "./labeled_features.ts";
import {
  disposeProblem,
  gradientAtZero,
  type HeadProblem,
  logits,
  makeProblem,
  objectiveAndGradient,
} from "./_objective.ts";
import { type CurvaturePair, minimizeLbfgs } from "./_lbfgs.ts";

/** Options of `fitHead`. */
export interface FitHeadOptions {
  /** L2 strength λ > 0. */
  lambda: number;
  /** Per-sample weights α ≥ 0 `[n]` (default all ones: plain ERM). */
  alpha?: Float32Array;
  /** K (default: largest label + 1). */
  numClasses?: number;
  /** Stop when ‖∇J(W)‖_F ≤ tol · ‖∇J(0)‖_F (default 1e-6). */
  tol?: number;
  /** Iteration cap (default 1000). */
  maxIter?: number;
  /**
   * Warm start (not consumed; default W₀ = 0): weights `[K, d+1]`, or a previous `HeadFit`, whose weights *and*
   * L-BFGS curvature pairs are reused: after a small change of α that refit takes a handful of iterations.
   */
  init?: tf.Tensor2D | HeadFit;
  /** L-BFGS history length (default 20). */
  memory?: number;
  /** Called after every iteration with J and ‖∇J‖_F. */
  onIteration?: (iteration: number, loss: number, gradNorm: number) => void;
}

/**
 * A fitted head. It carries its λ and α so that every later function (representer, influence, reweighting)
 * takes the fit alone and cannot be handed a mismatched pair.
 */
export interface HeadFit {
  /** W `[K, d+1]`, bias last. Owned by the fit: free it with `disposeHead`. */
  weights: tf.Tensor2D;
  /** λ of J. */
  lambda: number;
  /** α of J (a copy of the option, all ones for ERM). */
  alpha: Float32Array;
  /** K. */
  numClasses: number;
  /** ‖∇J(W)‖_F at the returned W. */
  gradNorm: number;
  /** ‖∇J(W)‖_F / ‖∇J(0)‖_F: the scale is the gradient at W = 0, whatever `init` was. */
  relativeGradNorm: number;
  /** J(W; α) at the returned W. */
  loss: number;
  /** L-BFGS iterations taken. */
  iterations: number;
  /** Objective and gradient evaluations, line search included. */
  evaluations: number;
  /** True only when relativeGradNorm ≤ tol was reached. */
  converged: boolean;
  /** Why the solver stopped: the tolerance, the iteration cap, or the float32 precision floor. */
  stopReason: "gradient tolerance" | "max iterations" | "precision floor";
  /** The solver's final curvature pairs, reused when this fit is passed as `init` (freed by `disposeHead`). */
  curvature: CurvaturePair[];
}

function checkOptions(
  train: LabeledFeatures,
  options: FitHeadOptions,
): { alpha: Float32Array; numClasses: number } {
  const { lambda } = options;
  if (!(Number.isFinite(lambda) && lambda > 0)) {
    throw new RangeError(`fitHead: lambda must be a finite number > 0, got ${lambda}`);
  }
  if (train.features.rank !== 2) throw new RangeError("fitHead: features must be a 2-D tensor [n, d]");
  const n = train.features.shape[0];
  const numClasses = options.numClasses ?? inferNumClasses(train.labels);
  if (!(Number.isInteger(numClasses) && numClasses >= 2)) {
    throw new RangeError(`fitHead: numClasses must be an integer ≥ 2, got ${numClasses}`);
  }
  checkLabels(train, numClasses, "fitHead");
  const alpha = options.alpha ?? new Float32Array(n).fill(1);
  if (alpha.length !== n) throw new RangeError(`fitHead: alpha has ${alpha.length} entries for ${n} rows`);
  for (let i = 0; i < n; i++) {
    if (!(Number.isFinite(alpha[i]) && alpha[i] >= 0)) {
      throw new RangeError(`fitHead: alpha[${i}] = ${alpha[i]}; weights must be finite and ≥ 0`);
    }
  }
  const want = [numClasses, train.features.shape[1] + 1];
  const init = options.init && ("weights" in options.init ? options.init.weights : options.init);
  if (init && (init.shape[0] !== want[0] || init.shape[1] !== want[1])) {
    throw new RangeError(`fitHead: init has shape [${init.shape}], expected [${want}]`);
  }
  return { alpha: Float32Array.from(alpha), numClasses };
}

async function scalarOf(t: tf.Tensor): Promise<number> {
  const v = (await t.data())[0];
  t.dispose();
  return v;
}

/** ‖T‖_F read back as a number; the tensor is not consumed. */
export async function frobeniusNorm(t: tf.Tensor): Promise<number> {
  return Math.sqrt(await scalarOf(tf.tidy(() => tf.sum(tf.square(t)))));
}

/**
 * Fits the head by L-BFGS with a strong-Wolfe line search (full batch, all arithmetic in tfjs ops on the active
 * backend) until ‖∇J‖_F ≤ tol·‖∇J(0)‖_F. Where float32 cannot get there, it stops at its floor and returns
 * `converged: false` with the value reached. Throws `RangeError` on bad labels, lengths, α, λ or non-finite
 * features (naming the first bad row).
 */
export async function fitHead(train: LabeledFeatures, options: FitHeadOptions): Promise<HeadFit> {
  const { alpha, numClasses } = checkOptions(train, options);
  await checkFinite(train.features, "fitHead");
  const tol = options.tol ?? 1e-6;
  const problem = makeProblem(train.features, train.labels, alpha, numClasses, options.lambda);
  try {
    const atZero = gradientAtZero(problem);
    const scale = await frobeniusNorm(atZero);
    atZero.dispose();
    const evaluate = async (w: tf.Tensor2D) => {
      const { value, gradient } = objectiveAndGradient(problem, w);
      return { value: await scalarOf(value), gradient };
    };
    const previous = options.init && "weights" in options.init ? options.init : undefined;
    const w0 = previous?.weights ?? (options.init as tf.Tensor2D | undefined) ??
      tf.zeros([numClasses, train.features.shape[1] + 1]) as tf.Tensor2D;
    const result = await minimizeLbfgs(evaluate, w0, {
      gradTol: tol * scale,
      maxIter: options.maxIter ?? 1000,
      memory: options.memory,
      initialHistory: previous?.curvature,
      onIteration: options.onIteration,
    });
    if (!options.init) w0.dispose();
    result.gradient.dispose();
    const relativeGradNorm = scale > 0 ? result.gradNorm / scale : 0;
    return {
      weights: result.x,
      lambda: options.lambda,
      alpha,
      numClasses,
      gradNorm: result.gradNorm,
      relativeGradNorm,
      loss: result.value,
      iterations: result.iterations,
      evaluations: result.evaluations,
      converged: relativeGradNorm <= tol,
      stopReason: result.stopReason,
      curvature: result.history,
    };
  } finally {
    disposeProblem(problem);
  }
}

/** Frees the tensors of a fit (weights and curvature pairs). */
export function disposeHead(fit: HeadFit): void {
  fit.weights.dispose();
  for (const pair of fit.curvature) tf.dispose([pair.s, pair.y]);
  fit.curvature = [];
}

/** Logits z = W [x; 1] `[m, K]` of the fitted head for `features` `[m, d]`. */
export function headLogits(fit: HeadFit, features: tf.Tensor2D): tf.Tensor2D {
  return logits(fit.weights, features);
}

/** Softmax probabilities p = softmax(W [x; 1]) `[m, K]`. */
export function headProbabilities(fit: HeadFit, features: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.softmax(logits(fit.weights, features)));
}

/** The head problem of a fit on `data` (its λ, α, K), for derivative computations in other modules. */
export function problemOf(fit: HeadFit, data: LabeledFeatures): HeadProblem {
  return makeProblem(data.features, data.labels, fit.alpha, fit.numClasses, fit.lambda);
}
