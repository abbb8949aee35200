/**
 * One entry point for every attribution method, in one orientation: the support matrix S `[n, t]` (row-major,
 * train-major), S_ix > 0 when training point i supports point x's labelled class (up-weighting i lowers ℓ_x or
 * raises its margin). Faithfulness, the agreement table and dataset debugging consume methods only through this.
 *   representer      the loss influence with H ≈ λI, −∂ℓ_x/∂α_i ≈ (1/λ)((p_i − e_{y_i})·(p_x − e_{y_x}))(h_i·h_x):
 *                    how ℓ_x moves when i's representer term β_i h_iᵀ (β_i = −(α_i/λ)(p_i − e_{y_i})) is scaled with α_i.
 *   influence        −I(i, x) = ∇ℓ_xᵀ H⁻¹ ∇ℓ_i, exact (block CG); influence-ekfac the same with EK-FAC.
 *   tracin-cp        TracIn-CP(i, x)/α_i over SGD checkpoints; tracin-last the final checkpoint only.
 *   trak             τ(x, i) (TRAK scores support the margin).
 *   knn              the label-signed cosine of the kNN-cosine control.
 *   random           i.i.d. N(0, 1) scores (seeded): the floor every method must clear.
 */
import * as tf from "@tensorflow/tfjs";
import type { LabeledFeatures } from "./labeled_features.ts";
import { type HeadFit, headProbabilities } from "./head.ts";
import { testInfluence } from "./influence.ts";
import {
  disposeCheckpoints,
  tracInMatrix,
  type TracInTrainingOptions,
  trainTracInCheckpoints,
} from "./tracin.ts";
import { type TrakOptions, trakScores } from "./trak.ts";
import { knnCosineScores } from "./knn.ts";
import { Random } from "../random.ts";
import { readValues } from "./_reads.ts";

/** The attribution methods CARROT compares. */
export type AttributionMethod =
  | "representer"
  | "influence"
  | "influence-ekfac"
  | "tracin-cp"
  | "tracin-last"
  | "trak"
  | "knn"
  | "random";

/** Options passed through to the methods that have any. */
export interface AttributionOptions {
  /** Seed of TracIn's SGD order, TRAK's projections and the random scores (default 0). */
  seed?: number;
  /** Overrides of the TracIn SGD schedule. */
  tracin?: Partial<TracInTrainingOptions>;
  /** TRAK options. */
  trak?: TrakOptions;
}

async function read(t: tf.Tensor): Promise<Float32Array> {
  const out = (await readValues(t)) as Float32Array;
  t.dispose();
  return out;
}

/** The support matrix S `[n, t]` of `method` for the labelled points `points`; see the module JSDoc. */
export async function attributionScores(
  method: AttributionMethod,
  fit: HeadFit,
  train: LabeledFeatures,
  points: LabeledFeatures,
  options: AttributionOptions = {},
): Promise<Float32Array> {
  const n = train.features.shape[0], t = points.features.shape[0];
  switch (method) {
    case "representer":
      return await read(tf.tidy(() => {
        const residual = (data: LabeledFeatures) =>
          tf.sub(
            headProbabilities(fit, data.features),
            tf.oneHot(tf.tensor1d(data.labels, "int32"), fit.numClasses),
          );
        const kernel = tf.add(tf.matMul(train.features, points.features.transpose()), 1);
        return tf.mul(
          tf.matMul(residual(train), residual(points).transpose()),
          tf.mul(kernel, 1 / fit.lambda),
        );
      }));
    case "influence":
    case "influence-ekfac": {
      const matrix = new Float32Array(n * t);
      await testInfluence(fit, train, points, {
        method: method === "influence" ? "auto" : "ekfac",
        topK: 1,
        onBlock: (start, scores, b) => {
          for (let i = 0; i < n; i++) {
            for (let j = 0; j < b; j++) matrix[i * t + start + j] = -scores[i * b + j];
          }
        },
      });
      return matrix;
    }
    case "tracin-cp":
    case "tracin-last": {
      const checkpoints = await trainTracInCheckpoints(train, {
        lambda: fit.lambda,
        alpha: fit.alpha,
        numClasses: fit.numClasses,
        seed: options.seed,
        ...options.tracin,
      });
      const tracin = await tracInMatrix(checkpoints, train, points, { last: method === "tracin-last" });
      disposeCheckpoints(checkpoints);
      return tracin.map((v, q) => {
        const a = fit.alpha[Math.floor(q / t)];
        return a > 0 ? v / a : 0;
      });
    }
    case "trak":
      return await trakScores(fit, train, points, { seed: options.seed, ...options.trak });
    case "knn":
      return await knnCosineScores(train, points);
    case "random": {
      const rng = new Random(options.seed ?? 0);
      return Float32Array.from({ length: n * t }, () => rng.normal());
    }
  }
}
