/**
 * The kNN-cosine baseline of attribution: training points that look like x (cosine similarity of features) and
 * share its label support it, those that look like it with another label oppose it:
 *   s(i, x) = cos(x_i, x_x) · (+1 if y_i = y_x else −1),
 * no model involved. It is the "does attribution know more than feature similarity?" control of the agreement
 * table. All training points count (no cut at k neighbours, which would tie most scores at zero).
 */
import * as tf from "@tensorflow/tfjs";
import type { LabeledFeatures } from "./labeled_features.ts";
import { readValues } from "./_reads.ts";

/** Each row divided by its L2 norm, h_i / (‖h_i‖ + 10⁻¹²): the rows of cosine similarities (result owned by the caller). */
export function unitRows(x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.div(x, tf.add(tf.norm(x, 2, 1, true), 1e-12)) as tf.Tensor2D);
}

/** s(i, x) `[n, t]` (row-major, train-major); positive = i supports x. */
export async function knnCosineScores(train: LabeledFeatures, test: LabeledFeatures): Promise<Float32Array> {
  const scores = tf.tidy(() => {
    const cosine = tf.matMul(unitRows(train.features), unitRows(test.features).transpose());
    const same = tf.equal(
      tf.tensor2d(train.labels, [train.labels.length, 1], "int32"),
      tf.tensor2d(test.labels, [1, test.labels.length], "int32"),
    );
    return tf.mul(cosine, tf.sub(tf.mul(same.toFloat(), 2), 1));
  });
  const out = (await readValues(scores)) as Float32Array;
  scores.dispose();
  return out;
}
