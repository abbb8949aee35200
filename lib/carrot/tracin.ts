/**
 * TracIn-CP (Pruthi et al. 2020) for the linear head.
 *
 * The head is trained with mini-batch SGD on the mean objective J(W; α)/n, and checkpoints W_t are kept with their
 * learning rates η_t. The influence of training point i on a point x is the sum over checkpoints of the dot
 * product of their loss gradients; for a linear softmax head ∇_W ℓ = (p − e_y) hᵀ, so it factorises as
 *   TracIn(i, x) = Σ_t η_t α_i ∇ℓ_x(W_t)·∇ℓ_i(W_t) = Σ_t η_t α_i ((p_x,t − e_{y_x})·(p_i,t − e_{y_i})) (h_x·h_i),
 * never forming per-sample gradients. α_i appears because point i's steps are weighted by α_i. TracIn > 0 marks a
 * proponent (its steps lowered x's loss). TracIn-last keeps only the final checkpoint.
 *
 * Schedule (fixed, documented): `epochs` passes (default 10) over a seeded permutation in batches of `batchSize`
 * (default 64), step size η_t = η₀ / √(1 + t_epoch) with η₀ = `learningRate`·2/mean‖h_i‖² (default factor 1;
 * the curvature of a linear softmax head's cross-entropy is at most mean‖h‖²/2, so η₀ = 1/L is stable), the L2
 * term (λ/n)W in every step, and one checkpoint at the end of each epoch.
 */
import * as tf from "@tensorflow/tfjs";
import { checkLabels, inferNumClasses, type LabeledFeatures } from "./labeled_features.ts";
import { disposeProblem, logits, makeProblem, objectiveAndGradient, residualOuter } from "./_objective.ts";
import { Random } from "../random.ts";
import { readScalar, readValues } from "./_reads.ts";

/** SGD checkpoints of the head with their learning rates; free them with `disposeCheckpoints`. */
export interface TracInCheckpoints {
  /** W_t and η_t, one per epoch, oldest first. */
  checkpoints: { weights: tf.Tensor2D; learningRate: number }[];
  /** α of the training run. */
  alpha: Float32Array;
  /** λ of the training run. */
  lambda: number;
  /** K. */
  numClasses: number;
}

/** Options of `trainTracInCheckpoints`. */
export interface TracInTrainingOptions {
  /** λ of J. */
  lambda: number;
  /** α (default all ones). */
  alpha?: Float32Array;
  /** K (default: inferred from the labels). */
  numClasses?: number;
  /** Passes over the data (default 10). */
  epochs?: number;
  /** Mini-batch size (default 64). */
  batchSize?: number;
  /** Multiplier of the base step 2/mean‖h‖² (default 1). */
  learningRate?: number;
  /** Seed of the per-epoch permutations (default 0). */
  seed?: number;
}

/** Trains the head by mini-batch SGD with the documented schedule and keeps one checkpoint per epoch. */
export async function trainTracInCheckpoints(
  train: LabeledFeatures,
  options: TracInTrainingOptions,
): Promise<TracInCheckpoints> {
  const n = train.features.shape[0], dim = train.features.shape[1];
  const numClasses = options.numClasses ?? inferNumClasses(train.labels);
  checkLabels(train, numClasses, "trainTracInCheckpoints");
  const alpha = options.alpha ?? new Float32Array(n).fill(1);
  const epochs = options.epochs ?? 10, batchSize = Math.min(options.batchSize ?? 64, n);
  const meanSquaredNorm = tf.tidy(() => tf.add(tf.mean(tf.sum(tf.square(train.features), 1)), 1));
  const base = (options.learningRate ?? 1) * 2 / await readScalar(meanSquaredNorm);
  meanSquaredNorm.dispose();
  const rng = new Random(options.seed ?? 0);
  let weights = tf.zeros([numClasses, dim + 1]) as tf.Tensor2D;
  const checkpoints: TracInCheckpoints["checkpoints"] = [];
  for (let epoch = 0; epoch < epochs; epoch++) {
    const eta = base / Math.sqrt(1 + epoch);
    const order = rng.permutation(n);
    for (let start = 0; start < n; start += batchSize) {
      const index = order.subarray(start, Math.min(start + batchSize, n));
      const b = index.length;
      const features = tf.tidy(() => tf.gather(train.features, tf.tensor1d(index, "int32")) as tf.Tensor2D);
      // J_batch = Σ_{i∈B} α_i ℓ_i + (λ b/n)/2 ‖W‖²; its gradient / b estimates ∇(J/n) without bias
      const problem = makeProblem(
        features,
        Int32Array.from(index, (i) => train.labels[i]),
        Float32Array.from(index, (i) => alpha[i]),
        numClasses,
        options.lambda * b / n,
      );
      const next = tf.tidy(() => {
        const { gradient } = objectiveAndGradient(problem, weights);
        return tf.sub(weights, tf.mul(eta / b, gradient)) as tf.Tensor2D;
      });
      disposeProblem(problem);
      features.dispose();
      weights.dispose();
      weights = next;
    }
    checkpoints.push({ weights: weights.clone(), learningRate: eta });
  }
  weights.dispose();
  return { checkpoints, alpha: Float32Array.from(alpha), lambda: options.lambda, numClasses };
}

/** Frees the checkpoint tensors. */
export function disposeCheckpoints(c: TracInCheckpoints): void {
  for (const checkpoint of c.checkpoints) checkpoint.weights.dispose();
}

function residualAt(weights: tf.Tensor2D, data: LabeledFeatures, numClasses: number): tf.Tensor2D {
  return tf.tidy(() =>
    tf.sub(
      tf.softmax(logits(weights, data.features)),
      tf.oneHot(tf.tensor1d(data.labels, "int32"), numClasses),
    )
  ) as tf.Tensor2D;
}

function selected(c: TracInCheckpoints, last: boolean) {
  return last ? c.checkpoints.slice(-1) : c.checkpoints;
}

/**
 * TracIn of every training point on the mean validation loss: Σ_t η_t α_i ∇L_val(W_t)·∇ℓ_i(W_t) `[n]`
 * (> 0: i's steps lowered L_val, so removing i should raise it). `last` keeps only the final checkpoint.
 */
export async function tracInValidation(
  c: TracInCheckpoints,
  train: LabeledFeatures,
  val: LabeledFeatures,
  options: { last?: boolean } = {},
): Promise<Float32Array> {
  const m = val.features.shape[0];
  const scores = tf.tidy(() => {
    let total = tf.zeros([train.features.shape[0]]);
    for (const { weights, learningRate } of selected(c, options.last ?? false)) {
      const valGradient = residualOuter(tf.div(residualAt(weights, val, c.numClasses), m), val.features); // [K, D]
      const dots = tf.sum(
        tf.mul(residualAt(weights, train, c.numClasses), logits(valGradient, train.features)),
        1,
      );
      total = tf.add(total, tf.mul(learningRate, dots));
    }
    return tf.mul(total, tf.tensor1d(c.alpha));
  });
  const out = (await readValues(scores)) as Float32Array;
  scores.dispose();
  return out;
}

/**
 * Pairwise TracIn(i, x) `[n, t]` (row-major, train-major) between all training points and the points of `test`,
 * by the factorisation ((p_x − e)·(p_i − e))(h_x·h_i) summed over checkpoints.
 */
export async function tracInMatrix(
  c: TracInCheckpoints,
  train: LabeledFeatures,
  test: LabeledFeatures,
  options: { last?: boolean } = {},
): Promise<Float32Array> {
  const scores = tf.tidy(() => {
    const kernel = tf.add(tf.matMul(train.features, test.features.transpose()), 1); // [n, t]: h_i·h_x
    let total = tf.zeros(kernel.shape);
    for (const { weights, learningRate } of selected(c, options.last ?? false)) {
      const dots = tf.matMul(
        residualAt(weights, train, c.numClasses),
        residualAt(weights, test, c.numClasses).transpose(),
      );
      total = tf.add(total, tf.mul(learningRate, dots));
    }
    return tf.mul(tf.mul(total, kernel), tf.tensor2d(c.alpha, [c.alpha.length, 1]));
  });
  const out = (await readValues(scores)) as Float32Array;
  scores.dispose();
  return out;
}
