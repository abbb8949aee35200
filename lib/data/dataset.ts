/**
 * The one `Dataset` shape every loader returns, the `loadDataset` dispatcher over the supported layouts, and
 * `splitValidation`, which carves a stratified validation split from train.
 */
import { stratifiedSplitIndices, type ValidationSize } from "../split.ts";
import { loadAircraft } from "./aircraft.ts";
import { loadCars } from "./cars.ts";
import { loadCub } from "./cub.ts";
import { loadDogs } from "./dogs.ts";
import { loadImageFolder } from "./image_folder.ts";
import { loadInat2017 } from "./inat.ts";
import { loadNabirds } from "./nabirds.ts";
import { loadSynthBirds, type SynthBirdsOptions } from "./synthbirds.ts";

export { DatasetError } from "./_layout.ts";
export type { ValidationSize } from "../split.ts";

/** Which official split an item belongs to (iNat2017's `val2017.json` is its test split). */
export type Split = "train" | "val" | "test";

/** An axis-aligned box in pixels of the original image: 0-based top-left corner, width and height. */
export interface BoundingBox {
  /** Left edge, 0-based pixels. */
  x: number;
  /** Top edge, 0-based pixels. */
  y: number;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
}

/** Ground truth of SynthBirds' corruption for one image: the clean class and what was done to it. */
export interface ItemTruth {
  /** The class the image was rendered as (equal to `label` unless `noisy`). */
  label: number;
  /** The observed label was flipped away from the rendered class. */
  noisy: boolean;
  /** The background is the class's shortcut texture, present in train only. */
  shortcut: boolean;
}

/** One image of a dataset. */
export interface DatasetItem {
  /** Unique within the dataset; stable across runs (the official id or the path below the root). */
  id: string;
  /** Absolute path of the image file. */
  path: string;
  /** Class index in 0..K−1 into `Dataset.classNames`. */
  label: number;
  /** The official split (or "val" after `splitValidation`). */
  split: Split;
  /** The official object box, where the dataset ships one. */
  bbox?: BoundingBox;
  /** Labels at coarser levels, indices into `Dataset.levelNames[level]` (FGVC-Aircraft family, manufacturer). */
  levels?: Record<string, number>;
  /** Ground truth of synthetic corruption (SynthBirds). */
  truth?: ItemTruth;
}

/** What every loader returns. */
export interface Dataset {
  /** The loader's name, e.g. "cub". */
  name: DatasetName;
  /** The folder the files were read from. */
  root: string;
  /** Class names, index = label. */
  classNames: string[];
  /** Every image of every split, in the order of the official lists. */
  items: DatasetItem[];
  /** Differences from the official release (counts) and anything else skipped or assumed; never printed. */
  warnings: string[];
  /** Class names of coarser label levels, keyed like `DatasetItem.levels`. */
  levelNames?: Record<string, string[]>;
  /** Pixels at the bottom of every image that are not scene (FGVC-Aircraft's 20-pixel banner); crop before use. */
  bannerHeight?: number;
  /** The official metric: plain accuracy, or the mean of per-class accuracies (FGVC-Aircraft). */
  metric: "accuracy" | "mean-per-class-accuracy";
}

/** Options every loader accepts. */
export interface LoaderOptions {
  /** Verify that every listed image exists (one folder listing per folder, cheap). Default true. */
  checkImages?: boolean;
}

/** The layouts `loadDataset` knows. */
export type DatasetName =
  | "cub"
  | "cars"
  | "aircraft"
  | "dogs"
  | "nabirds"
  | "inat2017"
  | "imagefolder"
  | "synthbirds";

/** The names accepted by `loadDataset`, for CLI validation. */
export const DATASET_NAMES: readonly DatasetName[] = [
  "cub",
  "cars",
  "aircraft",
  "dogs",
  "nabirds",
  "inat2017",
  "imagefolder",
  "synthbirds",
];

/** Options of `loadDataset`; each applies to the layouts it names. */
export interface LoadDatasetOptions extends LoaderOptions {
  /** FGVC-Aircraft: fold the official val split into train ("trainval", as most papers train). Default false. */
  mergeVal?: boolean;
  /** SynthBirds: generator settings, used to materialise an absent or empty root and checked against a present one. */
  synthBirds?: Omit<SynthBirdsOptions, "root">;
}

/**
 * Loads a dataset in its official layout: `cub` (CUB-200-2011), `cars` (Stanford Cars, devkit or
 * `cars_annos.mat`), `aircraft` (FGVC-Aircraft 2013b), `dogs` (Stanford Dogs), `nabirds`, `inat2017`,
 * `imagefolder` (`root/<split>/<class>/*`) or `synthbirds` (materialised into `root` when absent or empty).
 * Throws `DatasetError` naming the file and the fix when the layout is wrong.
 */
export function loadDataset(name: DatasetName, root: string, options: LoadDatasetOptions = {}): Dataset {
  switch (name) {
    case "cub":
      return loadCub(root, options);
    case "cars":
      return loadCars(root, options);
    case "aircraft":
      return loadAircraft(root, options);
    case "dogs":
      return loadDogs(root, options);
    case "nabirds":
      return loadNabirds(root, options);
    case "inat2017":
      return loadInat2017(root, options);
    case "imagefolder":
      return loadImageFolder(root, options);
    case "synthbirds":
      return loadSynthBirds(root, { ...options.synthBirds, checkImages: options.checkImages });
    default:
      throw new RangeError(`loadDataset: unknown dataset "${name}"; use one of ${DATASET_NAMES.join(", ")}`);
  }
}

/**
 * Moves a stratified, seeded share of each class's train items to split "val" (by observed label), keeping at
 * least one train item per class (`stratifiedSplitIndices`). Item order is unchanged, so arrays aligned with
 * `items` stay aligned. Refuses a dataset that already has a val split (FGVC-Aircraft's official one): use that,
 * or load with `mergeVal`.
 */
export function splitValidation(dataset: Dataset, size: ValidationSize & { seed: number }): Dataset {
  const existing = dataset.items.filter((item) => item.split === "val").length;
  if (existing > 0) {
    throw new RangeError(
      `splitValidation: ${dataset.name} already has ${existing} val items; use them, or reload with mergeVal: true`,
    );
  }
  const trainItems = [...dataset.items.keys()].filter((i) => dataset.items[i].split === "train");
  const { val } = stratifiedSplitIndices(trainItems.map((i) => dataset.items[i].label), size, size.seed);
  const toVal = new Set(Array.from(val, (q) => trainItems[q]));
  const items = dataset.items.map((item, i) => (toVal.has(i) ? { ...item, split: "val" as const } : item));
  return { ...dataset, items };
}
