/**
 * The features the pipeline trains on, from images (dataset → backbone → cached features) or from precomputed
 * safetensors files (`--features train,val,test` from any framework: a tensor "features" [N, D] in F32/F16/F64
 * and "labels" [N] in I32/I64, optionally "ids" in the metadata as a JSON array).
 */
import * as tf from "@tensorflow/tfjs";
import { existsSync, readFileSync } from "node:fs";
import type { LabeledFeatures } from "../carrot/labeled_features.ts";
import {
  type Dataset,
  type DatasetItem,
  type DatasetName,
  loadDataset,
  type Split,
} from "../data/dataset.ts";
import { selectImageDecoder } from "../data/images.ts";
import type { SynthBirdsOptions } from "../data/synthbirds.ts";
import { extractFeatures } from "../features.ts";
import { loadTimmModel } from "../models/registry.ts";
import { streamSafetensors, type TensorData } from "../models/safetensors.ts";
import { datasetSource, dropRows } from "./image_source.ts";
import { log } from "../progress.ts";

/**
 * Why a run without a validation split and with `valFraction` 0 is refused (by `deno task train` before the run,
 * by `loadImageFeatures` before feature extraction, and by `runTraining`).
 */
export const NO_VALIDATION_DATA =
  "--val-fraction 0 leaves no validation data: λ tuning, CARROT's selection and its fallback need a " +
  "validation split; use --val-fraction > 0 (e.g. 0.1) or a dataset/feature set with a validation split";

/** One split's features with what identifies each row. */
export interface SplitFeatures extends LabeledFeatures {
  /** Row ids (image ids, or "row-<i>" for precomputed features without ids). */
  ids: string[];
  /** The dataset items of the rows, when the features came from images. */
  items?: DatasetItem[];
}

/** The splits, the class names and where they came from. */
export interface PipelineFeatures {
  /** The training split. */
  train: SplitFeatures;
  /** The official validation split, when the dataset has one. */
  val?: SplitFeatures;
  /** The test split. */
  test: SplitFeatures;
  /** Class names, index = label. */
  classNames: string[];
  /** Loader warnings, images skipped, the model and weights used. */
  provenance: Record<string, unknown>;
}

/** Options of `loadImageFeatures`. */
export interface ImageFeaturesOptions {
  dataset: DatasetName;
  dataRoot: string;
  /** A registered timm name, a timm model folder (config.json + model.safetensors) or a `.json` config object. */
  model: string;
  /** timm safetensors weights; default for a model folder: its model.safetensors. */
  weights?: string;
  cacheDir: string;
  batchSize: number;
  skipBadImages: boolean;
  /** SynthBirds generator settings (used when the root must be materialised; checked against an existing one). */
  synthBirds?: Omit<SynthBirdsOptions, "root">;
  /**
   * The run's validation share carved from train: 0 on a dataset without a validation split throws
   * `NO_VALIDATION_DATA` before any feature is extracted (default: not checked).
   */
  valFraction?: number;
}

/** Loads the dataset, runs (or reads from the cache) the backbone on each split, and returns the features. */
export async function loadImageFeatures(options: ImageFeaturesOptions): Promise<PipelineFeatures> {
  const dataset: Dataset = loadDataset(options.dataset, options.dataRoot, { synthBirds: options.synthBirds });
  for (const warning of dataset.warnings) log(`  warning: ${warning}`);
  if (options.valFraction === 0 && !dataset.items.some((item) => item.split === "val")) {
    throw new RangeError(`${dataset.root}: ${NO_VALIDATION_DATA}`);
  }
  // a registered timm name, a timm model folder, or a JSON file with a config object (timm constructor arguments +
  // "architecture")
  const model = await loadTimmModel(
    options.model.endsWith(".json") ? JSON.parse(await Deno.readTextFile(options.model)) : options.model,
    options.weights,
  );
  const decoder = await selectImageDecoder();
  log(
    `  ${dataset.name}: ${dataset.items.length} images, ${dataset.classNames.length} classes; model ` +
      `${model.name} (${model.numFeatures}-d features, weights sha256 ${
        model.weightsSha256.slice(0, 12)
      }…); ` +
      `decoder ${decoder.name}`,
  );
  const weights = model.report.source; // the file read: options.weights, or the folder's model.safetensors
  const card = backboneCard(weights, model.weightsSha256);
  if (card) {
    log(
      `  backbone card ${card.path}: linear probe on SynthBirds' default task ${
        (100 * card.linearProbe).toFixed(1)
      }% test top-1 (random weights of the same architecture: ${(100 * card.randomProbe).toFixed(1)}%)`,
    );
  }
  const skipped: { split: string; path: string; reason: string }[] = [];
  const run = async (split: Split): Promise<SplitFeatures | undefined> => {
    const source = datasetSource(dataset, split, model.preprocessing, decoder, {
      skipBadImages: options.skipBadImages,
    });
    if (source.items.length === 0) return undefined;
    const set = await extractFeatures(source.source, model, {
      batchSize: options.batchSize,
      cacheDir: options.cacheDir,
      progressBar: true,
    });
    log(`  ${split}: ${set.ids.length} images, ${set.ids.length - set.computed} from the cache`);
    const drop = source.bad.map((b) => b.index);
    skipped.push(...source.bad.map((b) => ({ split, path: b.path, reason: b.reason })));
    const keep = (_: unknown, i: number) => !drop.includes(i);
    const features = dropRows(set.features, drop);
    set.features.dispose();
    return {
      features,
      labels: Int32Array.from(source.items.filter(keep), (item) => item.label),
      ids: source.items.filter(keep).map((item) => item.id),
      items: source.items.filter(keep),
    };
  };
  try {
    const train = await run("train"), val = await run("val"), test = await run("test");
    if (!train || !test) throw new RangeError(`${dataset.root}: the dataset has no train or no test images`);
    if (skipped.length) log(`  skipped ${skipped.length} unreadable images (listed in metrics.json)`);
    return {
      train,
      val,
      test,
      classNames: dataset.classNames,
      provenance: {
        dataset: dataset.name,
        root: dataset.root,
        warnings: dataset.warnings,
        model: model.name,
        weights,
        weightsSha256: model.weightsSha256,
        ...(card ? { backboneCard: card } : {}),
        preprocessing: model.preprocessing,
        skippedImages: skipped,
      },
    };
  } finally {
    model.dispose();
  }
}

/**
 * The card `deno task pretrain-synth` writes beside its weights (`<stem>.json` for `<stem>.safetensors`), when it
 * describes exactly these weights (same SHA-256): its linear-probe accuracies.
 */
export function backboneCard(weights: string | undefined, sha256: string) {
  const path = weights?.replace(/\.safetensors$/, ".json");
  if (!path || path === weights || !existsSync(path)) return undefined;
  try {
    const card = JSON.parse(readFileSync(path, "utf8"));
    if (card.weights?.sha256 !== sha256) return undefined;
    return {
      path,
      linearProbe: Number(card.linearProbe.pretrained.testAccuracy),
      randomProbe: Number(card.linearProbe.random.testAccuracy),
    };
  } catch {
    return undefined; // not a card: nothing to report
  }
}

async function readFeatureFile(path: string): Promise<SplitFeatures & { sha256: string }> {
  // one pass over the file: every tensor and the file's SHA-256 (for the provenance)
  const tensors = new Map<string, TensorData>();
  const { header, sha256 } = await streamSafetensors(path, {
    sha256: true,
    onTensor: (name, tensor) => void tensors.set(name, tensor),
  });
  const features = tensors.get("features"), labels = tensors.get("labels");
  if (!features || features.shape.length !== 2) {
    throw new RangeError(
      `${path}: needs a 2-D tensor "features" [N, D]; found ${[...tensors.keys()].join(", ")}`,
    );
  }
  if (!labels || labels.shape.length !== 1 || labels.shape[0] !== features.shape[0]) {
    throw new RangeError(`${path}: needs a tensor "labels" [${features.shape[0]}] of class indices`);
  }
  const n = features.shape[0];
  const ids = header.metadata.ids
    ? JSON.parse(header.metadata.ids) as string[]
    : Array.from({ length: n }, (_, i) => `row-${i}`);
  return {
    features: tf.tensor2d(Float32Array.from(features.values as ArrayLike<number>), [n, features.shape[1]]),
    labels: Int32Array.from(labels.values as ArrayLike<number>, Number),
    ids,
    sha256: sha256!,
  };
}

/** Reads precomputed features `[train, val, test]` (val may be an empty string: then it is carved from train). */
export async function loadPrecomputedFeatures(paths: readonly string[]): Promise<PipelineFeatures> {
  if (paths.length !== 3) {
    throw new RangeError(
      `--features needs three comma-separated paths train,val,test (val may be empty), got ${paths.length}`,
    );
  }
  const [train, val, test] = await Promise.all(
    paths.map((p) => (p ? readFeatureFile(p) : Promise.resolve(undefined))),
  );
  if (!train || !test) throw new RangeError("--features: the train and test files are required");
  const numClasses = Math.max(...[train, val, test].flatMap((s) => (s ? Array.from(s.labels) : []))) + 1;
  return {
    train,
    val,
    test,
    classNames: Array.from({ length: numClasses }, (_, c) => `class ${c}`),
    provenance: {
      features: (["train", "val", "test"] as const).flatMap((split, s) => {
        const file = [train, val, test][s];
        return file ? [{ split, path: paths[s], sha256: file.sha256, rows: file.labels.length }] : [];
      }),
    },
  };
}
