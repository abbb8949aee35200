/**
 * TRAK (Park et al. 2023, "TRAK: Attributing Model Behavior at Scale") specialised to the linear softmax head.
 *
 * Followed from the paper's recipe: (1) the model output function is the correct-class margin
 * f(x) = z_y − log Σ_{k≠y} exp z_k, whose gradient for a linear head is ∇_W f = (e_y − q) hᵀ with q the softmax
 * over the other classes (q_y = 0); (2) per-sample gradients are randomly projected, φ_i = Pᵀ vec(∇_W f_i);
 * (3) the kernel (ΦᵀΦ)⁻¹ replaces the inverse Gauss–Newton matrix; (4) train points are reweighted by
 * Q_ii = 1 − p_i(y_i); (5) scores are averaged over an ensemble of heads trained on random subsets:
 *   τ(x, i) = φ(x)ᵀ (ΦᵀΦ + ρI)⁻¹ φ_i (1 − p_i(y_i)),  positive = i raises x's margin (supports x).
 * Deviations: the projection is Kronecker-structured, P = P_K ⊗ P_D (P_K: K×k_K, P_D: (d+1)×k_D, Gaussian or
 * Rademacher), so φ_i = (P_Kᵀ r_i) ⊗ (P_Dᵀ h_i) costs O(n(K k_K + d k_D)) instead of O(n K d k) for a dense P —
 * the structure LoGra (Choe et al. 2024) uses for outer-product gradients; the soft-thresholding
 * (sparsification) step is not applied; ρ (`ridge`) is a small stabiliser (ΦᵀΦ is singular when n < k).
 * With k = K(d+1), orthogonal projections and no ensemble the score equals the closed form
 * ∇f_xᵀ (GᵀG + ρI)⁻¹ ∇f_i (1 − p_i) exactly (it is invariant to orthogonal maps of the gradient space). Note
 * that GᵀG itself is singular: margin gradients satisfy Σ_k r_k = 0 (the softmax over-parameterisation), which is
 * one more reason for ρ > 0.
 */
import * as tf from "@tensorflow/tfjs";
import type { LabeledFeatures } from "./labeled_features.ts";
import { disposeHead, fitHead, type HeadFit, headLogits } from "./head.ts";
import { choleskyFactor, lowerTriangularInverse } from "./_linalg.ts";
import { Random } from "../random.ts";
import { readValues } from "./_reads.ts";

/** Options of `trakScores`. */
export interface TrakOptions {
  /** Total projection dimension k = k_K·k_D (default 2048), split in proportion to K and d+1. */
  projectionDim?: number;
  /** Random projection entries (default "gaussian"); "orthogonal" draws orthonormal columns (Gram–Schmidt). */
  projection?: "gaussian" | "rademacher" | "orthogonal";
  /** Heads trained on random subsets to average over (default 0: use the given fit only). */
  ensemble?: number;
  /** Fraction of the training set in each ensemble subset (default 0.5). */
  fraction?: number;
  /**
   * ρ ≥ 0 added to ΦᵀΦ (default 1e-3 · trace(ΦᵀΦ)/k, which keeps the kernel invertible when n < k; pass 0 for
   * the paper's unregularised kernel).
   */
  ridge?: number;
  /** Seed of the projections and ensemble subsets (default 0). */
  seed?: number;
}

/** k_K and k_D with k_K·k_D ≤ k, in proportion to K and D (k = K·D gives k_K = K, k_D = D). */
export function projectionSplit(k: number, numClasses: number, width: number): [number, number] {
  const kK = Math.min(numClasses, Math.max(1, Math.round(Math.sqrt(k * numClasses / width))));
  return [kK, Math.min(width, Math.max(1, Math.floor(k / kK)))];
}

function randomMatrix(rows: number, cols: number, kind: TrakOptions["projection"], rng: Random): tf.Tensor2D {
  const values = Float64Array.from(
    { length: rows * cols },
    () => kind === "rademacher" ? (rng.uniform() < 0.5 ? -1 : 1) : rng.normal(),
  );
  if (kind === "orthogonal") {
    for (let c = 0; c < cols; c++) { // modified Gram–Schmidt on the columns
      for (let prev = 0; prev < c; prev++) {
        let dot = 0;
        for (let r = 0; r < rows; r++) dot += values[r * cols + c] * values[r * cols + prev];
        for (let r = 0; r < rows; r++) values[r * cols + c] -= dot * values[r * cols + prev];
      }
      let norm = 0;
      for (let r = 0; r < rows; r++) norm += values[r * cols + c] ** 2;
      for (let r = 0; r < rows; r++) values[r * cols + c] /= Math.sqrt(norm);
    }
  }
  return tf.tensor2d(Float32Array.from(values), [rows, cols]);
}

/** Margin gradient factors r = e_y − q `[n, K]` and the correct-class probabilities p(y) `[n]`. */
function marginFactors(fit: HeadFit, data: LabeledFeatures): { r: tf.Tensor2D; correct: tf.Tensor1D } {
  return tf.tidy(() => {
    const z = headLogits(fit, data.features);
    const y = tf.oneHot(tf.tensor1d(data.labels, "int32"), fit.numClasses).toFloat();
    const others = tf.softmax(tf.sub(z, tf.mul(y, 1e30))); // q: softmax over k ≠ y
    const correct = tf.sum(tf.mul(tf.softmax(z), y), 1) as tf.Tensor1D;
    return { r: tf.sub(y, others) as tf.Tensor2D, correct };
  });
}

/** Projected gradients Φ = [(P_Kᵀ r_i) ⊗ (P_Dᵀ h_i)]_i `[n, k_K k_D]`. */
function project(r: tf.Tensor2D, features: tf.Tensor2D, pK: tf.Tensor2D, pD: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const n = features.shape[0];
    const a = tf.matMul(r, pK); // [n, kK]
    const h = tf.concat([features, tf.ones([n, 1])], 1);
    const b = tf.matMul(h, pD); // [n, kD]
    return tf.mul(a.reshape([n, -1, 1]), b.reshape([n, 1, -1])).reshape([n, -1]) as tf.Tensor2D;
  });
}

/** τ `[n, t]` for one head (train-major, TRAK orientation). */
async function singleHeadScores(
  fit: HeadFit,
  train: LabeledFeatures,
  test: LabeledFeatures,
  pK: tf.Tensor2D,
  pD: tf.Tensor2D,
  ridge: number | undefined,
): Promise<tf.Tensor2D> {
  const trainFactors = marginFactors(fit, train), testFactors = marginFactors(fit, test);
  const phi = project(trainFactors.r, train.features, pK, pD);
  const phiTest = project(testFactors.r, test.features, pK, pD);
  const k = phi.shape[1];
  const gram = tf.tidy(() => tf.matMul(phi.transpose(), phi));
  const a = Float64Array.from(await readValues(gram));
  gram.dispose();
  let trace = 0;
  for (let q = 0; q < k; q++) trace += a[q * k + q];
  const rho = ridge ?? 1e-3 * trace / k;
  for (let q = 0; q < k; q++) a[q * k + q] += rho;
  const factor = choleskyFactor(a, k);
  const scores = tf.tidy(() => {
    const lInv = tf.tensor2d(Float32Array.from(lowerTriangularInverse(factor, k)), [k, k]); // (ΦᵀΦ)⁻¹ = L⁻ᵀ L⁻¹
    const left = tf.matMul(phi, lInv.transpose()); // [n, k]: Φ L⁻ᵀ
    const right = tf.matMul(phiTest, lInv.transpose()); // [t, k]
    const kernel = tf.matMul(left, right.transpose()); // [n, t]
    return tf.mul(kernel, tf.sub(1, trainFactors.correct).reshape([-1, 1])) as tf.Tensor2D;
  });
  tf.dispose([trainFactors.r, trainFactors.correct, testFactors.r, testFactors.correct, phi, phiTest]);
  return scores;
}

/**
 * TRAK scores τ(x, i) `[n, t]` (row-major, train-major) of every training point for every point of `test`;
 * positive = i supports x's correct-class margin. See the module JSDoc for what follows the paper.
 */
export async function trakScores(
  fit: HeadFit,
  train: LabeledFeatures,
  test: LabeledFeatures,
  options: TrakOptions = {},
): Promise<Float32Array> {
  const width = fit.weights.shape[1], n = train.features.shape[0];
  const [kK, kD] = projectionSplit(options.projectionDim ?? 2048, fit.numClasses, width);
  const rng = new Random(options.seed ?? 0);
  const pK = randomMatrix(fit.numClasses, kK, options.projection, rng);
  const pD = randomMatrix(width, kD, options.projection, rng);
  const members = options.ensemble ?? 0;
  let total: tf.Tensor2D | undefined;
  try {
    for (let e = 0; e < Math.max(1, members); e++) {
      let head = fit;
      if (members > 0) {
        const alpha = new Float32Array(n);
        const order = rng.permutation(n);
        for (let q = 0; q < Math.round((options.fraction ?? 0.5) * n); q++) alpha[order[q]] = 1;
        head = await fitHead(train, {
          lambda: fit.lambda,
          alpha,
          numClasses: fit.numClasses,
          init: fit.weights,
        });
      }
      const scores = await singleHeadScores(head, train, test, pK, pD, options.ridge);
      if (head !== fit) disposeHead(head);
      const sum: tf.Tensor2D = total ? tf.add(total, scores) : scores.clone();
      tf.dispose([total, scores].filter((x) => x !== undefined) as tf.Tensor[]);
      total = sum;
    }
    const mean = tf.div(total!, Math.max(1, members));
    const out = (await readValues(mean)) as Float32Array;
    mean.dispose();
    return out;
  } finally {
    tf.dispose([pK, pD, ...(total ? [total] : [])]);
  }
}
