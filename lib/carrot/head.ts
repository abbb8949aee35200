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
  evaluateWithLogits,
  gradientAtZero,
  type HeadProblem,
  lineThrough,
  logits,
  makeProblem,
} from "./_objective.ts";
import { type CurvaturePair, type LbfgsObjective, minimizeLbfgs } from "./_lbfgs.ts";
import { type HeadPreconditioner, hessianAtZeroInverse } from "./_precondition.ts";
import { readScalar, type ReadTally, readValues } from "./_reads.ts";

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
  /**
   * "ekfac": preconditioned L-BFGS with H₀ = γ H(0)⁻¹, the exact inverse Hessian at W = 0, which is where the EK-FAC
   * of `kroneckerInverse` is exact: H(0)⁻¹V = 1v̄ᵀ/λ + (V − 1v̄ᵀ)(C/K + λI)⁻¹, C = Σ α_i h_i h_iᵀ
   * (`_precondition.ts`; one (d+1)² Cholesky and one read per fit, one [K, d+1]·[d+1, d+1] product per
   * iteration). It pays where the features' scale and correlations make H ill-conditioned (raw pixels, a shared
   * offset); "none" (default): H₀ = γI.
   */
  preconditioner?: "none" | "ekfac";
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
  /**
   * GPU→CPU reads of the fit (`_reads.ts`): one per line-search trial (≈ one per iteration), one at the start
   * (J, ‖∇J‖, ‖∇J(0)‖ and the finiteness of X together) and one for the preconditioner's C.
   */
  reads: number;
  /** L-BFGS curvature pairs skipped because sᵀy ≤ 1e-10‖s‖‖y‖ (curvature not positive in float32). */
  skippedPairs: number;
  /** The preconditioner used: "ekfac" as asked, or "none" (asked, or dropped when it gave no descent direction). */
  preconditioner: "none" | "ekfac";
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

/** ‖T‖_F read back as a number (one counted read); the tensor is not consumed. */
export async function frobeniusNorm(t: tf.Tensor, tally?: ReadTally): Promise<number> {
  const squared = tf.tidy(() => tf.sum(tf.square(t)));
  const value = await readScalar(squared, tally);
  squared.dispose();
  return Math.sqrt(value);
}

/**
 * Fits the head by L-BFGS with a Wolfe line search (full batch, all arithmetic in tfjs ops on the active backend,
 * one packed read per line-search trial) until ‖∇J‖_F ≤ tol·‖∇J(0)‖_F. Where float32 cannot get there, it stops
 * at its floor and returns `converged: false` with the value reached. Throws `RangeError` on bad labels, lengths,
 * α, λ or non-finite features (naming the first bad row).
 */
export async function fitHead(train: LabeledFeatures, options: FitHeadOptions): Promise<HeadFit> {
  const { alpha, numClasses } = checkOptions(train, options);
  const tol = options.tol ?? 1e-6;
  const tally: ReadTally = { reads: 0 };
  const problem = makeProblem(train.features, train.labels, alpha, numClasses, options.lambda);
  const extras = tf.tidy(() => [tf.sum(tf.square(gradientAtZero(problem))), tf.sum(train.features)]);
  let preconditioner: HeadPreconditioner | undefined;
  try {
    if (options.preconditioner === "ekfac") {
      preconditioner = await hessianAtZeroInverse(problem, tally).catch(async (error) => {
        await checkFinite(train.features, "fitHead"); // a NaN or Inf in X is the likely cause: name its row
        throw error;
      });
    }
    const previous = options.init && "weights" in options.init ? options.init : undefined;
    const w0 = previous?.weights ?? (options.init as tf.Tensor2D | undefined) ??
      tf.zeros([numClasses, train.features.shape[1] + 1]) as tf.Tensor2D;
    let scale = 0;
    const objective: LbfgsObjective = {
      evaluate: (w) => evaluateWithLogits(problem, w),
      line: (w, cache, direction) => lineThrough(problem, w, cache as tf.Tensor2D[], direction),
    };
    const result = await minimizeLbfgs(objective, w0, {
      // ‖∇J(0)‖² and Σ X come with the first read; a non-finite sum means a NaN or Inf in X (or an overflow)
      gradTol: async ([scaleSquared, sum]) => {
        if (!Number.isFinite(sum[0])) await checkFinite(train.features, "fitHead");
        scale = Math.sqrt(scaleSquared[0]);
        return tol * scale;
      },
      extras,
      tally,
      maxIter: options.maxIter ?? 1000,
      memory: options.memory,
      initialHistory: previous?.curvature,
      preconditioner: preconditioner && ((v) => preconditioner!.apply(v)),
      onIteration: options.onIteration,
    }).finally(() => {
      if (!options.init) w0.dispose();
    });
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
      reads: tally.reads,
      skippedPairs: result.skippedPairs,
      preconditioner: preconditioner && !result.preconditionerDropped ? "ekfac" : "none",
      converged: relativeGradNorm <= tol,
      stopReason: result.stopReason,
      curvature: result.history,
    };
  } finally {
    tf.dispose(extras);
    preconditioner?.dispose();
    disposeProblem(problem);
  }
}

/** A copy of a fit that owns its own tensors (weights and curvature pairs), to be freed apart with `disposeHead`. */
export function cloneHead(fit: HeadFit): HeadFit {
  return {
    ...fit,
    alpha: fit.alpha.slice(),
    weights: fit.weights.clone(),
    curvature: fit.curvature.map((pair) => ({ ...pair, s: pair.s.clone(), y: pair.y.clone() })),
  };
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

/** In-sample losses ℓ_i = −log p_{y_i}(h_i) of every training point under a head fitted on them (float64). */
export async function inSampleLosses(fit: HeadFit, train: LabeledFeatures): Promise<Float64Array> {
  const p = tf.tidy(() =>
    tf.sum(
      tf.mul(
        headProbabilities(fit, train.features),
        tf.oneHot(tf.tensor1d(train.labels, "int32"), fit.numClasses),
      ),
      1,
    )
  );
  const own = await readValues(p);
  p.dispose();
  return Float64Array.from(own, (q) => -Math.log(q));
}

/** The head problem of a fit on `data` (its λ, α, K), for derivative computations in other modules. */
export function problemOf(fit: HeadFit, data: LabeledFeatures): HeadProblem {
  return makeProblem(data.features, data.labels, fit.alpha, fit.numClasses, fit.lambda);
}
