/**
 * A direct H⁻¹ for mid-sized heads: the Hessian of J(W; α) = Σ_i α_i CE(W h_i, y_i) + (λ/2)‖W‖²_F is assembled
 * densely and factored once, H + δI = L Lᵀ (δ = 0 unless float32 needs it), after which every H⁻¹ G is two
 * triangular solves and a step or two of iterative refinement — exact influence for many test points at the price
 * of one factorisation instead of one conjugate-gradient run per block.
 *
 * Assembly. With h_i = [x_i; 1], p_i = softmax(W h_i) and H̃ = [X, 1] `[n, d+1]`, the block of classes (a, b) is
 *   H_ab = H̃ᵀ diag(c_ab) H̃ + λ δ_ab I,   c_ab,i = α_i p_ia (δ_ab − p_ib),
 * computed for a ≥ b only (H is symmetric) as 2-D float32 GEMMs `[A(d+1), n]·[n, d+1]` on the active backend,
 * K(K+1)/2 block products of 2n(d+1)² flops. λ (and δ) are added in float64 when a diagonal tile is factored.
 *
 * Factorisation: right-looking blocked Cholesky over tiles of at most `tileSize` rows (each class block split
 * evenly), N = K(d+1). Per tile column j the diagonal tile is read back and factored in float64 JS,
 * L_jj L_jjᵀ = A_jj + (λ + δ)I; the panel becomes L_ij = A_ij L_jj⁻ᵀ (one GEMM with L_jj⁻¹ inverted in float64,
 * rounded to float32) and the trailing lower trapezoid is updated A_ik ← A_ik − L_ij L_kjᵀ by float32 GEMMs
 * (≈ N³/3 flops). In exact arithmetic every pivot of H + δI is ≥ λ + δ (H − λI is positive semi-definite), so a
 * pivot below (λ + δ)/2 means float32 rounding has swamped the smallest curvature: the factorisation is restarted
 * with damping δ = max(λ·10⁻⁶, u·max_i H_ii) (u = 2⁻²⁴, below which δ cannot move a float32 pivot), ×10 per retry,
 * re-assembling H each time (only one copy is ever held).
 *
 * Solves, for G `[b, K, d+1]`: forward substitution L Y = Gᵀ by tile columns (Y_j = L_jj⁻¹ R_j, then
 * R_{>j} −= L_{>j,j} Y_j) and backward substitution in the transposed layout, X_jᵀ = (Y_jᵀ − X_{>j}ᵀ L_{>j,j}) L_jj⁻¹:
 * every product is a plain 2-D GEMM (tfjs-wasm runs products with transpose flags ~10× slower). Then iterative
 * refinement (Higham, Accuracy and Stability of Numerical Algorithms, §12.1): R = G − H X with the exact
 * matrix-free Hessian-vector product of `_objective.ts` (the operator the CG path uses), X ← X + (L Lᵀ)⁻¹ R, until
 * max_j ‖R_j‖/‖G_j‖ ≤ tol, the residual stops halving (the float32 floor), or `maxRefinementSteps`. Refinement
 * removes the float32 assembly and factorisation errors, and the bias of a damping δ ≪ λ (each step shrinks it by
 * δ/(λ_min + δ)); with δ ≳ λ_min it stalls, and `diagnostics.relativeResidual` says where.
 */
import * as tf from "@tensorflow/tfjs";
import { checkLabels, type LabeledFeatures } from "./labeled_features.ts";
import { type HeadFit, headProbabilities, problemOf } from "./head.ts";
import { disposeProblem, hessianVectorProductBatch } from "./_objective.ts";
import { choleskyFactor, lowerTriangularInverse } from "./_linalg.ts";
import { yieldToEventLoop } from "../_yield.ts";
import { readScalar, readValues } from "./_reads.ts";

/** Options of `factorHessian` and of the direct path of `testInfluence` / `selfInfluence`. */
export interface DirectSolverOptions {
  /** Bytes the factorisation may hold (estimate of `directFactorBytes`; default 1.5 GiB). */
  memoryBudget?: number;
  /** Largest K(d+1) that method "auto" factors (default 16384); "direct" ignores it. */
  maxSize?: number;
  /**
   * Method "auto": the CG iterations assumed per right-hand side when comparing costs up front. Default: none —
   * `testInfluence` and `selfInfluence` measure them on their first block instead (the CUB-sized preset takes
   * 35–45, the MNIST-shaped problem ~300).
   */
  cgIterationsEstimate?: number;
  /** Largest tile of the blocked Cholesky, in rows (default 512). */
  tileSize?: number;
  /**
   * Largest operand of the assembly in floats (default 2²⁴ = 64 MiB, under WebGPU's 128 MiB binding limit):
   * samples and classes are chunked to stay below it.
   */
  chunkFloats?: number;
  /**
   * Refinement target: max_j ‖G_j − H X_j‖ / ‖G_j‖ ≤ tol (default 1e-5). The float32 Hessian-vector product
   * measures residuals down to ~1e-6, so a tighter target mostly buys a step that cannot succeed; CG's 1e-6 is
   * on its recursive residual, whose true value is ~1e-5 in float32 (MNIST-shaped problem: 1.7e-5).
   */
  tol?: number;
  /** Refinement steps per solve at most (default 5). */
  maxRefinementSteps?: number;
  /** Damped restarts at most when a pivot fails (default 6). */
  maxDampingRetries?: number;
}

/** What the direct path did: sizes, damping, refinement and wall times. */
export interface DirectDiagnostics {
  /** Always "direct". */
  method: "direct";
  /** N = K(d+1). */
  size: number;
  /** Tiles of the blocked Cholesky. */
  tiles: number;
  /** Estimated peak bytes of the factorisation (`directFactorBytes`). */
  bytes: number;
  /** δ added to H's diagonal in the factor (0 unless a pivot failed); refinement still targets H itself. */
  damping: number;
  /** Factorisations restarted with a larger δ. */
  dampingRetries: number;
  /** Smallest pivot of the accepted factor divided by λ + δ (≥ 1 in exact arithmetic). */
  minPivotRatio: number;
  /** Solves done so far. */
  solves: number;
  /** Most refinement steps any solve took so far. */
  refinementSteps: number;
  /** Worst final max_j ‖G_j − H X_j‖ / ‖G_j‖ over the solves so far. */
  relativeResidual: number;
  /** Wall seconds of assembly and factorisation (summed over damped restarts) and of all solves so far. */
  seconds: { assemble: number; factor: number; solve: number };
}

/** H⁻¹ by a stored Cholesky factor; see the module JSDoc. */
export interface HessianFactor {
  /** X = H⁻¹ G for G `[b, K, d+1]` (refined); the caller owns X. Updates `diagnostics`. */
  solve(grads: tf.Tensor3D): Promise<tf.Tensor3D>;
  /** Sizes, damping, refinement figures (cumulative over solves) and times. */
  diagnostics: DirectDiagnostics;
  /** Frees the factor's tensors. */
  dispose(): void;
}

/** Thrown by `factorHessian` when H + δI has no usable float32 Cholesky factor for any δ it may try. */
export class HessianNotPositiveDefiniteError extends RangeError {
  /** The last δ tried. */
  readonly damping: number;
  /** Damped restarts made. */
  readonly retries: number;
  /** The failing pivot (of H + δI, in float64) and its row. */
  readonly pivot: { value: number; row: number };
  /** The error with its message, the last δ tried, the restarts made and the failing pivot. */
  constructor(message: string, damping: number, retries: number, pivot: { value: number; row: number }) {
    super(message);
    this.name = "HessianNotPositiveDefiniteError";
    this.damping = damping;
    this.retries = retries;
    this.pivot = pivot;
  }
}

/** Influence solvers: "auto" chooses between "direct" and "exact" (block CG); "ekfac" approximates. */
export type InfluenceMethod = "auto" | "direct" | "exact" | "ekfac";

/** Which H⁻¹ solver an influence computation used, and why. */
export interface SolverReport {
  /** The method asked for. */
  requested: InfluenceMethod;
  /** The method used. */
  method: "direct" | "exact" | "ekfac";
  /** Why: "requested", or the size, memory or positive-definiteness test that decided. */
  reason: string;
  /** The direct path's diagnostics when `method` is "direct". */
  direct?: DirectDiagnostics;
  /** Block CG's preconditioner race ("auto" preconditioner, ≥ 8 blocks): both iteration counts and the choice. */
  cgPreconditioner?: string;
}

const UNIT_ROUNDOFF = 2 ** -24;

interface Tile {
  /** First row of the tile in vec(W) order (k(d+1) + j). */
  offset: number;
  size: number;
  numClass: number;
  /** First row within its class block. */
  within: number;
}

function tilesOf(numClasses: number, width: number, tileSize: number): Tile[] {
  const pieces = Math.ceil(width / tileSize), tiles: Tile[] = [];
  for (let c = 0; c < numClasses; c++) {
    for (let q = 0; q < pieces; q++) {
      const within = Math.round((q * width) / pieces), end = Math.round(((q + 1) * width) / pieces);
      tiles.push({ offset: c * width + within, size: end - within, numClass: c, within });
    }
  }
  return tiles;
}

function sizes(fit: HeadFit, train: LabeledFeatures, options: DirectSolverOptions) {
  const numClasses = fit.numClasses, width = fit.weights.shape[1], n = train.features.shape[0];
  const tileSize = options.tileSize ?? 512;
  if (!(Number.isInteger(tileSize) && tileSize >= 1)) {
    throw new RangeError(`factorHessian: tileSize must be an integer ≥ 1, got ${tileSize}`);
  }
  const chunkFloats = options.chunkFloats ?? 2 ** 24;
  if (!(chunkFloats >= 1)) throw new RangeError(`factorHessian: chunkFloats must be ≥ 1, got ${chunkFloats}`);
  const tiles = tilesOf(numClasses, width, tileSize);
  return { numClasses, width, n, size: numClasses * width, tiles, chunkFloats };
}

/**
 * Estimated peak bytes of `factorHessian` (float32 throughout):
 * 4 · [Σ_j (N − off_j)·nb_j (the lower trapezoid: H, then L) + 2 N·nb_max (a tile column and its update)
 *      + 2K(d+1)² (a class column and its partial sum) + min(2²⁴, n(d+1)K) (the scaled copy of H̃ᵀ)
 *      + 2n(d+1) (H̃ and H̃ᵀ)].
 */
export function directFactorBytes(
  fit: HeadFit,
  train: LabeledFeatures,
  options: Pick<DirectSolverOptions, "tileSize" | "chunkFloats"> = {},
): number {
  const { numClasses, width, n, size, tiles, chunkFloats } = sizes(fit, train, options);
  const trapezoid = tiles.reduce((s, t) => s + (size - t.offset) * t.size, 0);
  const largest = Math.max(...tiles.map((t) => t.size));
  return 4 *
    (trapezoid + 2 * size * largest + 2 * numClasses * width * width +
      Math.min(chunkFloats, n * width * numClasses) + 2 * n * width);
}

function checkTrain(fit: HeadFit, train: LabeledFeatures): void {
  if (train.features.shape[1] + 1 !== fit.weights.shape[1]) {
    throw new RangeError(
      `factorHessian: train features have dim ${train.features.shape[1]}, the head expects ${
        fit.weights.shape[1] - 1
      }`,
    );
  }
  if (train.features.shape[0] !== fit.alpha.length) {
    throw new RangeError(
      `factorHessian: the fit has ${fit.alpha.length} weights α but train has ${
        train.features.shape[0]
      } rows`,
    );
  }
  checkLabels(train, fit.numClasses, "train");
}

/**
 * The lower trapezoid of H − λI as tile columns: column j is rows off_j … N−1 of the tile's columns,
 * `[N − off_j, nb_j]`, from the block formula of the module JSDoc. Samples and classes are chunked so that no
 * operand exceeds `chunkFloats` (beyond the tile columns themselves).
 */
function assembleColumns(
  fit: HeadFit,
  train: LabeledFeatures,
  tiles: Tile[],
  chunkFloats: number,
): tf.Tensor2D[] {
  const k = fit.numClasses, width = fit.weights.shape[1], n = train.features.shape[0];
  const rowsPerChunk = Math.max(1, Math.min(n, Math.floor(chunkFloats / width)));
  const widest = Math.max(...tiles.map((t) => t.size));
  const chunks: { start: number; rows: number; hT: tf.Tensor2D; h: tf.Tensor2D }[] = [];
  for (let start = 0; start < n; start += rowsPerChunk) {
    const rows = Math.min(rowsPerChunk, n - start);
    chunks.push(tf.tidy(() => {
      const x = train.features.slice([start, 0], [rows, -1]);
      const hT = tf.concat([x.transpose(), tf.ones([1, rows])], 0) as tf.Tensor2D; // H̃ᵀ  [d+1, rows]
      return { start, rows, hT, h: tf.concat([x, tf.ones([rows, 1])], 1) as tf.Tensor2D }; // H̃  [rows, d+1]
    }));
  }
  const columns: tf.Tensor2D[] = [];
  const p = headProbabilities(fit, train.features); // [n, K]
  const alphaP = tf.tidy(() => tf.mul(tf.tensor2d(fit.alpha, [n, 1]), p)); // α_i p_ia  [n, K]
  let sums: tf.Tensor2D[][] = [];
  try {
    for (let b = 0; b < k; b++) {
      const own = tiles.filter((t) => t.numClass === b);
      // c_ab,i = α_i p_ia (δ_ab − p_ib) for a = b … K−1, transposed   [K−b, n]
      const coefficients = tf.tidy(() => {
        const indicator = tf.tensor2d(Array.from({ length: k - b }, (_, q) => (q === 0 ? 1 : 0)), [1, k - b]);
        return tf.mul(alphaP.slice([0, b], [n, k - b]), tf.sub(indicator, p.slice([0, b], [n, 1])))
          .transpose();
      });
      sums = own.map(() => []); // per tile, per class group: Σ over sample chunks  [count(d+1), nb]
      for (const { start, rows, hT, h } of chunks) {
        const count = Math.max(1, Math.floor(chunkFloats / (width * Math.max(rows, widest))));
        const hTiles = own.map((t) => tf.tidy(() => h.slice([0, t.within], [rows, t.size])));
        for (let a = 0, group = 0; a < k - b; a += count, group++) {
          const classes = Math.min(count, k - b - a);
          const left = tf.tidy(() => {
            const c = coefficients.slice([a, start], [classes, rows]).reshape([classes, 1, rows]);
            return tf.mul(hT.reshape([1, width, rows]), c).reshape([classes * width, rows]) as tf.Tensor2D;
          }); // diag(c_ab) H̃ for `classes` classes a, transposed
          own.forEach((_, q) => {
            const product = tf.matMul(left, hTiles[q]) as tf.Tensor2D;
            const previous = sums[q][group];
            sums[q][group] = previous ? tf.add(previous, product) as tf.Tensor2D : product;
            if (previous) tf.dispose([previous, product]);
          });
          left.dispose();
        }
        tf.dispose(hTiles);
      }
      coefficients.dispose();
      own.forEach((t, q) => {
        columns.push(tf.tidy(() => {
          const column = sums[q].length > 1 ? tf.concat(sums[q], 0) : sums[q][0]; // rows: classes b … K−1
          return column.slice([t.within, 0], [(k - b) * width - t.within, t.size]);
        }));
        tf.dispose(sums[q]);
      });
      sums = [];
    }
  } catch (error) {
    tf.dispose([...columns, ...sums.flat()]);
    throw error;
  } finally {
    tf.dispose([p, alphaP, ...chunks.flatMap((c) => [c.hT, c.h])]);
  }
  return columns;
}

interface FactorTile {
  /** L_jj⁻¹ `[nb, nb]`. */
  inverse: tf.Tensor2D;
  /** L_{>j, j} `[N − off_j − nb_j, nb_j]` (absent for the last tile). */
  below?: tf.Tensor2D;
}

type Attempt = { ok: true; factor: FactorTile[]; minPivotRatio: number } | {
  ok: false;
  pivot: { value: number; row: number };
};

/** Right-looking blocked Cholesky of the tile columns plus (λ + δ)I; consumes `columns`. */
async function choleskyTiles(
  columns: tf.Tensor2D[],
  tiles: Tile[],
  shift: number,
  threshold: number,
): Promise<Attempt> {
  const factor: FactorTile[] = [];
  let minPivot = Infinity;
  try {
    for (let j = 0; j < tiles.length; j++) {
      await yieldToEventLoop();
      const nb = tiles[j].size, column = columns[j];
      const diagonalTile = tf.tidy(() => column.slice([0, 0], [nb, nb]));
      const a = Float64Array.from(await readValues(diagonalTile));
      diagonalTile.dispose();
      for (let i = 0; i < nb; i++) a[i * nb + i] += shift;
      let l: Float64Array;
      try {
        l = choleskyFactor(a, nb);
      } catch {
        // the first non-positive pivot, recomputed to report it
        return { ok: false, pivot: firstBadPivot(a, nb, threshold, tiles[j].offset) };
      }
      for (let i = 0; i < nb; i++) {
        const pivot = l[i * nb + i] ** 2;
        if (!(pivot >= threshold)) return { ok: false, pivot: { value: pivot, row: tiles[j].offset + i } };
        minPivot = Math.min(minPivot, pivot);
      }
      const inverse64 = lowerTriangularInverse(l, nb);
      const inverseT = new Float32Array(nb * nb);
      for (let r = 0; r < nb; r++) for (let c = 0; c <= r; c++) inverseT[c * nb + r] = inverse64[r * nb + c];
      const inverse = tf.tensor2d(Float32Array.from(inverse64), [nb, nb]);
      const rest = column.shape[0] - nb;
      let below: tf.Tensor2D | undefined;
      if (rest > 0) {
        const panel = tf.tidy(() =>
          tf.matMul(column.slice([nb, 0], [rest, nb]), tf.tensor2d(inverseT, [nb, nb])) as tf.Tensor2D
        );
        below = panel;
        // trailing update of every later tile column k: A_{≥k, k} −= L_{≥k, j} L_{k, j}ᵀ
        for (let q = j + 1; q < tiles.length; q++) {
          const from = tiles[q].offset - tiles[j].offset - nb, height = rest - from;
          const updated = tf.tidy(() => {
            const lower = panel.slice([from, 0], [height, nb]);
            const top = panel.slice([from, 0], [tiles[q].size, nb]).transpose();
            return tf.sub(columns[q], tf.matMul(lower, top)) as tf.Tensor2D;
          });
          columns[q].dispose();
          columns[q] = updated;
        }
      }
      column.dispose();
      factor.push({ inverse, below });
    }
    return { ok: true, factor, minPivotRatio: minPivot / shift };
  } finally {
    for (let q = factor.length; q < columns.length; q++) columns[q].dispose();
    if (factor.length < tiles.length) disposeFactor(factor);
  }
}

function firstBadPivot(a: Float64Array, nb: number, threshold: number, offset: number) {
  const l = new Float64Array(nb * nb);
  for (let i = 0; i < nb; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * nb + j];
      for (let q = 0; q < j; q++) s -= l[i * nb + q] * l[j * nb + q];
      if (i === j) {
        if (!(s >= threshold)) return { value: s, row: offset + i };
        l[i * nb + i] = Math.sqrt(s);
      } else l[i * nb + j] = s / l[j * nb + j];
    }
  }
  return { value: NaN, row: offset };
}

function disposeFactor(factor: FactorTile[]): void {
  for (const tile of factor) tf.dispose([tile.inverse, ...(tile.below ? [tile.below] : [])]);
  factor.length = 0;
}

/** (L Lᵀ)⁻¹ Gᵀ for G as rows `[b, N]`, returned as rows `[b, N]`. */
function triangularSolve(factor: FactorTile[], tiles: Tile[], rhs: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    // forward, columns layout: Y_j = L_jj⁻¹ R_j; R_{>j} −= L_{>j,j} Y_j
    let rest = rhs.transpose() as tf.Tensor2D; // [N, b]
    const y: tf.Tensor2D[] = [];
    for (let j = 0; j < tiles.length; j++) {
      const nb = tiles[j].size;
      const yj = tf.matMul(factor[j].inverse, rest.slice([0, 0], [nb, -1])) as tf.Tensor2D;
      y.push(yj);
      const below = factor[j].below;
      if (below) rest = tf.sub(rest.slice([nb, 0], [-1, -1]), tf.matMul(below, yj));
    }
    // backward, rows layout: X_jᵀ = (Y_jᵀ − X_{>j}ᵀ L_{>j,j}) L_jj⁻¹
    let x: tf.Tensor2D | undefined; // X_{>j}ᵀ  [b, N − off_{j+1}]
    for (let j = tiles.length - 1; j >= 0; j--) {
      const below = factor[j].below;
      const right = below && x ? tf.sub(y[j].transpose(), tf.matMul(x, below)) : y[j].transpose();
      const xj = tf.matMul(right as tf.Tensor2D, factor[j].inverse) as tf.Tensor2D;
      x = x ? tf.concat([xj, x], 1) : xj;
    }
    return x!;
  });
}

/**
 * Assembles H at the fit on its training split and factors it (see the module JSDoc). Throws `RangeError` when
 * the estimate `directFactorBytes` exceeds `memoryBudget`, and `HessianNotPositiveDefiniteError` when no δ within
 * `maxDampingRetries` restarts gives pivots ≥ (λ + δ)/2. The caller disposes the factor.
 */
export async function factorHessian(
  fit: HeadFit,
  train: LabeledFeatures,
  options: DirectSolverOptions = {},
): Promise<HessianFactor> {
  checkTrain(fit, train);
  const { numClasses: k, width, size, tiles, chunkFloats } = sizes(fit, train, options);
  const bytes = directFactorBytes(fit, train, options);
  const budget = options.memoryBudget ?? 1.5 * 2 ** 30;
  if (bytes > budget) {
    throw new RangeError(
      `factorHessian: K(d+1) = ${size} needs ≈ ${formatBytes(bytes)} > memoryBudget ${
        formatBytes(budget)
      }; ` +
        `raise memoryBudget or use the matrix-free method "exact"`,
    );
  }
  const tol = options.tol ?? 1e-5, maxSteps = options.maxRefinementSteps ?? 5;
  const maxRetries = options.maxDampingRetries ?? 6;
  const lambda = fit.lambda;
  let damping = 0, retries = 0, assembleSeconds = 0, factorSeconds = 0;
  let attempt: Attempt;
  for (;;) {
    const t0 = performance.now();
    const columns = assembleColumns(fit, train, tiles, chunkFloats);
    const t1 = performance.now();
    attempt = await choleskyTiles(columns, tiles, lambda + damping, (lambda + damping) / 2);
    assembleSeconds += (t1 - t0) / 1000;
    factorSeconds += (performance.now() - t1) / 1000;
    if (attempt.ok) break;
    if (retries === maxRetries) {
      throw new HessianNotPositiveDefiniteError(
        `factorHessian: ${notPositiveDefinite(attempt.pivot, damping, retries)}; use the method "exact"`,
        damping,
        retries,
        attempt.pivot,
      );
    }
    damping = damping === 0
      ? Math.max(lambda * 1e-6, UNIT_ROUNDOFF * await maxDiagonal(fit, train))
      : damping * 10;
    retries++;
  }
  const factor = attempt.factor;
  const problem = problemOf(fit, train);
  const probabilities = headProbabilities(fit, train.features);
  const diagnostics: DirectDiagnostics = {
    method: "direct",
    size,
    tiles: tiles.length,
    bytes,
    damping,
    dampingRetries: retries,
    minPivotRatio: attempt.minPivotRatio,
    solves: 0,
    refinementSteps: 0,
    relativeResidual: 0,
    seconds: { assemble: assembleSeconds, factor: factorSeconds, solve: 0 },
  };
  const rowNorms = async (r: tf.Tensor2D) => {
    const norms = tf.tidy(() => tf.sqrt(tf.sum(tf.square(r), 1)));
    const values = Float64Array.from(await readValues(norms));
    norms.dispose();
    return values;
  };
  const residualOf = (g: tf.Tensor2D, x: tf.Tensor2D, b: number) =>
    tf.tidy(() =>
      tf.sub(
        g,
        hessianVectorProductBatch(problem, probabilities, x.reshape([b, k, width])).reshape([b, size]),
      )
    ) as tf.Tensor2D;
  return {
    diagnostics,
    solve: async (grads) => {
      const start = performance.now(), b = grads.shape[0];
      const g = grads.reshape([b, size]) as tf.Tensor2D;
      const gNorm = await rowNorms(g);
      const worst = async (r: tf.Tensor2D) => {
        const norms = await rowNorms(r);
        return norms.reduce((m, v, j) => Math.max(m, gNorm[j] > 0 ? v / gNorm[j] : 0), 0);
      };
      let x = triangularSolve(factor, tiles, g);
      let r = residualOf(g, x, b);
      let residual = await worst(r), steps = 0;
      while (residual > tol && steps < maxSteps) {
        await yieldToEventLoop();
        const next = tf.tidy(() => tf.add(x, triangularSolve(factor, tiles, r))) as tf.Tensor2D;
        const nextR = residualOf(g, next, b);
        const nextResidual = await worst(nextR);
        const improved = nextResidual < residual;
        tf.dispose(improved ? [x, r] : [next, nextR]);
        if (!improved) break;
        const halved = nextResidual <= residual / 2;
        [x, r, residual] = [next, nextR, nextResidual];
        steps++;
        if (!halved) break; // the float32 floor of the residual
      }
      r.dispose();
      g.dispose();
      diagnostics.solves++;
      diagnostics.refinementSteps = Math.max(diagnostics.refinementSteps, steps);
      diagnostics.relativeResidual = Math.max(diagnostics.relativeResidual, residual);
      diagnostics.seconds.solve += (performance.now() - start) / 1000;
      const solution = x.reshape([b, k, width]) as tf.Tensor3D;
      x.dispose();
      return solution;
    },
    dispose: () => {
      disposeFactor(factor);
      probabilities.dispose();
      disposeProblem(problem);
    },
  };
}

/** max_i H_ii − λ = max over (class a, column j) of Σ_i α_i p_ia (1 − p_ia) h_ij². */
async function maxDiagonal(fit: HeadFit, train: LabeledFeatures): Promise<number> {
  const n = train.features.shape[0];
  const diagonal = tf.tidy(() => {
    const p = headProbabilities(fit, train.features);
    const c = tf.mul(tf.tensor2d(fit.alpha, [n, 1]), tf.mul(p, tf.sub(1, p))); // [n, K]
    const h2 = tf.concat([tf.square(train.features), tf.ones([n, 1])], 1); // [n, d+1]
    return tf.max(tf.matMul(c.transpose(), h2));
  });
  const value = await readScalar(diagonal);
  diagonal.dispose();
  return value;
}

function notPositiveDefinite(pivot: { value: number; row: number }, damping: number, retries: number) {
  return `H is not positive definite in float32: pivot ${
    pivot.value.toExponential(2)
  } at row ${pivot.row} < ` +
    `(λ + δ)/2 with δ = ${damping.toExponential(2)} after ${retries} damped restarts`;
}

function formatBytes(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}

/**
 * Multiply-adds of the two exact paths for `rightHandSides` solves (n training rows, width d+1, K classes,
 * N = K(d+1)): direct = assembly n (d+1)² K(K+1)/2 + Cholesky N³/6 (the triangular solves, 2N² per solve, are
 * left out: they are small beside either); block CG = rightHandSides × iterations × 2 n (d+1) K (two products per
 * Hessian-vector product).
 */
export function solverCosts(
  fit: HeadFit,
  train: LabeledFeatures,
  rightHandSides: number,
  iterations: number,
): { direct: number; cg: number } {
  const n = train.features.shape[0], width = fit.weights.shape[1], k = fit.numClasses, size = k * width;
  return {
    direct: n * width * width * k * (k + 1) / 2 + size ** 3 / 6,
    cg: rightHandSides * iterations * 2 * n * width * k,
  };
}

/**
 * Why "auto" may not factor H — N = K(d+1) above `maxSize` (default 16384), or `directFactorBytes` above
 * `memoryBudget` (default 1.5 GiB) — as the reason block CG is used; undefined when it may.
 */
export function directRuledOut(
  fit: HeadFit,
  train: LabeledFeatures,
  options: DirectSolverOptions = {},
): string | undefined {
  const size = fit.numClasses * fit.weights.shape[1], maxSize = options.maxSize ?? 16384;
  if (size > maxSize) return `K(d+1) = ${size} > maxSize ${maxSize}: block CG`;
  const bytes = directFactorBytes(fit, train, options), budget = options.memoryBudget ?? 1.5 * 2 ** 30;
  if (bytes > budget) {
    return `the direct factorisation needs ≈ ${formatBytes(bytes)} > memoryBudget ${
      formatBytes(budget)
    }: block CG`;
  }
  return undefined;
}

/** Multiply-adds in words. */
export const formatGmac = (v: number): string => `${(v / 1e9).toPrecision(3)} GMAC`;

/**
 * Picks the H⁻¹ solver of an influence computation. "exact" and "ekfac" are taken as asked. "auto" factors H
 * (`factorHessian`) unless `directRuledOut` says no and — when the number of solves `rightHandSides` and the CG
 * iterations per solve `cgIterationsEstimate` are both given — the factorisation costs fewer multiply-adds than
 * block CG would (`solverCosts`); else it uses block CG. (Without an estimate, `testInfluence` and `selfInfluence`
 * measure instead: their first block runs block CG up to the break-even, see `TestInfluenceOptions.method`.)
 * "direct" factors whatever N, within the budget. Either falls back to block CG ("exact") when the budget is
 * exceeded or H is not positive definite in float32, and says so in `report.reason` (`because`, if given, replaces
 * the reason for factoring). The caller disposes `factor`; `report.direct` is the factor's live diagnostics object.
 */
export async function chooseHessianSolver(
  fit: HeadFit,
  train: LabeledFeatures,
  requested: InfluenceMethod,
  options: DirectSolverOptions & { rightHandSides?: number; because?: string } = {},
): Promise<{ factor?: HessianFactor; report: SolverReport }> {
  if (requested === "exact" || requested === "ekfac") {
    return { report: { requested, method: requested, reason: "requested" } };
  }
  const size = fit.numClasses * fit.weights.shape[1], maxSize = options.maxSize ?? 16384;
  const cg = (reason: string) => ({ report: { requested, method: "exact" as const, reason } });
  const ruledOut = directRuledOut(
    fit,
    train,
    requested === "auto" ? options : { ...options, maxSize: Infinity },
  );
  if (ruledOut) return cg(ruledOut);
  let cheaper = "";
  const iterations = options.cgIterationsEstimate;
  if (requested === "auto" && options.rightHandSides !== undefined && iterations !== undefined) {
    const cost = solverCosts(fit, train, options.rightHandSides, iterations);
    const solves = options.rightHandSides;
    const versus =
      `factorising H ≈ ${formatGmac(cost.direct)}, block CG for ${solves} solves at ~${iterations} ` +
      `iterations ≈ ${formatGmac(cost.cg)}`;
    if (cost.direct >= cost.cg) return cg(`${versus}: block CG`);
    cheaper = `; ${versus}`;
  }
  try {
    const factor = await factorHessian(fit, train, options);
    const why = options.because ??
      (requested === "auto" ? `K(d+1) = ${size} ≤ maxSize ${maxSize}${cheaper}` : "requested");
    const damped = factor.diagnostics.damping > 0
      ? `; damping δ = ${factor.diagnostics.damping.toExponential(2)} in the factor, removed by refinement`
      : "";
    return {
      factor,
      report: { requested, method: "direct", reason: why + damped, direct: factor.diagnostics },
    };
  } catch (error) {
    if (!(error instanceof HessianNotPositiveDefiniteError)) throw error;
    return cg(`${notPositiveDefinite(error.pivot, error.damping, error.retries)}: block CG`);
  }
}
