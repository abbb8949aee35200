/**
 * Batched, resumable feature extraction: images → backbone pooled features h_i [N, D], cached on disk.
 *
 * Cache layout, one folder per (dataset, split, model, weights) under `cacheDir`, named
 * `<dataset>__<split>__<model>__<first 12 hex digits of the weights SHA-256>`:
 * - `features.json` — the sidecar: the cache key (dataset, split, model name and config, weights SHA-256,
 *   preprocessing, D), the shard size, how many images are done, their ids and labels, and whether it is complete;
 * - `shard-00000.safetensors`, … — `features` [≤ shardSize, D] F32 of the images done so far, while incomplete;
 * - `features.safetensors` — `features` [N, D] F32 once complete (the shards are then removed).
 * Every file is written to a temporary name and renamed, and the sidecar only lists shards already renamed, so
 * an interrupted run (exception or `kill -9`) leaves complete shards and the next run continues after the last
 * one. A folder whose key differs from the current one is never reused: opening it throws.
 */
import * as tf from "@tensorflow/tfjs";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { writeJsonAtomic } from "./_atomic.ts";
import type { Backbone, Preprocessing } from "./models/backbone.ts";
import { readSafetensors, writeSafetensors } from "./models/safetensors.ts";
import { Progress } from "./progress.ts";

/**
 * One image, preprocessed as `model.preprocessing` says — resized, centre-cropped and normalised, timm's eval
 * transform, which is what `lib/data`'s `evalTransform` returns — plus its id and label.
 */
export interface ImageItem {
  /** Unique within the split; checked against the cache on resume. */
  id: string;
  /** H × W × C values, row-major: (pixel/255 − mean) / std per RGB channel. */
  image: Float32Array;
  /** Class index, or absent (stored as −1). */
  label?: number;
}

/** The images of one split of one dataset, always yielded in the same order. */
export interface ImageSource {
  /** Dataset name, part of the cache key (e.g. "cub200"). */
  dataset: string;
  /** Split name, part of the cache key (e.g. "train"). */
  split: string;
  /** Number of items `items` yields. */
  count: number;
  /** The images, in a fixed order. */
  items: AsyncIterable<ImageItem>;
}

/** Options of `extractFeatures`. */
export interface ExtractFeaturesOptions {
  /** Images per forward pass (default 32); a batch never spans two shards. */
  batchSize?: number;
  /** Root folder of the cache; without it nothing is cached. */
  cacheDir?: string;
  /** Images per shard of a new cache (default 1024); a resumed cache keeps its own. */
  shardSize?: number;
  /** Called after every batch with (images done, total). An exception stops the run; the cache stays valid. */
  onProgress?: (done: number, total: number) => void;
  /** Show a progress bar with images/s and ETA on stderr (default false). */
  progressBar?: boolean;
}

/** Features of one split, in source order. */
export interface FeatureSet {
  /** h_i [N, D] (float32; the caller disposes it). */
  features: tf.Tensor2D;
  /** Image ids, row order. */
  ids: string[];
  /** Labels [N], −1 where an item had none. */
  labels: Int32Array;
  /** The cache folder, when `cacheDir` was given. */
  cachePath?: string;
  /** Images run through the backbone in this call (the rest came from the cache). */
  computed: number;
}

/** What decides whether cached features can be reused. */
export interface FeatureCacheKey {
  /** `ImageSource.dataset`. */
  dataset: string;
  /** `ImageSource.split`. */
  split: string;
  /** `Backbone.name`. */
  model: string;
  /** `Backbone.config`. */
  config: unknown;
  /** `Backbone.weightsSha256`. */
  weightsSha256: string;
  /** `Backbone.preprocessing`. */
  preprocessing: Preprocessing;
  /** D. */
  numFeatures: number;
}

interface Sidecar {
  format: "carrot-features";
  version: 1;
  key: FeatureCacheKey;
  shardSize: number;
  done: number;
  shards: string[];
  ids: string[];
  labels: number[];
  complete: boolean;
}

const SIDECAR = "features.json", COMPLETE = "features.safetensors";
const shardName = (i: number) => `shard-${String(i).padStart(5, "0")}.safetensors`;

/**
 * A file-system-safe folder name for the cache of one (dataset, split, model, weights): the first 12 hex digits of
 * the weights' SHA-256 end the name, so new weights for a model name (a retrained backbone) get a fresh cache.
 */
function folderName(key: FeatureCacheKey): string {
  return [key.dataset, key.split, key.model, key.weightsSha256.slice(0, 12)]
    .map((s) => s.replace(/[^A-Za-z0-9._-]+/g, "_")).join("__");
}

function emptySidecar(key: FeatureCacheKey, shardSize: number): Sidecar {
  return {
    format: "carrot-features",
    version: 1,
    key,
    shardSize,
    done: 0,
    shards: [],
    ids: [],
    labels: [],
    complete: false,
  };
}

/** Opens or creates the sidecar in `dir`; throws a `RangeError` naming the differing fields on a key mismatch. */
async function openCache(dir: string, key: FeatureCacheKey, shardSize: number): Promise<Sidecar> {
  const path = join(dir, SIDECAR);
  if (!existsSync(path)) {
    await Deno.mkdir(dir, { recursive: true });
    const sidecar = emptySidecar(key, shardSize);
    await writeJsonAtomic(path, sidecar);
    return sidecar;
  }
  const sidecar = JSON.parse(await Deno.readTextFile(path)) as Sidecar;
  if (sidecar.format !== "carrot-features" || sidecar.version !== 1) {
    throw new RangeError(`${path} is not a version-1 CARROT feature cache; delete ${dir} to recompute`);
  }
  const differing = (Object.keys(key) as (keyof FeatureCacheKey)[]).filter((f) =>
    JSON.stringify(sidecar.key[f]) !== JSON.stringify(key[f])
  );
  if (differing.length) {
    const show = (k: FeatureCacheKey) => differing.map((f) => `${f}=${JSON.stringify(k[f])}`).join(", ");
    throw new RangeError(
      `Feature cache ${dir} was made with ${show(sidecar.key)}, not ${show(key)}. ` +
        `Delete ${dir} to recompute, or pass another cacheDir.`,
    );
  }
  // temporary files of a run that was killed mid-write; complete files were renamed before they counted
  for (const entry of Deno.readDirSync(dir)) {
    if (entry.name.startsWith(".") && entry.name.endsWith(".tmp")) await Deno.remove(join(dir, entry.name));
  }
  return sidecar;
}

async function readFeatures(path: string, rows: number, dim: number): Promise<Float32Array> {
  const t = (await readSafetensors(path)).tensors.get("features");
  if (!t || !(t.values instanceof Float32Array) || t.shape[0] !== rows || t.shape[1] !== dim) {
    throw new RangeError(
      `${path}: expected "features" F32 [${rows}, ${dim}], got ${t ? `${t.dtype} [${t.shape}]` : "none"}; ` +
        `delete the cache folder to recompute`,
    );
  }
  return t.values;
}

function concatRows(parts: Float32Array[]): Float32Array {
  const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    all.set(p, offset);
    offset += p.length;
  }
  return all;
}

/**
 * Runs `model.forwardFeatures` over every image of `source` in batches of `batchSize` and returns h_i [N, D] with
 * ids and labels in source order. With `cacheDir`, features are written shard by shard and a rerun continues after
 * the last complete shard (checking that the ids so far match); a complete cache is returned without touching
 * `source.items`.
 * Throws a `RangeError` for a cache made with another key, an image of the wrong size, ids that differ from the
 * cached ones, or a source that yields other than `count` items.
 */
export async function extractFeatures(
  source: ImageSource,
  model: Backbone,
  options: ExtractFeaturesOptions = {},
): Promise<FeatureSet> {
  const batchSize = options.batchSize ?? 32, dim = model.numFeatures, total = source.count;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`batchSize must be ≥ 1, got ${batchSize}`);
  }
  const key: FeatureCacheKey = {
    dataset: source.dataset,
    split: source.split,
    model: model.name,
    config: model.config,
    weightsSha256: model.weightsSha256,
    preprocessing: model.preprocessing,
    numFeatures: dim,
  };
  const dir = options.cacheDir ? join(options.cacheDir, folderName(key)) : undefined;
  const shardSize = options.shardSize ?? 1024;
  const state = dir ? await openCache(dir, key, shardSize) : emptySidecar(key, shardSize);
  const result = (rows: Float32Array, computed: number): FeatureSet => {
    if (state.done !== total) {
      throw new RangeError(
        `${source.dataset}/${source.split}: ${state.done} images, but count says ${total}`,
      );
    }
    return {
      features: tf.tensor2d(rows, [total, dim]),
      ids: state.ids,
      labels: Int32Array.from(state.labels),
      cachePath: dir,
      computed,
    };
  };
  if (dir && state.complete) return result(await readFeatures(join(dir, COMPLETE), state.done, dim), 0);

  const parts: Float32Array[] = [];
  for (const [i, shard] of state.shards.entries()) {
    const rows = Math.min(state.shardSize, state.done - i * state.shardSize);
    parts.push(await readFeatures(join(dir!, shard), rows, dim));
  }
  const [channels, height, width] = model.preprocessing.inputSize, pixels = height * width * channels;
  const bar = options.progressBar
    ? new Progress(`features ${source.dataset}/${source.split}`, total - state.done, "img")
    : undefined;
  const resumedAt = state.done;
  // pending rows keep their items' ids and labels only: the preprocessed images (600 KB each at 224 px) would
  // otherwise stay alive until the shard is written
  let index = 0,
    batch: ImageItem[] = [],
    pending: { rows: Float32Array; items: Omit<ImageItem, "image">[] }[] = [];

  const saveShard = async () => {
    const items = pending.flatMap((p) => p.items), rows = concatRows(pending.map((p) => p.rows));
    pending = [];
    if (dir) {
      const name = shardName(state.shards.length);
      await writeSafetensors(join(dir, name), {
        features: { dtype: "F32", shape: [items.length, dim], values: rows },
      });
      state.shards.push(name);
    }
    parts.push(rows);
    state.done += items.length;
    state.ids.push(...items.map((it) => it.id));
    state.labels.push(...items.map((it) => it.label ?? -1));
    if (dir) await writeJsonAtomic(join(dir, SIDECAR), state);
  };
  const runBatch = async () => {
    const buffer = new Float32Array(batch.length * pixels);
    batch.forEach((item, i) => buffer.set(item.image, i * pixels));
    const features = tf.tidy(() =>
      model.forwardFeatures(tf.tensor4d(buffer, [batch.length, height, width, channels]))
    );
    try {
      const items = batch.map(({ id, label }) => ({ id, label }));
      pending.push({ rows: (await features.data()) as Float32Array, items });
    } finally {
      features.dispose();
    }
    batch = [];
    if (index % state.shardSize === 0) await saveShard();
    bar?.update(index - resumedAt);
    options.onProgress?.(index, total);
  };

  for await (const item of source.items) {
    if (index < resumedAt) {
      if (item.id !== state.ids[index]) {
        throw new RangeError(
          `${source.dataset}/${source.split}: item ${index} is "${item.id}" but the cache in ${dir} has ` +
            `"${state.ids[index]}" there; the source order changed — delete ${dir} to recompute`,
        );
      }
      index++;
      continue;
    }
    if (item.image.length !== pixels) {
      throw new RangeError(
        `Image "${item.id}" has ${item.image.length} values; ${model.name} takes ${height}×${width}×${channels} ` +
          `= ${pixels} (HWC, preprocessed as model.preprocessing says)`,
      );
    }
    batch.push(item);
    index++;
    if (batch.length === batchSize || index % state.shardSize === 0) await runBatch();
  }
  if (batch.length) await runBatch();
  if (pending.length) await saveShard();
  bar?.finish();
  const rows = concatRows(parts);
  if (dir && state.done === total) {
    await writeSafetensors(join(dir, COMPLETE), {
      features: { dtype: "F32", shape: [total, dim], values: rows },
    }, {
      metadata: {
        dataset: source.dataset,
        split: source.split,
        model: model.name,
        weightsSha256: model.weightsSha256,
      },
    });
    const shards = state.shards;
    Object.assign(state, { complete: true, shards: [] });
    await writeJsonAtomic(join(dir, SIDECAR), state);
    for (const shard of shards) await Deno.remove(join(dir, shard));
  }
  return result(rows, state.done - resumedAt);
}
