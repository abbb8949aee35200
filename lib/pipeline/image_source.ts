/**
 * The bridge from a `Dataset` (lib/data) to the feature extractor's `ImageSource` (lib/features.ts): decode each
 * image of one split, apply the model's eval transform, and yield it in a fixed order. With `skipBadImages` an
 * unreadable image yields zeros and is recorded, so the source still yields `count` items (the feature cache
 * checks that); the caller drops those rows afterwards (`dropRows`).
 */
import * as tf from "@tensorflow/tfjs";
import type { Dataset, DatasetItem, Split } from "../data/dataset.ts";
import { type ImageDecoder, readImage } from "../data/images.ts";
import { evalTransform } from "../data/transforms.ts";
import type { ImageItem, ImageSource } from "../features.ts";
import type { Preprocessing } from "../models/backbone.ts";

/** An image source plus the bad images found while it was consumed. */
export interface DatasetSource {
  /** What `extractFeatures` consumes. */
  source: ImageSource;
  /** The items of the split, in source order. */
  items: DatasetItem[];
  /** Indices (into `items`) of images that could not be read; filled while the source is consumed. */
  bad: { index: number; path: string; reason: string }[];
}

/** The images of `split` of `dataset`, preprocessed for a model (see the module JSDoc). */
export function datasetSource(
  dataset: Dataset,
  split: Split,
  preprocessing: Preprocessing,
  decoder: ImageDecoder,
  options: { skipBadImages?: boolean } = {},
): DatasetSource {
  const items = dataset.items.filter((item) => item.split === split);
  const [, , size] = preprocessing.inputSize;
  const config = { ...preprocessing, size };
  const bad: DatasetSource["bad"] = [];
  async function* generate(): AsyncIterable<ImageItem> {
    for (const [index, item] of items.entries()) {
      let image: Float32Array;
      try {
        image = evalTransform(
          await readImage(item.path, decoder, { bannerHeight: dataset.bannerHeight ?? 0 }),
          config,
        );
      } catch (error) {
        if (!options.skipBadImages) throw error;
        bad.push({ index, path: item.path, reason: (error as Error).message });
        image = new Float32Array(size * size * 3);
      }
      yield { id: item.id, image, label: item.label };
    }
  }
  return {
    source: { dataset: dataset.name, split, count: items.length, items: generate() },
    items,
    bad,
  };
}

/** The rows of `features` `[N, D]` other than `drop` (sorted or not), as a new tensor. */
export function dropRows(features: tf.Tensor2D, drop: readonly number[]): tf.Tensor2D {
  if (drop.length === 0) return features.clone();
  const skip = new Set(drop);
  const keep = Int32Array.from({ length: features.shape[0] }, (_, i) => i).filter((i) => !skip.has(i));
  return tf.tidy(() => tf.gather(features, tf.tensor1d(keep, "int32")) as tf.Tensor2D);
}
