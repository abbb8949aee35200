/**
 * Block (preconditioned) conjugate gradient for H S = B with a symmetric positive definite operator (private to
 * `lib/carrot/`).
 *
 * The b right-hand sides are independent PCG runs that share every operator application (one batched
 * Hessian-vector product per iteration): with z = M⁻¹r, α_j = rᵀz / pᵀHp, β_j = r₊ᵀz₊ / rᵀz, p₊ = z₊ + β_j p
 * (Saad, Iterative Methods for Sparse Linear Systems, Alg. 9.1; M = I without a preconditioner). Each column stops
 * when ‖r_j‖ ≤ tol·‖b_j‖. Reads are the cost model (`_reads.ts`), so the loop state stays on the device and the
 * per-column stop is a mask there (a converged column takes steps of 0); the solver reads one packed tensor every
 * `checkEvery` iterations (default 4: ≤ 0.25 reads per iteration, at the price of at most checkEvery − 1
 * iterations past convergence) holding the coefficients and residuals of the iterations since the last check.
 * Column 0's Lanczos tridiagonal is recovered from its coefficients (T_jj = 1/α_j + β_{j−1}/α_{j−1},
 * T_{j,j+1} = √β_j / α_j; Saad §6.7.3), whose extreme Ritz values estimate the extreme eigenvalues of M⁻¹H.
 *
 * Failure modes of a preconditioner, detected at the checks: non-positive curvature pᵀHp ≤ 0 or rᵀM⁻¹r < 0 in
 * float32 (M⁻¹ not positive definite, or H not in float32), the residual growing 100× above its best, or no column
 * improving its best residual by 1% for `stallChecks` checks in a row. Then the solve restarts from the current
 * iterate without the preconditioner (r = B − H S, one more product) and the result says so.
 */
import * as tf from "@tensorflow/tfjs";
import { yieldToEventLoop } from "../_yield.ts";
import { tridiagonalEigenvalues } from "./_linalg.ts";
import { readPacked, type ReadTally } from "./_reads.ts";

/** Options of `blockConjugateGradient`. */
export interface CgOptions {
  /** Relative residual tolerance per column (default 1e-6). */
  tol?: number;
  /** Iteration cap (default: the dimension, at which exact arithmetic CG terminates). */
  maxIter?: number;
  /** v ↦ M⁻¹v on the shape of B for a symmetric positive definite M ≈ H (default: none, plain CG). */
  preconditioner?: (v: tf.Tensor) => tf.Tensor;
  /** Iterations between reads (default 4). */
  checkEvery?: number;
  /** Checks without a 1% improvement of any column's best residual before a preconditioned run is abandoned (default 5). */
  stallChecks?: number;
  /** Counts this solve's reads (besides `CgResult.reads`). */
  tally?: ReadTally;
  /**
   * A starting point S₀ on the shape of B (not consumed), e.g. the solution of a nearby system: the run starts
   * from r = B − H S₀ (one more product). Default 0.
   */
  initial?: tf.Tensor;
}

/** Why a preconditioned run was abandoned for plain CG. */
export type PreconditionerFailure = "non-positive curvature" | "residual growth" | "stall";

/** The solution and per-column diagnostics. */
export interface CgResult {
  /** S `[b, ...]`, owned by the caller. */
  solution: tf.Tensor;
  /** Iterations run (operator applications, the restart's residual product excluded), all columns together. */
  iterations: number;
  /** Final ‖r_j‖ / ‖b_j‖ per column. */
  relativeResiduals: Float64Array;
  /** ‖r‖/‖b‖ after each iteration, for column 0. */
  residualHistory: number[];
  /**
   * Extreme Ritz values of column 0's Lanczos tridiagonal since the last (re)start: estimates of λ_min and λ_max of
   * H, or of M⁻¹H when the run ended preconditioned.
   */
  eigenvalueEstimates: { min: number; max: number };
  /** GPU→CPU reads of the solve (one per check). */
  reads: number;
  /** Whether a preconditioner was given, and why it was dropped if it was (then the run finished as plain CG). */
  preconditioner: { used: boolean; failure?: PreconditionerFailure; restartedAt?: number };
  /** Columns stopped by pᵀHp ≤ 0 without a preconditioner to blame (float32 breakdown); their residual stays as is. */
  breakdowns: number;
}

const rowSums = (t: tf.Tensor, b: number) => tf.sum(t.reshape([b, -1]), 1, true); // [b, 1]

/** The device state of one (P)CG run. */
interface State {
  x: tf.Tensor;
  r: tf.Tensor;
  p: tf.Tensor;
  /** rᵀz per column [b, 1]. */
  rz: tf.Tensor2D;
  /** 1 while a column runs, 0 once converged or broken down [b, 1]. */
  active: tf.Tensor2D;
  /** 1 for a column that met non-positive curvature [b, 1]. */
  failed: tf.Tensor2D;
}

const disposeState = (s: State) => tf.dispose([s.x, s.r, s.p, s.rz, s.active, s.failed]);

/** Solves H S = B for B `[b, ...]` with `apply(V)` = H V on the same shape; see the module JSDoc. */
export async function blockConjugateGradient(
  apply: (v: tf.Tensor) => tf.Tensor,
  rhs: tf.Tensor,
  options: CgOptions = {},
): Promise<CgResult> {
  const b = rhs.shape[0];
  const dimension = rhs.size / b;
  const tol = options.tol ?? 1e-6, maxIter = Math.max(1, options.maxIter ?? dimension);
  const checkEvery = Math.max(1, Math.floor(options.checkEvery ?? 4)), stallChecks = options.stallChecks ?? 5;
  const shape = [b, ...Array(rhs.rank - 1).fill(1)];
  const tally: ReadTally = { reads: 0 };
  const read = async (tensors: tf.Tensor[]) => {
    const values = await readPacked(tensors, tally);
    if (options.tally) options.tally.reads++;
    return values;
  };
  let precondition = options.preconditioner;
  const result: Pick<CgResult, "preconditioner" | "breakdowns"> = {
    preconditioner: { used: precondition !== undefined },
    breakdowns: 0,
  };
  const [rhsSquared, threshold] = tf.tidy(() => {
    const squared = rowSums(tf.square(rhs), b) as tf.Tensor2D;
    return [squared, tf.mul(tol * tol, squared) as tf.Tensor2D];
  });
  // a (re)start from x: r = B − H x (x = 0: r = B), z = M⁻¹r, p = z
  const begin = (x: tf.Tensor, fromZero: boolean): State =>
    tf.tidy(() => {
      const r = fromZero ? rhs.clone() : tf.sub(rhs, apply(x));
      const z = precondition ? precondition(r) : r;
      const rz = rowSums(tf.mul(r, z), b) as tf.Tensor2D;
      const active = tf.cast(tf.greater(rowSums(tf.square(r), b), threshold), "float32") as tf.Tensor2D;
      return { x: x.clone(), r, p: z.clone(), rz, active, failed: tf.zerosLike(active) };
    });
  let state: State;
  if (options.initial) state = begin(options.initial, false);
  else {
    const zero = tf.zerosLike(rhs);
    state = begin(zero, true);
    zero.dispose();
  }
  const history: number[] = [];
  let alphas: number[] = [], betas: number[] = [];
  let rhsNorm: Float64Array | undefined;
  const relative = new Float64Array(b);
  let best = new Float64Array(b).fill(Infinity), sinceImprovement = 0;
  let iterations = 0;
  let records: tf.Tensor[] = []; // per iteration [2 + b]: α₀, β₀, ‖r_j‖² of every column
  try {
    while (true) {
      await yieldToEventLoop(); // Ctrl-C during long solves
      const s = state;
      const next = tf.tidy(() => {
        const hp = apply(s.p);
        const curvature = rowSums(tf.mul(s.p, hp), b);
        const healthy = tf.logicalAnd(tf.greater(curvature, 0), tf.greater(s.rz, 0));
        const live = tf.mul(s.active, tf.cast(healthy, "float32")); // converged or broken columns take step 0
        const step = tf.mul(live, tf.divNoNan(s.rz, curvature));
        const x = tf.add(s.x, tf.mul(step.reshape(shape), s.p));
        const r = tf.sub(s.r, tf.mul(step.reshape(shape), hp));
        const z = precondition ? precondition(r) : r;
        const rz = rowSums(tf.mul(r, z), b) as tf.Tensor2D;
        const rr = rowSums(tf.square(r), b);
        const beta = tf.mul(live, tf.divNoNan(rz, s.rz));
        const p = tf.add(z, tf.mul(beta.reshape(shape), s.p));
        const broke = tf.mul(s.active, tf.sub(1, tf.cast(healthy, "float32")));
        const active = tf.mul(live, tf.cast(tf.greater(rr, threshold), "float32")) as tf.Tensor2D;
        const failed = tf.maximum(s.failed, broke) as tf.Tensor2D;
        const record = tf.concat([step.slice([0, 0], [1, 1]), beta.slice([0, 0], [1, 1]), rr]).reshape([-1]);
        return { state: { x, r, p, rz, active, failed }, record };
      });
      disposeState(s);
      state = next.state;
      records.push(next.record);
      iterations++;
      if (records.length < checkEvery && iterations < maxIter) continue;
      // the check: one read of the records since the last one, the masks and ‖b_j‖²
      const values = await read([...records, state.active, state.failed, rhsSquared]);
      tf.dispose(records);
      const [active, failed, squared] = values.slice(-3);
      rhsNorm ??= Float64Array.from(squared, Math.sqrt);
      let improved = false, grew = false;
      for (const record of values.slice(0, -3)) {
        if (record[0] > 0) {
          alphas.push(record[0]);
          betas.push(record[1]);
        }
        for (let j = 0; j < b; j++) {
          relative[j] = rhsNorm[j] > 0 ? Math.sqrt(record[2 + j]) / rhsNorm[j] : 0;
          if (relative[j] < 0.9 * best[j]) [best[j], improved] = [relative[j], true];
          grew ||= !(relative[j] <= 100 * Math.min(best[j], 1)); // NaN and Inf count as growth
        }
        history.push(relative[0]);
      }
      records = [];
      sinceImprovement = improved ? 0 : sinceImprovement + 1;
      const running = active.some((v) => v > 0);
      let failure: PreconditionerFailure | undefined;
      if (precondition) {
        if (failed.some((v) => v > 0)) failure = "non-positive curvature";
        else if (grew) failure = "residual growth";
        else if (running && sinceImprovement >= stallChecks) failure = "stall";
      } else result.breakdowns = failed.reduce((n, v) => n + (v > 0 ? 1 : 0), 0);
      if (failure && iterations < maxIter) {
        // restart from the current iterate (zero where it is not finite) as plain CG
        result.preconditioner = { used: true, failure, restartedAt: iterations };
        precondition = undefined;
        const x = tf.tidy(() => tf.where(tf.isFinite(state.x), state.x, tf.zerosLike(state.x)));
        disposeState(state);
        state = begin(x, false);
        x.dispose();
        [alphas, betas] = [[], []];
        best = new Float64Array(b).fill(Infinity);
        sinceImprovement = 0;
        continue;
      }
      if (!running || iterations >= maxIter) break;
    }
  } finally {
    tf.dispose(records);
    tf.dispose([rhsSquared, threshold]);
  }
  tf.dispose([state.r, state.p, state.rz, state.active, state.failed]);
  const diagonal = alphas.map((a, j) => 1 / a + (j > 0 ? betas[j - 1] / alphas[j - 1] : 0));
  const offDiagonal = alphas.slice(0, -1).map((a, j) => Math.sqrt(betas[j]) / a);
  const ritz = diagonal.length ? tridiagonalEigenvalues(diagonal, offDiagonal) : Float64Array.of(NaN);
  return {
    solution: state.x,
    iterations,
    relativeResiduals: relative,
    residualHistory: history,
    eigenvalueEstimates: { min: ritz[0], max: ritz[ritz.length - 1] },
    reads: tally.reads,
    ...result,
  };
}
