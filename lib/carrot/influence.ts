/**
 * Theorem B: the implicit gradient of the validation loss with respect to the training weights α.
 *
 * W*(α) minimises J(W; α) = Σ_i α_i ℓ_i(W) + (λ/2)‖W‖²_F, which is λ-strongly convex, so W* is unique and
 * differentiable. Differentiating the stationarity condition ∇_W J(W*(α); α) = 0 in α_i gives
 * H · ∂_{α_i}W* = −∇_W ℓ_i, hence
 *   g_i = ∂L_val/∂α_i = −∇_W L_valᵀ H⁻¹ ∇_W ℓ_i = −(p_i − e_{y_i})ᵀ S h_i,   S = H⁻¹ ∇_W L_val,
 * with H = Σ_i α_i (diag p_i − p_i p_iᵀ) ⊗ h_i h_iᵀ + λI (exact: for softmax cross-entropy with a linear head the
 * Gauss–Newton matrix is the Hessian). One solve gives all n entries.
 *
 * Sign convention (used throughout CARROT): g_i > 0 means up-weighting training point i *increases* the
 * validation loss (i is harmful); removing i (α_i → 0) changes L_val by ≈ −α_i g_i to first order.
 * Test-point influence follows the same convention: I(i, x) = ∂ℓ_x/∂α_i, negative = i helps x.
 */
import * as tf from "@tensorflow/tfjs";
import { yieldToEventLoop } from "../_yield.ts";
import { checkLabels, type LabeledFeatures } from "./labeled_features.ts";
import { type HeadFit, headProbabilities, problemOf } from "./head.ts";
import {
  disposeProblem,
  type HeadProblem,
  hessianVectorProductBatch,
  logits,
  residualOuter,
} from "./_objective.ts";
import { blockConjugateGradient, type CgResult } from "./_cg.ts";
import { readPacked, readValues } from "./_reads.ts";
import { choleskySolve, symmetricEigen } from "./_linalg.ts";
import {
  chooseHessianSolver,
  directRuledOut,
  type DirectSolverOptions,
  formatGmac,
  type InfluenceMethod,
  solverCosts,
  type SolverReport,
} from "./direct.ts";

/** The Hessian of the fit on its training split as an operator: H V for V `[b, K, d+1]`. */
export interface HessianOperator {
  /** H V for a batch V `[b, K, d+1]`. */
  apply(v: tf.Tensor3D): tf.Tensor3D;
  /** P `[n, K]` at W*. */
  probabilities: tf.Tensor2D;
  /** The tensors of the head problem (features, one-hot labels, α). */
  problem: HeadProblem;
  /** Frees the operator's tensors. */
  dispose(): void;
}

/** H (plus `damping`·I) at the fit, matrix-free; the caller disposes it. */
export function hessianOperator(fit: HeadFit, train: LabeledFeatures, damping = 0): HessianOperator {
  checkSplit(fit, train, "train");
  if (train.features.shape[0] !== fit.alpha.length) {
    throw new RangeError(
      `influence: the fit has ${fit.alpha.length} weights α but train has ${train.features.shape[0]} rows`,
    );
  }
  const problem = problemOf(fit, train);
  const probabilities = headProbabilities(fit, train.features);
  return {
    probabilities,
    problem,
    apply: (v) =>
      tf.tidy(() => {
        const hv = hessianVectorProductBatch(problem, probabilities, v);
        return damping > 0 ? tf.add(hv, tf.mul(damping, v)) : hv;
      }),
    dispose: () => {
      probabilities.dispose();
      disposeProblem(problem);
    },
  };
}

function checkSplit(fit: HeadFit, data: LabeledFeatures, what: string): void {
  if (data.features.shape[1] + 1 !== fit.weights.shape[1]) {
    throw new RangeError(
      `influence: ${what} features have dim ${data.features.shape[1]}, the head expects ${
        fit.weights.shape[1] - 1
      }`,
    );
  }
  checkLabels(data, fit.numClasses, what);
}

/**
 * H V for the weighted head at the fit: Σ_i α_i [(diag p_i − p_i p_iᵀ) V h_i] h_iᵀ + λV, for V `[K, d+1]` or a
 * batch `[b, K, d+1]`; O(n K d b), never materialising H.
 */
export function hessianVectorProduct<T extends tf.Tensor2D | tf.Tensor3D>(
  fit: HeadFit,
  train: LabeledFeatures,
  v: T,
): T {
  const operator = hessianOperator(fit, train);
  try {
    return tf.tidy(() => {
      const batch = v.rank === 2 ? v.expandDims(0) as tf.Tensor3D : v as tf.Tensor3D;
      const hv = operator.apply(batch);
      return (v.rank === 2 ? hv.squeeze([0]) : hv) as T;
    });
  } finally {
    operator.dispose();
  }
}

/**
 * The dense Hessian H `[K(d+1), K(d+1)]` (row-major vec(W), index k(d+1) + j) for small problems (K(d+1) ≤ 2000):
 * H = blockdiag_k(H̃ᵀ diag(α ∘ p_·k) H̃) − GᵀG + λI with G_i = √α_i (p_i ⊗ h_i). Used as the reference path.
 */
export function exactHessian(fit: HeadFit, train: LabeledFeatures): tf.Tensor2D {
  const k = fit.numClasses, width = fit.weights.shape[1], size = k * width, n = train.features.shape[0];
  if (size > 2000) throw new RangeError(`exactHessian: K(d+1) = ${size} > 2000; use the matrix-free CG path`);
  checkSplit(fit, train, "train");
  return tf.tidy(() => {
    const h = tf.concat([train.features, tf.ones([n, 1])], 1); // [n, D]
    const p = headProbabilities(fit, train.features); // [n, K]
    const alpha = tf.tensor2d(fit.alpha, [n, 1]);
    const blocks = tf.unstack(tf.mul(alpha, p), 1).map((w) =>
      tf.matMul(tf.mul(h, w.reshape([n, 1])).transpose(), h)
    );
    const rows = blocks.map((block, c) =>
      tf.concat([tf.zeros([width, c * width]), block, tf.zeros([width, (k - c - 1) * width])], 1)
    );
    const g = tf.mul(
      tf.sqrt(alpha),
      tf.mul(p.reshape([n, k, 1]), h.reshape([n, 1, width])).reshape([n, size]),
    );
    const dense = tf.sub(tf.concat(rows, 0), tf.matMul(g.transpose(), g));
    return tf.add(dense, tf.mul(fit.lambda, tf.eye(size))) as tf.Tensor2D;
  });
}

/** Options of `validationAlphaGradient`. */
export interface AlphaGradientOptions {
  /** CG relative residual tolerance ‖H s − ∇L_val‖ ≤ tol‖∇L_val‖ (default 1e-6). */
  tol?: number;
  /** CG iteration cap (default K(d+1)). */
  maxIter?: number;
  /** Damping δ ≥ 0: solve (H + δI) s = ∇L_val instead (default 0, the exact Theorem B). */
  damping?: number;
  /**
   * "cg" (matrix-free, default), "exact" (dense Cholesky in float64, K(d+1) ≤ 2000), "ekfac" (the
   * eigenvalue-corrected Kronecker approximation of `kroneckerInverse`, no iterations) or "identity" (H ≈ λI:
   * the representer approximation, g_i ≈ −(1/λ)(p_i − e_{y_i})ᵀ ∇_W L_val h_i).
   */
  solver?: "cg" | "exact" | "ekfac" | "identity";
  /** Weights w `[m]` of the validation points: L_val = Σ_j w_j ℓ_j / Σ_j w_j (default the plain mean). */
  valWeights?: Float32Array;
  /**
   * Solver "cg" only: "ekfac" runs preconditioned CG with M⁻¹ = the EK-FAC inverse of `kroneckerInverse` (built
   * once: two eigendecompositions, (d+1)×(d+1) and K×K, on the CPU). It cuts iterations where H is close to a
   * Kronecker product (few classes, correlated raw features: 304 → 88 on the MNIST-shaped problem) and can add
   * some where class curvature is local (CUB-sized preset: 34 → 44); a preconditioner that breaks CG is dropped
   * (see `cgPreconditioner`). Default "none".
   */
  preconditioner?: "none" | "ekfac";
  /**
   * Solver "cg" only: a starting point for s, e.g. the `solution` of the previous outer step of a reweighting run
   * (`[K, d+1]`, not consumed). Between nearby α the systems differ little, so the warm start saves iterations.
   */
  initialSolution?: tf.Tensor2D;
  /** Return s = (H + δI)⁻¹ ∇L_val as `solution` (owned by the caller) for a later warm start (default false). */
  keepSolution?: boolean;
}

/** g = ∂L_val/∂α with the solver's diagnostics. */
export interface AlphaGradientResult {
  /** g_i = ∂L_val/∂α_i `[n]`; > 0 means point i is harmful to the validation loss. */
  gradient: Float32Array;
  /** L_val(W*) = mean_j CE(W* h_j, y_j), unweighted. */
  valLoss: number;
  /** CG iterations run (convergence is read every 4, so up to 3 past it; 0 for the direct solvers). */
  cgIterations: number;
  /** ‖H s − ∇L_val‖ / ‖∇L_val‖ at the end of CG (0 for the exact solver, NaN for EK-FAC: not measured). */
  cgResidual: number;
  /** The relative residual after each CG iteration. */
  residualHistory: number[];
  /**
   * Ritz estimates of λ_min(H), λ_max(H) from the CG coefficients (λ_min ≥ λ in exact arithmetic); of M⁻¹H when
   * the solve ended preconditioned.
   */
  eigenvalueEstimates: { min: number; max: number };
  /** GPU→CPU reads of the CG solve (one per `checkEvery` = 4 iterations; 0 for the direct solvers). */
  cgReads: number;
  /** Whether CG was preconditioned, and why the preconditioner was dropped if it was (`CgResult.preconditioner`). */
  cgPreconditioner: CgResult["preconditioner"];
  /** δ used. */
  damping: number;
  /** −α_i g_i: the first-order prediction of L_val(α with α_i = 0) − L_val(α). */
  predictedLooChange(i: number): number;
  /** s `[K, d+1]` when `keepSolution` was asked (the caller disposes it). */
  solution?: tf.Tensor2D;
}

/**
 * ∇_W of the mean cross-entropy over `data` `[K, d+1]` and the mean loss itself. With `weights` w `[m]` the mean
 * is weighted, L = Σ_j w_j ℓ_j / Σ_j w_j (the weights are constants: no gradient flows into them).
 */
export function meanLossGradient(
  fit: HeadFit,
  data: LabeledFeatures,
  weights?: Float32Array,
): { gradient: tf.Tensor2D; loss: tf.Scalar } {
  const m = data.features.shape[0];
  if (weights && weights.length !== m) {
    throw new RangeError(`meanLossGradient: ${weights.length} weights for ${m} rows; they must match`);
  }
  const total = weights ? weights.reduce((s, v) => s + v, 0) : m;
  if (!(total > 0)) throw new RangeError("meanLossGradient: the weights must have a positive sum");
  return tf.tidy(() => {
    const z = logits(fit.weights, data.features);
    const y = tf.oneHot(tf.tensor1d(data.labels, "int32"), fit.numClasses).toFloat();
    const w = weights ? tf.tensor2d(weights, [m, 1]) : tf.ones([m, 1]);
    const logP = tf.logSoftmax(z);
    const loss = tf.div(tf.neg(tf.sum(tf.mul(tf.mul(y, logP), w))), total) as tf.Scalar;
    const residual = tf.div(tf.mul(tf.sub(tf.exp(logP), y), w), total) as tf.Tensor2D;
    return { gradient: residualOuter(residual, data.features), loss };
  });
}

/** Solves (H + δI) S = B for B `[b, K, d+1]` by CG or by the dense float64 Cholesky path. */
async function solveHessian(
  operator: HessianOperator,
  fit: HeadFit,
  train: LabeledFeatures,
  rhs: tf.Tensor3D,
  options: AlphaGradientOptions,
) {
  // direct solvers: no iterations, no residual or Ritz values to report
  const direct = (solution: tf.Tensor3D, relativeResidual: number) => ({
    solution,
    iterations: 0,
    relativeResiduals: new Float64Array(rhs.shape[0]).fill(relativeResidual),
    residualHistory: [] as number[],
    eigenvalueEstimates: { min: NaN, max: NaN },
    reads: 0,
    preconditioner: { used: false },
  });
  if (options.solver === "identity") {
    return direct(tf.div(rhs, fit.lambda + (options.damping ?? 0)) as tf.Tensor3D, NaN);
  }
  if (options.solver === "ekfac") {
    const inverse = await kroneckerInverse(fit, train);
    const solution = inverse.apply(rhs);
    inverse.dispose();
    return direct(solution, NaN);
  }
  if (options.solver === "exact") {
    const dense = exactHessian(fit, train);
    const size = dense.shape[0], b = rhs.shape[0];
    const a = Float64Array.from(await readValues(dense));
    dense.dispose();
    for (let q = 0; q < size; q++) a[q * size + q] += options.damping ?? 0;
    const right = await readValues(rhs);
    const flat = new Float64Array(size * b); // [size, b]
    for (let j = 0; j < b; j++) for (let q = 0; q < size; q++) flat[q * b + j] = right[j * size + q];
    const x = choleskySolve(a, size, flat, b);
    const solution = new Float32Array(size * b);
    for (let j = 0; j < b; j++) for (let q = 0; q < size; q++) solution[j * size + q] = x[q * b + j];
    return direct(tf.tensor3d(solution, rhs.shape), 0);
  }
  const preconditioner = options.preconditioner === "ekfac" ? await kroneckerInverse(fit, train) : undefined;
  try {
    const initial = options.initialSolution?.reshape(rhs.shape);
    try {
      return await blockConjugateGradient((v) => operator.apply(v as tf.Tensor3D), rhs, {
        tol: options.tol ?? 1e-6,
        maxIter: options.maxIter,
        preconditioner: preconditioner && ((v) => preconditioner.apply(v as tf.Tensor3D)),
        initial,
      });
    } finally {
      initial?.dispose();
    }
  } finally {
    preconditioner?.dispose();
  }
}

/**
 * g = ∂L_val/∂α for every training point with one solve s = H⁻¹ ∇_W L_val (CG with exact Hessian-vector
 * products, each O(nKd); or dense Cholesky for small problems), then g_i = −(p_i − e_{y_i})ᵀ S h_i.
 * α and λ are the fit's; `train` must be the split the head was fitted on.
 */
export async function validationAlphaGradient(
  fit: HeadFit,
  train: LabeledFeatures,
  val: LabeledFeatures,
  options: AlphaGradientOptions = {},
): Promise<AlphaGradientResult> {
  checkSplit(fit, val, "val");
  const damping = options.damping ?? 0;
  if (!(damping >= 0)) throw new RangeError(`validationAlphaGradient: damping must be ≥ 0, got ${damping}`);
  const operator = hessianOperator(fit, train, options.solver === "exact" ? 0 : damping);
  const { gradient: valGradient, loss } = meanLossGradient(fit, val, options.valWeights);
  try {
    const rhs = valGradient.expandDims(0) as tf.Tensor3D;
    const solved = await solveHessian(operator, fit, train, rhs, { ...options, damping });
    rhs.dispose();
    const s = (solved.solution as tf.Tensor3D).squeeze([0]) as tf.Tensor2D;
    solved.solution.dispose();
    const g = tf.tidy(() => {
      const residual = tf.sub(operator.probabilities, operator.problem.oneHot); // p_i − e_{y_i}
      return tf.neg(tf.sum(tf.mul(residual, logits(s, train.features)), 1));
    });
    if (!options.keepSolution) s.dispose();
    const solution = options.keepSolution ? s : undefined;
    const [gradient, lossValue] = await readPacked([g, loss]);
    g.dispose();
    const alpha = fit.alpha;
    return {
      gradient,
      valLoss: lossValue[0],
      cgIterations: solved.iterations,
      cgResidual: solved.relativeResiduals[0],
      residualHistory: solved.residualHistory,
      eigenvalueEstimates: solved.eigenvalueEstimates,
      cgReads: solved.reads,
      cgPreconditioner: solved.preconditioner,
      damping,
      predictedLooChange: (i: number) => -alpha[i] * gradient[i],
      solution,
    };
  } finally {
    tf.dispose([valGradient, loss]);
    operator.dispose();
  }
}

/** Per-test-point influence: I(i, x) = ∂ℓ_x/∂α_i = −∇ℓ_xᵀ H⁻¹ ∇ℓ_i; negative = i helps x. */
export interface TestInfluence {
  /** The test point's own loss ℓ_x at W*. */
  loss: number;
  /** The top-K training points that most reduce ℓ_x when up-weighted (most negative I), most helpful first. */
  proponents: { index: number; influence: number }[];
  /** The top-K training points that most increase ℓ_x (most positive I), most harmful first. */
  opponents: { index: number; influence: number }[];
}

/** Options of `testInfluence`. */
export interface TestInfluenceOptions {
  /** Proponents and opponents per test point (default 10). */
  topK?: number;
  /**
   * "exact": block-CG over test points, per block of b points one CG solve (H S_x = ∇ℓ_x, each iteration one
   * batched HVP, O(n K d b)) then scoring O(n K d b). "direct": H assembled and Cholesky-factored once
   * (`factorHessian` of `direct.ts`: O(n K² d² + K³ d³/3), memory ≈ 2 K² d² bytes), then per block two triangular
   * solves O(K² d² b) plus iterative refinement to `tol`; exact like "exact", cheaper when many points share H.
   * "auto" (default): "exact" when K(d+1) > `direct.maxSize` (default 16384) or the factor would not fit
   * `direct.memoryBudget`; else the first block runs block CG up to the break-even iteration count at which CG for
   * all points would cost as much as factoring, and H is factored only if CG has not converged by then (measured,
   * not guessed; with `direct.cgIterationsEstimate` the costs are compared up front instead). "direct" and "auto"
   * fall back to "exact" when the budget is exceeded or H is not positive definite in float32; `onSolver` says
   * which ran and why. "ekfac": eigenvalue-corrected Kronecker factorisation H ≈ (Q_A ⊗ Q_C) Λ (Q_A ⊗ Q_C)ᵀ + λI
   * — two eigendecompositions (K×K, (d+1)×(d+1)) once, then each inverse-HVP is two small products per test
   * point.
   */
  method?: InfluenceMethod;
  /** Options of the direct path ("direct", "auto"): memory budget, size threshold, tiles, refinement. */
  direct?: DirectSolverOptions;
  /** Called once, after the last block, with the solver used, why, and (direct path) its final diagnostics. */
  onSolver?: (report: SolverReport) => void;
  /** Test points per block (default min(64, 2^24 / (n K)): intermediates stay ≤ 64 MiB). */
  blockSize?: number;
  /**
   * Relative residual ‖H S_x − ∇ℓ_x‖ ≤ tol ‖∇ℓ_x‖: the CG tolerance (exact method, default 1e-6) and the
   * refinement target of the direct path (default 1e-5, see `DirectSolverOptions.tol`).
   */
  tol?: number;
  /** CG iteration cap (exact method). */
  maxIter?: number;
  /**
   * Block CG only: "ekfac" preconditions every block with the EK-FAC inverse of `kroneckerInverse`, built once
   * per call (see `AlphaGradientOptions.preconditioner` for when that pays); "none" never. "auto" (default) races
   * them where there are ≥ 8 blocks: the first CG block runs plain, the second preconditioned, and the rest use
   * whichever cost fewer multiply-adds per solve (iterations × (2 n (d+1) K for the HVP, + 2 (K (d+1)² + K² (d+1))
   * for the preconditioner)); `SolverReport.cgPreconditioner` gives the numbers. The price when plain wins is one
   * EK-FAC build and one slower block (CUB-sized preset, 5 blocks of 13: 96.8 s against 84.5 s), hence the 8.
   */
  preconditioner?: "none" | "ekfac" | "auto";
  /** Called after each block-CG solve with its diagnostics (iterations, reads, residuals, preconditioner). */
  onCgSolve?: (diagnostics: Omit<CgResult, "solution">) => void;
  /** Receives each block's full score matrix I `[n, b]` (row-major, train-major), e.g. to stream it to disk. */
  onBlock?: (start: number, scores: Float32Array, blockSize: number) => void | Promise<void>;
  /** Called after each block with (test points done, test points). */
  onProgress?: (done: number, total: number) => void;
}

/** The inverse-HVP approximation of the eigenvalue-corrected Kronecker factorisation (EK-FAC, George et al. 2018). */
export interface KroneckerInverse {
  /** ≈ H⁻¹ V for V `[b, K, d+1]`. */
  apply(v: tf.Tensor3D): tf.Tensor3D;
  /**
   * ≈ gᵀ H⁻¹ g for rank-one gradients g = r hᵀ (residuals r `[b, K]`, inputs h `[b, d+1]`) in O(K² + d²) each:
   * in the eigenbasis g is (Q_Aᵀr)(Q_Cᵀh)ᵀ, so gᵀH⁻¹g = Σ_ab (u_aᵀr)² (v_bᵀh)² / (Λ_ab + λ). Returns `[b]`.
   */
  rankOneQuadratic(residuals: tf.Tensor2D, inputs: tf.Tensor2D): tf.Tensor1D;
  /** Frees the eigenbases and eigenvalues. */
  dispose(): void;
}

/**
 * Builds the EK-FAC inverse of H at the fit: A = Σ α_i (diag p_i − p_i p_iᵀ) (K×K) and C = Σ α_i h_i h_iᵀ
 * ((d+1)×(d+1)) give the Kronecker eigenbasis Q_A ⊗ Q_C; the eigenvalues are then corrected to the exact
 * diagonal of H in that basis, Λ_ab = Σ_i α_i (u_aᵀ A_i u_a)(v_bᵀ h_i)², so H⁻¹ ≈ Q (Λ + λ)⁻¹ Qᵀ.
 */
export async function kroneckerInverse(fit: HeadFit, train: LabeledFeatures): Promise<KroneckerInverse> {
  checkSplit(fit, train, "train");
  const k = fit.numClasses, n = train.features.shape[0], width = fit.weights.shape[1];
  const [aFactor, cFactor] = tf.tidy(() => {
    const p = headProbabilities(fit, train.features);
    const alpha = tf.tensor2d(fit.alpha, [n, 1]);
    const ap = tf.mul(alpha, p);
    const a = tf.sub(tf.diag(tf.sum(ap, 0)), tf.matMul(ap.transpose(), p));
    const h = tf.concat([train.features, tf.ones([n, 1])], 1);
    return [a, tf.matMul(tf.mul(alpha, h).transpose(), h)];
  });
  const [aValues, cValues] = await readPacked([aFactor, cFactor]);
  const eigenA = symmetricEigen(Float64Array.from(aValues), k);
  const eigenC = symmetricEigen(Float64Array.from(cValues), width);
  tf.dispose([aFactor, cFactor]);
  const qa = tf.tensor2d(Float32Array.from(eigenA.vectors), [k, k]);
  const qc = tf.tensor2d(Float32Array.from(eigenC.vectors), [width, width]);
  const denominator = tf.tidy(() => {
    const p = headProbabilities(fit, train.features); // [n, K]
    const alpha = tf.tensor2d(fit.alpha, [n, 1]);
    const quadratic = tf.sub(tf.matMul(p, tf.square(qa)), tf.square(tf.matMul(p, qa))); // u_aᵀ A_i u_a  [n, K]
    const projected = tf.square(
      tf.add(
        tf.matMul(train.features, qc.slice([0, 0], [width - 1, width])),
        qc.slice([width - 1, 0], [1, width]),
      ),
    ); // (v_bᵀ h_i)²  [n, D]
    return tf.add(tf.matMul(tf.mul(alpha, quadratic).transpose(), projected), fit.lambda); // [K, D]
  });
  const qaT = tf.tidy(() => qa.transpose()), qcT = tf.tidy(() => qc.transpose());
  return {
    apply: (v) =>
      tf.tidy(() => {
        const b = v.shape[0];
        // Ṽ = Q_Aᵀ V Q_C per direction, as 2-D products: rows of V are [b·K, D]
        const right = tf.matMul(v.reshape([b * k, width]), qc).reshape([b, k, width]);
        const left = tf.matMul(qaT, right.transpose([1, 0, 2]).reshape([k, b * width])).reshape([
          k,
          b,
          width,
        ]);
        const scaled = tf.div(left, denominator.reshape([k, 1, width]));
        const back = tf.matMul(qa, scaled.reshape([k, b * width])).reshape([k, b, width]).transpose([
          1,
          0,
          2,
        ]);
        return tf.matMul(back.reshape([b * k, width]), qcT).reshape([b, k, width]) as tf.Tensor3D;
      }),
    rankOneQuadratic: (residuals, inputs) =>
      tf.tidy(() => {
        const u = tf.square(tf.matMul(residuals, qa)); // (u_aᵀ r)²  [b, K]
        const v = tf.square(tf.matMul(inputs, qc)); // (v_bᵀ h)²  [b, D]
        return tf.sum(tf.mul(u, tf.matMul(v, tf.reciprocal(denominator).transpose())), 1) as tf.Tensor1D;
      }),
    dispose: () => tf.dispose([qa, qc, qaT, qcT, denominator]),
  };
}

/** The factors of ∇ℓ_x = r_x h_xᵀ: residuals r_x = p_x − e_{y_x} [b, K] and inputs h_x = [x, 1] [b, d+1] (in a tidy). */
function gradientFactors(fit: HeadFit, block: LabeledFeatures) {
  const b = block.labels.length;
  const z = logits(fit.weights, block.features);
  const y = tf.oneHot(tf.tensor1d(block.labels, "int32"), fit.numClasses).toFloat();
  return { z, y, r: tf.sub(tf.softmax(z), y), h: tf.concat([block.features, tf.ones([b, 1])], 1) };
}

/** Per-sample loss gradients ∇ℓ_x = (p_x − e_{y_x}) h_xᵀ as a batch [b, K, d+1], and the losses ℓ_x [b]. */
function lossGradients(fit: HeadFit, block: LabeledFeatures) {
  const b = block.labels.length, k = fit.numClasses, width = fit.weights.shape[1];
  return tf.tidy(() => {
    const { z, y, r, h } = gradientFactors(fit, block);
    return {
      grads: tf.mul(r.reshape([b, k, 1]), h.reshape([b, 1, width])) as tf.Tensor3D,
      losses: tf.neg(tf.sum(tf.mul(y, tf.logSoftmax(z)), 1)),
    };
  });
}

/**
 * The H⁻¹ V solver of `testInfluence` and `selfInfluence` over blocks of `points` (rows `start … start + b`):
 * EK-FAC, the direct factor or block CG (`chooseHessianSolver` picks for "direct", and for "auto" given
 * `direct.cgIterationsEstimate`), with the default block size min(64, 2^24 / (n K)) — ≤ 64 MiB per [n, b, K]
 * intermediate, beyond which WASM's heap and WebGPU's 128 MiB binding limit fail.
 *
 * "auto" without an estimate, where `directRuledOut` allows the factor, decides by measuring (ski rental): the
 * first block runs block CG for at most I* = F / (P c) iterations, the break-even at which CG for all P solves
 * (c multiply-adds per solve and iteration) costs as much as factoring H (F, `solverCosts`). If it converges, CG
 * stays; if not, H is factored and serves that block and the rest. Either way the work is at most (1 + b/P) times
 * that of the better choice, had the first block's iteration count been known — no guess of it is needed.
 */
async function blockSolver(
  fit: HeadFit,
  train: LabeledFeatures,
  points: number,
  options: Pick<
    TestInfluenceOptions,
    "method" | "blockSize" | "tol" | "maxIter" | "direct" | "preconditioner" | "onCgSolve"
  >,
) {
  const n = train.features.shape[0], k = fit.numClasses;
  const requested = options.method ?? "auto", direct = { tol: options.tol, ...options.direct };
  const tol = options.tol ?? 1e-6;
  const operator = hessianOperator(fit, train);
  const approximation = requested === "ekfac" ? await kroneckerInverse(fit, train) : undefined;
  const measure = requested === "auto" && direct.cgIterationsEstimate === undefined &&
    directRuledOut(fit, train, direct) === undefined;
  let chosen: Awaited<ReturnType<typeof chooseHessianSolver>> = measure
    ? { report: { requested, method: "exact", reason: "no block was solved" } }
    : await chooseHessianSolver(fit, train, requested, { ...direct, rightHandSides: points }).catch(
      (error) => {
        operator.dispose();
        approximation?.dispose();
        throw error;
      },
    );
  const blockSize = options.blockSize ?? Math.max(1, Math.min(64, Math.floor(2 ** 24 / (n * k))));
  const mode = options.preconditioner ?? "auto";
  let preconditioner = mode === "ekfac" && !approximation && !chosen.factor
    ? await kroneckerInverse(fit, train)
    : undefined;
  // "auto" with ≥ 8 blocks: the first CG block runs plain, the second EK-FAC-preconditioned, then the cheaper
  const race: { stage: "plain" | "trial" | "done"; plain: number; note?: string } | undefined =
    mode === "auto" && !approximation && Math.ceil(points / blockSize) >= 8
      ? { stage: "plain", plain: 0 }
      : undefined;
  let lastCg: Omit<CgResult, "solution"> | undefined;
  const advanceRace = () => {
    if (!race || !lastCg || race.stage === "done") return;
    if (race.stage === "plain") {
      [race.plain, race.stage] = [lastCg.iterations, "trial"];
      return;
    }
    // multiply-adds per solve and iteration: the HVP (`solverCosts`); the EK-FAC inverse 2 (K (d+1)² + K² (d+1))
    const width = fit.weights.shape[1],
      hvp = solverCosts(fit, train, 1, 1).cg,
      apply = 2 * (k * width ** 2 + k ** 2 * width);
    const trial = lastCg.iterations, failure = lastCg.preconditioner.failure;
    const used = !failure && trial * (hvp + apply) < race.plain * hvp;
    race.note =
      `block 1 plain: ${race.plain} iterations (${formatGmac(race.plain * hvp)} per solve); block 2 ` +
      `EK-FAC-preconditioned: ${trial} iterations (${formatGmac(trial * (hvp + apply))} per solve)` +
      `${failure ? `, preconditioner dropped (${failure})` : ""}: ${used ? "EK-FAC" : "none"} for the rest`;
    race.stage = "done";
    if (!used) {
      preconditioner?.dispose();
      preconditioner = undefined;
    }
  };
  const conjugateGradient = async (grads: tf.Tensor3D, maxIter = options.maxIter) => {
    const inverse = preconditioner;
    const { solution, ...diagnostics } = await blockConjugateGradient(
      (v) => operator.apply(v as tf.Tensor3D),
      grads,
      {
        tol,
        maxIter,
        preconditioner: inverse && ((v) => inverse.apply(v as tf.Tensor3D)),
      },
    );
    options.onCgSolve?.(diagnostics);
    lastCg = diagnostics;
    return { solution: solution as tf.Tensor3D, diagnostics };
  };
  // the first block of a measuring "auto" (see the JSDoc)
  const measured = async (grads: tf.Tensor3D): Promise<tf.Tensor3D> => {
    const costs = solverCosts(fit, train, points, 1),
      breakEven = Math.max(1, Math.ceil(costs.direct / costs.cg));
    const userCap = options.maxIter ?? Infinity;
    const run = await conjugateGradient(grads, Math.min(breakEven, userCap));
    const iterations = run.diagnostics.iterations;
    const firstBlock = `first block by block CG: `;
    if (run.diagnostics.relativeResiduals.every((r) => r <= tol) || userCap < breakEven) {
      chosen = {
        report: {
          requested,
          method: "exact",
          reason:
            `${firstBlock}${iterations} iterations ≤ ${breakEven}, the break-even against factorising H ` +
            `(≈ ${formatGmac(costs.direct)} for ${points} solves): block CG`,
        },
      };
      return run.solution;
    }
    run.solution.dispose(); // the block is solved again, by the factor (or by CG without the cap)
    chosen = await chooseHessianSolver(fit, train, "direct", {
      ...direct,
      because:
        `${firstBlock}not converged in ${breakEven} iterations, the break-even against factorising H ` +
        `(≈ ${formatGmac(costs.direct)} for ${points} solves): direct`,
    });
    chosen.report.requested = requested;
    if (!chosen.factor) return (await conjugateGradient(grads)).solution; // not positive definite: CG after all
    return await chosen.factor.solve(grads);
  };
  let first = measure;
  return {
    operator,
    get report(): SolverReport {
      return race?.note ? { ...chosen.report, cgPreconditioner: race.note } : chosen.report;
    },
    blockSize,
    block: (points: LabeledFeatures, start: number, b: number): LabeledFeatures => ({
      features: tf.tidy(() => points.features.slice([start, 0], [b, -1])),
      labels: points.labels.subarray(start, start + b),
    }),
    solve: async (grads: tf.Tensor3D): Promise<tf.Tensor3D> => {
      await yieldToEventLoop(); // Ctrl-C between blocks
      if (approximation) return approximation.apply(grads);
      let solution: tf.Tensor3D;
      if (first) {
        first = false;
        solution = await measured(grads);
      } else if (chosen.factor) return await chosen.factor.solve(grads);
      else {
        if (race?.stage === "trial") preconditioner ??= await kroneckerInverse(fit, train);
        solution = (await conjugateGradient(grads)).solution;
      }
      if (!chosen.factor) advanceRace(); // this block was solved by CG
      return solution;
    },
    dispose: () => {
      operator.dispose();
      approximation?.dispose();
      preconditioner?.dispose();
      chosen.factor?.dispose();
    },
  };
}

/**
 * For every test point x, the influence of every training point on ℓ_x and its top-K proponents and opponents;
 * streams over blocks of test points (memory O(n · blockSize)). See `TestInfluenceOptions.method` for the cost.
 */
export async function testInfluence(
  fit: HeadFit,
  train: LabeledFeatures,
  test: LabeledFeatures,
  options: TestInfluenceOptions = {},
): Promise<TestInfluence[]> {
  checkSplit(fit, test, "test");
  const n = train.features.shape[0],
    t = test.features.shape[0],
    k = fit.numClasses,
    width = fit.weights.shape[1];
  const topK = Math.min(options.topK ?? 10, n);
  const solver = await blockSolver(fit, train, t, options);
  const trainResidual = tf.tidy(() => tf.sub(solver.operator.probabilities, solver.operator.problem.oneHot)); // [n, K]
  const out: TestInfluence[] = [];
  try {
    for (let start = 0; start < t; start += solver.blockSize) {
      const b = Math.min(solver.blockSize, t - start);
      const block = solver.block(test, start, b);
      const { grads, losses } = lossGradients(fit, block);
      const solution = await solver.solve(grads);
      // I(i, x) = −(p_i − e_{y_i})ᵀ S_x h_i for all i: one product [n, d]·[d, bK]
      const scores = tf.tidy(() => {
        const sh = logits(solution.reshape([b * k, width]) as tf.Tensor2D, train.features).reshape([n, b, k]);
        return tf.neg(tf.sum(tf.mul(sh, trainResidual.reshape([n, 1, k])), 2)) as tf.Tensor2D; // [n, b]
      });
      const ranked = tf.tidy(() => {
        const byTest = scores.transpose();
        const low = tf.topk(tf.neg(byTest), topK), high = tf.topk(byTest, topK);
        return [tf.neg(low.values), low.indices, high.values, high.indices];
      });
      // one read for all five (indices < 2^24 are exact in float32)
      const [lowValues, lowIndices, highValues, highIndices, lossValues] = await readPacked([
        ...ranked,
        losses,
      ]);
      if (options.onBlock) await options.onBlock(start, (await readValues(scores)) as Float32Array, b);
      tf.dispose([block.features, grads, losses, solution, scores, ...ranked]);
      for (let j = 0; j < b; j++) {
        const pick = (values: ArrayLike<number>, indices: ArrayLike<number>) =>
          Array.from(
            { length: topK },
            (_, q) => ({ index: indices[j * topK + q], influence: values[j * topK + q] }),
          );
        out.push({
          loss: lossValues[j],
          proponents: pick(lowValues, lowIndices),
          opponents: pick(highValues, highIndices),
        });
      }
      options.onProgress?.(start + b, t);
    }
    options.onSolver?.(solver.report);
  } finally {
    trainResidual.dispose();
    solver.dispose();
  }
  return out;
}

/**
 * Self-influence s_x = ∇ℓ_xᵀ H⁻¹ ∇ℓ_x of every point of `points` (Koh & Liang 2017; for a training point it equals
 * −I(x, x) of `testInfluence`) without forming the [n, b] score matrix. Exact, direct, auto: per block one H⁻¹ solve
 * of the per-sample gradients (block CG or the direct factor, see `TestInfluenceOptions.method`), then
 * Σ ∇ℓ_x ⊙ H⁻¹∇ℓ_x. EK-FAC: `rankOneQuadratic`, O(K² + d² + K d) per point.
 */
export async function selfInfluence(
  fit: HeadFit,
  train: LabeledFeatures,
  points: LabeledFeatures,
  options: Omit<TestInfluenceOptions, "topK" | "onBlock"> = {},
): Promise<Float32Array> {
  checkSplit(fit, points, "points");
  const t = points.features.shape[0];
  if (options.method === "ekfac") {
    const inverse = await kroneckerInverse(fit, train);
    // rows per block: ≤ 2^24 floats (64 MiB) per [b, d+1] or [b, K] intermediate
    const rows = options.blockSize ?? Math.floor(2 ** 24 / Math.max(fit.weights.shape[1], fit.numClasses));
    const out = new Float32Array(t);
    try {
      for (let start = 0; start < t; start += rows) {
        const b = Math.min(rows, t - start);
        const self = tf.tidy(() => {
          const features = points.features.slice([start, 0], [b, -1]) as tf.Tensor2D;
          const { r, h } = gradientFactors(fit, {
            features,
            labels: points.labels.subarray(start, start + b),
          });
          return inverse.rankOneQuadratic(r as tf.Tensor2D, h as tf.Tensor2D);
        });
        out.set((await readValues(self)) as Float32Array, start);
        self.dispose();
        options.onProgress?.(start + b, t);
      }
      options.onSolver?.({ requested: "ekfac", method: "ekfac", reason: "requested" });
    } finally {
      inverse.dispose();
    }
    return out;
  }
  const solver = await blockSolver(fit, train, t, options);
  const out = new Float32Array(t);
  try {
    for (let start = 0; start < t; start += solver.blockSize) {
      const b = Math.min(solver.blockSize, t - start);
      const block = solver.block(points, start, b);
      const { grads, losses } = lossGradients(fit, block);
      const solution = await solver.solve(grads);
      const self = tf.tidy(() => tf.sum(tf.mul(grads, solution), [1, 2]));
      out.set((await readValues(self)) as Float32Array, start);
      tf.dispose([block.features, grads, losses, solution, self]);
      options.onProgress?.(start + b, t);
    }
    options.onSolver?.(solver.report);
  } finally {
    solver.dispose();
  }
  return out;
}
