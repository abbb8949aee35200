/** Batched forward passes over the images of one split under the eval transform, outputs read back to the CPU. */
import * as tf from "@tensorflow/tfjs";
import type { DatasetItem } from "../data/dataset.ts";
import { type ImageDecoder, readImageBatch } from "../data/images.ts";
import { evalTransform, type TransformConfig } from "../data/transforms.ts";

/** How to read the images. */
export interface SplitReader {
  decoder: ImageDecoder;
  /** The model's eval preprocessing. */
  transform: TransformConfig;
  /** Input channels of the model. */
  channels: number;
  /** Rows to crop at the bottom of every image (`Dataset.bannerHeight`). */
  bannerHeight?: number;
  /** Images per forward pass. */
  batchSize: number;
}

/**
 * Runs `forward` on the eval-transformed images of `items`, `batchSize` at a time (inside `tf.tidy`), and returns
 * each of its outputs [b, ·] concatenated over the batches in item order, as row-major arrays.
 */
export async function forwardSplit(
  items: readonly DatasetItem[],
  reader: SplitReader,
  forward: (images: tf.Tensor4D) => tf.Tensor2D[],
): Promise<Float32Array[]> {
  const size = reader.transform.size, parts: Float32Array[][] = [];
  for (let start = 0; start < items.length; start += reader.batchSize) {
    const batch = items.slice(start, start + reader.batchSize);
    const { pixels } = await readImageBatch(batch.map((item) => item.path), {
      decoder: reader.decoder,
      transform: (image) => evalTransform(image, reader.transform),
      bannerHeight: reader.bannerHeight,
    });
    const outputs = tf.tidy(() => forward(tf.tensor4d(pixels, [batch.length, size, size, reader.channels])));
    parts.push(await Promise.all(outputs.map(async (t) => (await t.data()) as Float32Array)));
    tf.dispose(outputs);
  }
  const count = parts[0]?.length ?? 0;
  return Array.from({ length: count }, (_, k) => {
    const all = new Float32Array(parts.reduce((n, p) => n + p[k].length, 0));
    parts.reduce((offset, p) => (all.set(p[k], offset), offset + p[k].length), 0);
    return all;
  });
}
