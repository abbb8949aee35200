/**
 * Linear probing: how linearly separable a frozen backbone's features make a dataset. The features h = pooled
 * pre-logits of the eval-transformed images; the probe is CARROT's ERM head, W* = argmin Σ_i CE(W [h_i; 1], y_i) +
 * (λ/2)‖W‖²_F solved to stationarity (`fitHead`), with λ chosen on the validation split by NLL (`tuneLambda`), and
 * the figure of merit is its top-1 accuracy on the test split.
 */
import * as tf from "@tensorflow/tfjs";
import { disposeHead } from "../carrot/head.ts";
import { defaultLambdaGrid, tuneLambda } from "../carrot/lambda.ts";
import type { LabeledFeatures } from "../carrot/labeled_features.ts";
import { evaluateHead, type Metrics } from "../carrot/metrics.ts";
import type { Dataset } from "../data/dataset.ts";
import { type ImageDecoder, selectImageDecoder } from "../data/images.ts";
import type { Backbone } from "../models/backbone.ts";
import { forwardSplit } from "./_forward_split.ts";

/** Options of `linearProbe`. */
export interface LinearProbeOptions {
  /** λ candidates (default `defaultLambdaGrid`, 10^{-1} … 10^{3}). */
  lambdaGrid?: readonly number[];
  /** Images per forward pass (default 64). */
  batchSize?: number;
  /** Image decoder (default `selectImageDecoder("auto")`). */
  decoder?: ImageDecoder;
}

/** The probe's λ and its metrics on val and test. */
export interface LinearProbeResult {
  /** λ with the lowest validation NLL. */
  lambda: number;
  /** Metrics of that head on the validation split. */
  val: Metrics;
  /** Metrics of that head on the test split (its accuracy is the probe accuracy). */
  test: Metrics;
  /** Validation metrics of every λ tried, ascending λ. */
  grid: ({ lambda: number } & Metrics)[];
}

/**
 * Fits and evaluates a linear probe of `model` on `dataset` (see the module JSDoc); the dataset needs train, val
 * and test items (a `RangeError` says which split is empty). Frees every tensor it makes.
 */
export async function linearProbe(
  model: Backbone,
  dataset: Dataset,
  options: LinearProbeOptions = {},
): Promise<LinearProbeResult> {
  const reader = {
    decoder: options.decoder ?? await selectImageDecoder("auto"),
    transform: { ...model.preprocessing, size: model.preprocessing.inputSize[1] },
    channels: model.preprocessing.inputSize[0],
    bannerHeight: dataset.bannerHeight,
    batchSize: options.batchSize ?? 64,
  };
  const splits: LabeledFeatures[] = [];
  try {
    for (const split of ["train", "val", "test"] as const) {
      const items = dataset.items.filter((item) => item.split === split);
      if (items.length === 0) throw new RangeError(`linearProbe: ${dataset.name} has no ${split} items`);
      const [features] = await forwardSplit(items, reader, (images) => [model.forwardFeatures(images)]);
      splits.push({
        features: tf.tensor2d(features, [items.length, model.numFeatures]),
        labels: Int32Array.from(items, (item) => item.label),
      });
    }
    const [train, val, test] = splits, numClasses = dataset.classNames.length;
    const tuned = await tuneLambda(train, val, { grid: options.lambdaGrid ?? defaultLambdaGrid, numClasses });
    try {
      return {
        lambda: tuned.lambda,
        val: await evaluateHead(tuned.fit, val),
        test: await evaluateHead(tuned.fit, test),
        grid: tuned.rows,
      };
    } finally {
      disposeHead(tuned.fit);
    }
  } finally {
    tf.dispose(splits.map((s) => s.features));
  }
}
