/** Out-of-fold losses by hand, shared by the tests of the cross-fitted paths and of the (refined) trims. */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { stratifiedFolds } from "../../lib/carrot/crossfit.ts";
import type { LabeledFeatures } from "../../lib/carrot/labeled_features.ts";
import { disposeHead, fitHead, type HeadFit, headLogits } from "../../lib/carrot/head.ts";
import { selectRows } from "../../lib/split.ts";

/**
 * For each fold k of assignment `seed`, by hand: the head fitted (at `alpha`) on every fold but k, handed to `visit`
 * with the indices of fold k and their rows (freed afterwards).
 */
export async function withFoldHeadsByHand(
  train: LabeledFeatures,
  alpha: Float32Array,
  options: { folds: number; seed: number; lambda: number },
  visit: (fit: HeadFit, heldOut: Int32Array, test: LabeledFeatures) => Promise<void>,
): Promise<void> {
  const assignment = stratifiedFolds(train.labels, options.folds, options.seed);
  for (let k = 0; k < options.folds; k++) {
    const inside = Int32Array.from(train.labels.keys()).filter((i) => assignment[i] !== k);
    const heldOut = Int32Array.from(train.labels.keys()).filter((i) => assignment[i] === k);
    const part = selectRows(train, inside), test = selectRows(train, heldOut);
    const fit = await fitHead(part, {
      lambda: options.lambda,
      numClasses: 8,
      alpha: Float32Array.from(inside, (i) => alpha[i]),
      tol: 1e-7,
    });
    await visit(fit, heldOut, test);
    tf.dispose([part.features, test.features]);
    disposeHead(fit);
  }
}

/** Each point's loss under the head fitted (at `alpha`) on every fold of assignment `seed` but its own, by hand. */
export async function lossesWithoutOwnFold(
  train: LabeledFeatures,
  alpha: Float32Array,
  options: { folds: number; seed: number; lambda: number },
): Promise<Float64Array> {
  const losses = new Float64Array(train.labels.length);
  await withFoldHeadsByHand(train, alpha, options, async (fit, heldOut, test) => {
    const logProbabilities = tf.tidy(() => tf.logSoftmax(headLogits(fit, test.features)));
    const values = await logProbabilities.array();
    heldOut.forEach((i, q) => losses[i] = -values[q][train.labels[i]]);
    logProbabilities.dispose();
  });
  return losses;
}

/** |actual − expected| < 10⁻³ max(1, expected) for every point. */
export const assertLossesClose = (actual: ArrayLike<number>, expected: ArrayLike<number>, what: string) => {
  for (let i = 0; i < expected.length; i++) {
    assert.ok(
      Math.abs(actual[i] - expected[i]) < 1e-3 * Math.max(1, expected[i]),
      `${what}, point ${i}: ${actual[i]} vs ${expected[i]}`,
    );
  }
};
