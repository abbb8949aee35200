/**
 * Theorem A, the representer form of the head.
 *
 * At a stationary point of J(W; α) = Σ_i α_i ℓ_i(W) + (λ/2)‖W‖²_F the gradient vanishes, so
 *   λW = −Σ_i α_i (p_i − e_{y_i}) h_iᵀ   ⇒   z_k(x) = W_k · h_x = Σ_i β_ik (h_i · h_x),
 * with representer coefficients β_i = −(α_i/λ)(p_i − e_{y_i}) and contributions a_i(x) = β_ik (h_i · h_x).
 * Away from stationarity W − Σ_i β_i h_iᵀ = ∇J/λ, so the residual at x is |∇J_k · h_x|/λ ≤ ‖∇J‖_F ‖h_x‖/λ.
 * Here h = [x; 1]: the constant column makes h_i · h_x = x_i · x_x + 1.
 */
import * as tf from "@tensorflow/tfjs";
import type { LabeledFeatures } from "./labeled_features.ts";
import { type HeadFit, headLogits } from "./head.ts";
import { readValues } from "./_reads.ts";

/** β `[n, K]` with β_i = −(α_i/λ)(p_i − e_{y_i}); α and λ are the fit's. */
export function representerCoefficients(fit: HeadFit, train: LabeledFeatures): tf.Tensor2D {
  if (train.features.shape[0] !== fit.alpha.length) {
    throw new RangeError(
      `representerCoefficients: the fit has ${fit.alpha.length} weights α but train has ${
        train.features.shape[0]
      } rows; pass the split the head was fitted on`,
    );
  }
  return tf.tidy(() => {
    const p = tf.softmax(headLogits(fit, train.features));
    const y = tf.oneHot(tf.tensor1d(train.labels, "int32"), fit.numClasses).toFloat();
    const scale = tf.tensor2d(fit.alpha.map((a) => -a / fit.lambda), [fit.alpha.length, 1]);
    return tf.mul(scale, tf.sub(p, y)) as tf.Tensor2D;
  });
}

/** Which logit each test point is explained for. */
export type ClassSelection = "predicted" | "true" | ArrayLike<number>;

/** Options of `explain`. */
export interface ExplainOptions {
  /** Supporters and opposers returned per test point (default 10). */
  topK?: number;
  /** The class k whose logit is decomposed: "predicted" (default), "true" (needs `testLabels`) or one per point. */
  classIndex?: ClassSelection;
  /** Labels of the test points, for `classIndex: "true"`. */
  testLabels?: Int32Array;
  /** Test points per block (default 512): memory is O(block · n). */
  blockSize?: number;
  /** Also return the full [t, n] contribution matrix for the explained classes (default false). */
  returnMatrix?: boolean;
}

/** A training point's contribution a_i(x) to the explained logit. */
export interface Contribution {
  /** Row i of the training split. */
  index: number;
  /** a_i(x) = β_ik (h_i · h_x). */
  contribution: number;
}

/** The decomposition of one test point's logit z_k(x) = Σ_i a_i(x). */
export interface Explanation {
  /** The class k whose logit is decomposed. */
  classIndex: number;
  /** z_k(x) from the head's weights. */
  logit: number;
  /** Σ_i a_i(x), equal to `logit` at stationarity. */
  sumOfContributions: number;
  /** The top-K training points by a_i(x) (largest first): they push z_k(x) up. */
  supporters: Contribution[];
  /** The top-K training points by −a_i(x) (most negative first): they push z_k(x) down. */
  opposers: Contribution[];
}

/** The result of `explain`. */
export interface ExplainResult {
  /** One per test point, in order. */
  explanations: Explanation[];
  /** max over test points x and all classes k of |z_k(x) − Σ_i β_ik (h_i·h_x)|. */
  residual: number;
  /** The bound that residual obeys: ‖∇J‖_F · max_x ‖h_x‖ / λ (Theorem A away from stationarity). */
  residualBound: number;
  /** max |z_k(x)|, the scale of the logits. */
  maxAbsLogit: number;
  /** The [t, n] contributions a_i(x) for each point's explained class, when `returnMatrix` was set. */
  matrix?: Float32Array;
}

function resolveClasses(
  selection: Exclude<ClassSelection, "predicted">,
  count: number,
  options: ExplainOptions,
  numClasses: number,
): Int32Array {
  if (selection === "true") {
    if (!options.testLabels) throw new TypeError('explain: classIndex "true" needs options.testLabels');
    if (options.testLabels.length !== count) {
      throw new RangeError(`explain: ${options.testLabels.length} testLabels for ${count} test points`);
    }
  }
  const classes = Int32Array.from(selection === "true" ? options.testLabels! : selection);
  if (classes.length !== count) {
    throw new RangeError(`explain: classIndex has ${classes.length} entries for ${count} test points`);
  }
  const bad = classes.findIndex((k) => k < 0 || k >= numClasses);
  if (bad >= 0) {
    throw new RangeError(`explain: classIndex[${bad}] = ${classes[bad]} is outside 0..${numClasses - 1}`);
  }
  return classes;
}

/**
 * Decomposes each test logit z_k(x) into training-point contributions a_i(x) = β_ik (h_i · h_x) and returns the
 * top-K supporters and opposers. Streams over blocks of test points (memory O(block · n)); reports the identity
 * residual max |z_k(x) − Σ_i a_i(x)| over all classes with its Theorem-A bound ‖∇J‖_F·max‖h_x‖/λ.
 */
export async function explain(
  fit: HeadFit,
  train: LabeledFeatures,
  testFeatures: tf.Tensor2D,
  options: ExplainOptions = {},
): Promise<ExplainResult> {
  const n = train.features.shape[0];
  const t = testFeatures.shape[0];
  const topK = Math.min(options.topK ?? 10, n);
  const blockSize = options.blockSize ?? 512;
  if (testFeatures.shape[1] !== train.features.shape[1]) {
    throw new RangeError(
      `explain: test features have dim ${testFeatures.shape[1]}, train features ${train.features.shape[1]}`,
    );
  }
  const selection = options.classIndex ?? "predicted";
  const fixed = selection === "predicted" ? undefined : resolveClasses(selection, t, options, fit.numClasses);
  const beta = representerCoefficients(fit, train); // [n, K]
  const betaT = tf.tidy(() => beta.transpose()); // [K, n]
  const trainT = tf.tidy(() => train.features.transpose()); // [d, n]; explicit: wasm matMul flags are slow
  const explanations: Explanation[] = [];
  const matrix = options.returnMatrix ? new Float32Array(t * n) : undefined;
  let residual = 0, maxAbsLogit = 0, maxNorm = 0;
  try {
    for (let start = 0; start < t; start += blockSize) {
      const size = Math.min(blockSize, t - start);
      const block = tf.tidy(() => testFeatures.slice([start, 0], [size, -1]));
      const z = headLogits(fit, block); // [b, K]
      let classes = fixed?.subarray(start, start + size);
      if (!classes) {
        const predicted = tf.tidy(() => tf.argMax(z, 1));
        classes = Int32Array.from(await readValues(predicted));
        predicted.dispose();
      }
      const out = tf.tidy(() => {
        const kernel = tf.add(tf.matMul(block, trainT), 1); // [b, n]: h_x · h_i
        const sums = tf.matMul(kernel, beta); // [b, K]
        const mask = tf.oneHot(tf.tensor1d(classes!, "int32"), fit.numClasses).toFloat(); // [b, K]
        const betaRows = tf.matMul(mask, betaT); // [b, n]: β_{·, k(x)}; a one-hot product beats gather on wasm 6×
        const contributions = tf.mul(kernel, betaRows); // [b, n]
        const top = tf.topk(contributions, topK);
        const bottom = tf.topk(tf.neg(contributions), topK);
        return {
          gap: tf.max(tf.abs(tf.sub(z, sums))),
          maxLogit: tf.max(tf.abs(z)),
          norm: tf.sqrt(tf.max(tf.add(tf.sum(tf.square(block), 1), 1))),
          logit: tf.sum(tf.mul(z, mask), 1),
          sum: tf.sum(tf.mul(sums, mask), 1),
          topValues: top.values,
          topIndices: top.indices,
          bottomValues: tf.neg(bottom.values),
          bottomIndices: bottom.indices,
          contributions: options.returnMatrix ? contributions : undefined,
        };
      });
      const [gap, maxLogit, norm, logit, sum, tv, ti, bv, bi] = await Promise.all(
        [
          out.gap,
          out.maxLogit,
          out.norm,
          out.logit,
          out.sum,
          out.topValues,
          out.topIndices,
          out.bottomValues,
          out
            .bottomIndices,
        ].map((x) => readValues(x)),
      );
      if (matrix && out.contributions) matrix.set(await readValues(out.contributions), start * n);
      tf.dispose([block, z, ...Object.values(out).filter((x): x is tf.Tensor => x !== undefined)]);
      residual = Math.max(residual, gap[0]);
      maxAbsLogit = Math.max(maxAbsLogit, maxLogit[0]);
      maxNorm = Math.max(maxNorm, norm[0]);
      for (let b = 0; b < size; b++) {
        const pick = (values: ArrayLike<number>, indices: ArrayLike<number>) =>
          Array.from({ length: topK }, (_, j) => ({
            index: indices[b * topK + j],
            contribution: values[b * topK + j],
          }));
        explanations.push({
          classIndex: classes[b],
          logit: logit[b],
          sumOfContributions: sum[b],
          supporters: pick(tv, ti),
          opposers: pick(bv, bi),
        });
      }
    }
  } finally {
    tf.dispose([beta, betaT, trainT]);
  }
  return { explanations, residual, residualBound: fit.gradNorm * maxNorm / fit.lambda, maxAbsLogit, matrix };
}
