/**
 * SynthBirds, the embedded default dataset: procedurally rendered 64×64 bird-like glyphs, fine-grained by
 * construction, with documented corruption of the training split and its ground truth per image.
 *
 * Classes come in groups of four. A group fixes the coarse look (body colour, tail shape, beak shape); its four
 * species are the 2×2 combinations of two small binary parts chosen per group among beak colour (dark/yellow),
 * wing bars (none/two), crown (plain/red) and eye ring (no/yes). So each species has two siblings that differ in
 * exactly one small part, and one that differs in both. Nuisance within a class is strong (see `_bird_render.ts`).
 *
 * Corruption (train split only, per class, disjoint): `labelNoise` of the images get a wrong label — a sibling in
 * the group with probability 0.8, else any other class — and `shortcutFraction` of the clean ones get a class-keyed
 * background (a checkerboard in a hue of their class) that never appears in val or test.
 *
 * Presets: "default" (20 classes, 60/10/30 per class, 20% noise, 10% shortcuts) and "pretrain" (128 disjoint
 * classes, clean, 40/5/5 per class, small parts enlarged per image by f ~ U[1, 2]) for pretraining a tiny backbone.
 * The pretrain groups hold all 16 combinations of the four small parts, so no part can be predicted from the coarse
 * look: in groups of four with the other two parts fixed per group (the first design), a backbone trained on part
 * attributes predicted the fixed parts from the group (73–75% on the parts, about half the images by group alone)
 * and did not learn to see them.
 *
 * Generator version 2 (manifest `version`): version 1 never drew the eye ring (its centre had the wrong sign), so
 * siblings that differ only in it were identical; trees of version 1 are refused with the fix (regenerate).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Random } from "../random.ts";
import { type BirdSpecies, renderBird } from "./_bird_render.ts";
import { DatasetError } from "./_layout.ts";
import type { Dataset, DatasetItem, LoaderOptions, Split } from "./dataset.ts";
import { loadImageFolder } from "./image_folder.ts";
import type { RgbImage } from "./images.ts";
import { encodePng } from "./png.ts";

export type { BirdSpecies };

/** Generator settings; every field has a preset default. */
export interface SynthBirdsOptions {
  /** Output folder: `root/<split>/<class>/<n>.png` plus `root/synthbirds.json`. */
  root: string;
  /** "default" (the corrupted fine-grained task) or "pretrain" (disjoint classes, clean). Default "default". */
  preset?: "default" | "pretrain";
  /** Seed of every random choice (images and corruption). Default 0. */
  seed?: number;
  /** Number of classes, at most 32 ("default") / 128 ("pretrain"). Preset default: 20 / 128. */
  numClasses?: number;
  /** Images per class and split. Preset default: 60/10/30 / 40/5/5. */
  perClass?: { train: number; val: number; test: number };
  /** Fraction of each class's train images with a wrong label. Preset default: 0.2 / 0. */
  labelNoise?: number;
  /** Fraction of each class's train images with the shortcut background (clean-labelled ones). Preset: 0.1 / 0. */
  shortcutFraction?: number;
  /** Side of the square images in pixels. Default 64. */
  imageSize?: number;
  /**
   * Range [lo, hi] of the per-image factor f ~ U[lo, hi] that enlarges the small parts (`_bird_render.ts`), a
   * nuisance that makes them easier to see. Preset default: [1, 1] (drawn at class size, no draw) / [1, 2].
   */
  partScale?: [number, number];
  /** Called as images are written, with (done, total). */
  onProgress?: (done: number, total: number) => void;
}

/** The settings actually used, as recorded in the manifest. */
export type SynthBirdsConfig = Required<Omit<SynthBirdsOptions, "root" | "onProgress">>;

/** One class: its folder name (sorted order = label order), group and parts. */
export interface SynthBirdsClass {
  /** Folder name: zero-padded label, hue, tail, beak shape and the two small parts that vary in the group. */
  name: string;
  /** Index of the group of four siblings. */
  group: number;
  /** The parts that the renderer draws. */
  species: BirdSpecies;
}

/** `root/synthbirds.json`: the configuration, the classes and the ground truth of every image. */
export interface SynthBirdsManifest {
  /** Identifies the file. */
  format: "carrot-synthbirds";
  /** Generator version: 2 draws the eye ring (version 1 never did: its centre had the wrong sign) and `partScale`. */
  version: 2;
  /** The settings the tree was generated with; a reload must ask for the same. */
  config: SynthBirdsConfig;
  /** Classes in label order. */
  classes: SynthBirdsClass[];
  /** Every image: `id` (path below the root), observed `label`, rendered `trueLabel` and the corruption flags. */
  images: { id: string; split: Split; label: number; trueLabel: number; noisy: boolean; shortcut: boolean }[];
}

const MANIFEST = "synthbirds.json";
const GROUP_SIZE = 4;
const MAX_GROUPS = 8;
/** Species per group: four siblings ("default"), or all 2⁴ combinations of the small parts ("pretrain"). */
const groupSize = (preset: SynthBirdsConfig["preset"]) => (preset === "pretrain" ? 16 : GROUP_SIZE);
const HUE_NAMES = [ // hue = index × 22.5°
  "red",
  "vermilion",
  "orange",
  "gold",
  "olive",
  "lime",
  "green",
  "jade",
  "cyan",
  "sky",
  "blue",
  "indigo",
  "violet",
  "purple",
  "magenta",
  "rose",
];
type SmallPart = "beakColour" | "wingBars" | "crown" | "eyeRing";
const SMALL_PARTS: Record<SmallPart, [string, string]> = {
  beakColour: ["dark-beak", "yellow-beak"],
  wingBars: ["plain-wing", "barred-wing"],
  crown: ["plain-crown", "red-crown"],
  eyeRing: ["bare-eye", "eye-ring"],
};
const PAIRS: [SmallPart, SmallPart][] = [
  ["beakColour", "wingBars"],
  ["crown", "eyeRing"],
  ["beakColour", "crown"],
  ["wingBars", "eyeRing"],
  ["beakColour", "eyeRing"],
  ["wingBars", "crown"],
];
const TAILS = ["fan", "fork", "point"] as const;
const BEAKS = ["cone", "thin", "hook"] as const;

const PRESETS: Record<"default" | "pretrain", SynthBirdsConfig> = {
  default: {
    preset: "default",
    seed: 0,
    numClasses: 20,
    perClass: { train: 60, val: 10, test: 30 },
    labelNoise: 0.2,
    shortcutFraction: 0.1,
    imageSize: 64,
    partScale: [1, 1],
  },
  pretrain: {
    preset: "pretrain",
    seed: 0,
    numClasses: 128,
    perClass: { train: 40, val: 5, test: 5 },
    labelNoise: 0,
    shortcutFraction: 0,
    imageSize: 64,
    partScale: [1, 2],
  },
};

/** The full configuration for `options`: the preset's defaults overridden by what is given, validated. */
export function synthBirdsConfig(options: Omit<SynthBirdsOptions, "root"> = {}): SynthBirdsConfig {
  const preset = options.preset ?? "default";
  if (!(preset in PRESETS)) {
    throw new RangeError(`SynthBirds: preset "${preset}" is not "default" or "pretrain"`);
  }
  const base = PRESETS[preset];
  const perClass = options.perClass ?? base.perClass;
  const config: SynthBirdsConfig = { // fixed key order: the manifest comparison is textual
    preset,
    seed: options.seed ?? base.seed,
    numClasses: options.numClasses ?? base.numClasses,
    perClass: { train: perClass.train, val: perClass.val, test: perClass.test },
    labelNoise: options.labelNoise ?? base.labelNoise,
    shortcutFraction: options.shortcutFraction ?? base.shortcutFraction,
    imageSize: options.imageSize ?? base.imageSize,
    partScale: [...(options.partScale ?? base.partScale)] as [number, number],
  };
  const { numClasses, labelNoise, shortcutFraction, imageSize, partScale } = config;
  const most = groupSize(preset) * MAX_GROUPS;
  if (!(Number.isInteger(numClasses) && numClasses >= 2 && numClasses <= most)) {
    throw new RangeError(`SynthBirds: numClasses must be an integer in 2..${most}, got ${numClasses}`);
  }
  for (const split of ["train", "val", "test"] as const) {
    if (!(Number.isInteger(config.perClass[split]) && config.perClass[split] >= 0)) {
      throw new RangeError(
        `SynthBirds: perClass.${split} must be an integer ≥ 0, got ${config.perClass[split]}`,
      );
    }
  }
  if (!(labelNoise >= 0 && shortcutFraction >= 0 && labelNoise + shortcutFraction <= 1)) {
    throw new RangeError(`SynthBirds: labelNoise and shortcutFraction must be ≥ 0 with a sum ≤ 1`);
  }
  if (!(Number.isInteger(imageSize) && imageSize >= 16)) {
    throw new RangeError(`SynthBirds: imageSize must be ≥ 16`);
  }
  if (!(partScale.length === 2 && partScale[0] > 0 && partScale[1] >= partScale[0] && partScale[1] <= 3)) {
    throw new RangeError(`SynthBirds: partScale must be [lo, hi] with 0 < lo ≤ hi ≤ 3, got [${partScale}]`);
  }
  return config;
}

/**
 * The classes of a preset, fixed by the preset alone (not the seed) so that a class name always means the same
 * bird: "default" uses the even hue slots, "pretrain" the odd ones, so the two never share a class.
 */
export function synthBirdsClasses(preset: SynthBirdsConfig["preset"], numClasses: number): SynthBirdsClass[] {
  const random = new Random(preset === "default" ? 101 : 202);
  const classes: SynthBirdsClass[] = [];
  for (let group = 0; classes.length < numClasses; group++) {
    const slot = (2 * ((group * 5) % MAX_GROUPS) + (preset === "default" ? 0 : 1)) % HUE_NAMES.length;
    const body: BirdSpecies["body"] = [
      slot / HUE_NAMES.length,
      0.45 + 0.3 * random.uniform(),
      0.55 + 0.3 * random.uniform(),
    ];
    const coarse = {
      body,
      tail: TAILS[group % 3],
      beakShape: BEAKS[Math.floor(group / 3 + group) % 3],
    };
    const fixed: Record<SmallPart, number> = {
      beakColour: random.int(2),
      wingBars: random.int(2),
      crown: random.int(2),
      eyeRing: random.int(2),
    };
    const [a, b] = PAIRS[group % PAIRS.length];
    const varying: SmallPart[] = preset === "pretrain"
      ? ["beakColour", "wingBars", "crown", "eyeRing"]
      : [a, b];
    for (let k = 0; k < groupSize(preset) && classes.length < numClasses; k++) {
      // bit j of k (most significant first) sets the j-th varying part
      const parts = { ...fixed };
      varying.forEach((part, j) => parts[part] = (k >> (varying.length - 1 - j)) & 1);
      const label = classes.length;
      classes.push({
        name: [
          String(label).padStart(preset === "pretrain" ? 3 : 2, "0"),
          HUE_NAMES[slot],
          `${coarse.tail}-tail`,
          `${coarse.beakShape}-beak`,
          ...varying.map((part) => SMALL_PARTS[part][parts[part]]),
        ].join("_"),
        group,
        species: {
          ...coarse,
          beakColour: parts.beakColour ? "yellow" : "dark",
          wingBars: parts.wingBars ? 2 : 0,
          crown: parts.crown ? "red" : "plain",
          eyeRing: parts.eyeRing === 1,
        },
      });
    }
  }
  return classes;
}

/** The attributes of SynthBirds' classes: names, number of values, and each class's values. */
export interface SynthBirdsAttributes {
  /** Attribute names: body hue, tail, beak shape and the four small parts. */
  names: string[];
  /** Values per attribute (the body hues are those the classes use). */
  sizes: number[];
  /** One row of attribute values per class, in label order. */
  values: number[][];
}

/**
 * The parts of every class as attributes, for attribute-supervised pretraining (`finetune`'s `attributes`):
 * body hue (one value per distinct hue among `classes`), tail (3), beak shape (3), beak colour, wing bars, crown
 * and eye ring (2 each).
 */
export function synthBirdsAttributes(classes: readonly SynthBirdsClass[]): SynthBirdsAttributes {
  const hues = [...new Set(classes.map((c) => c.species.body[0]))].sort((a, b) => a - b);
  return {
    names: ["hue", "tail", "beakShape", "beakColour", "wingBars", "crown", "eyeRing"],
    sizes: [hues.length, TAILS.length, BEAKS.length, 2, 2, 2, 2],
    values: classes.map(({ species: b }) => [
      hues.indexOf(b.body[0]),
      TAILS.indexOf(b.tail),
      BEAKS.indexOf(b.beakShape),
      Number(b.beakColour === "yellow"),
      Number(b.wingBars === 2),
      Number(b.crown === "red"),
      Number(b.eyeRing),
    ]),
  };
}

/**
 * A contact sheet of clean renders: one row per group, `perClass` images of each of its species side by side,
 * 2-pixel white gutters. Used for the README (data/synthbirds_contact_sheet.png).
 */
export function synthBirdsContactSheet(
  { preset = "default", numClasses, perClass = 2, seed = 0 }: {
    preset?: SynthBirdsConfig["preset"];
    numClasses?: number;
    perClass?: number;
    seed?: number;
  } = {},
): RgbImage {
  const config = synthBirdsConfig({ preset, numClasses });
  const classes = synthBirdsClasses(config.preset, config.numClasses);
  const tile = config.imageSize, gap = 2, random = new Random(seed);
  const size = groupSize(config.preset);
  const rows = Math.ceil(classes.length / size), cols = size * perClass;
  const width = cols * (tile + gap) + gap, height = rows * (tile + gap) + gap;
  const data = new Uint8Array(width * height * 3).fill(255);
  classes.forEach((c, label) => {
    for (let k = 0; k < perClass; k++) {
      const image = renderBird(c.species, random, tile);
      const x0 = gap + ((label % size) * perClass + k) * (tile + gap),
        y0 = gap + c.group * (tile + gap);
      for (let y = 0; y < tile; y++) {
        data.set(image.data.subarray(y * tile * 3, (y + 1) * tile * 3), ((y0 + y) * width + x0) * 3);
      }
    }
  });
  return { width, height, data };
}

/**
 * Writes SynthBirds as an ImageFolder tree under `root` (`<split>/<class>/<nnnnn>.png`, labels as observed,
 * i.e. noisy) and then, atomically, the manifest `synthbirds.json` with the ground truth. `root` must be absent
 * or empty. Returns the manifest.
 */
export function materializeSynthBirds(options: SynthBirdsOptions): SynthBirdsManifest {
  const config = synthBirdsConfig(options);
  const root = resolve(options.root);
  if (existsSync(root) && readdirSync(root).length > 0) {
    throw new DatasetError(
      root,
      `SynthBirds: ${root} is not empty; materialise into a new folder or delete it first`,
    );
  }
  const classes = synthBirdsClasses(config.preset, config.numClasses);
  const random = new Random(config.seed);
  const [lo, hi] = config.partScale;
  const images: SynthBirdsManifest["images"] = [];
  const total = config.numClasses * (config.perClass.train + config.perClass.val + config.perClass.test);
  for (const split of ["train", "val", "test"] as const) {
    const count = config.perClass[split];
    for (let trueLabel = 0; trueLabel < classes.length; trueLabel++) {
      const nNoisy = split === "train" ? Math.round(config.labelNoise * count) : 0;
      const nShortcut = split === "train" ? Math.round(config.shortcutFraction * count) : 0;
      const order = random.permutation(count); // order[i] < nNoisy: noisy; next nShortcut: shortcut
      for (let i = 0; i < count; i++) {
        const noisy = order[i] < nNoisy, shortcut = !noisy && order[i] < nNoisy + nShortcut;
        const label = noisy ? synthBirdsWrongLabel(trueLabel, classes, random) : trueLabel;
        const image = renderBird(
          classes[trueLabel].species,
          random,
          config.imageSize,
          shortcut ? { hue: trueLabel / classes.length, period: 3 + (trueLabel % 4) } : undefined,
          hi > lo ? lo + (hi - lo) * random.uniform() : lo,
        );
        const id = `${split}/${classes[label].name}/${String(images.length).padStart(5, "0")}.png`;
        mkdirSync(join(root, split, classes[label].name), { recursive: true });
        writeFileSync(join(root, id), encodePng(image, { level: 4 }));
        images.push({ id, split, label, trueLabel, noisy, shortcut });
        options.onProgress?.(images.length, total);
      }
    }
  }
  const manifest: SynthBirdsManifest = { format: "carrot-synthbirds", version: 2, config, classes, images };
  const temporary = join(root, `${MANIFEST}.tmp`);
  writeFileSync(temporary, JSON.stringify(manifest) + "\n");
  renameSync(temporary, join(root, MANIFEST));
  return manifest;
}

/** A wrong label: a sibling in the same group with probability 0.8 (when it has one), else any other class. */
/**
 * The generator's wrong label for an image of class `trueLabel`: a sibling in its group with probability 0.8, else
 * any other class uniformly (also used by the robustness bench to redraw SynthBirds' noise at other rates).
 */
export function synthBirdsWrongLabel(
  trueLabel: number,
  classes: readonly SynthBirdsClass[],
  random: Random,
): number {
  const group = classes[trueLabel].group;
  const siblings = classes.flatMap((c, k) => (c.group === group && k !== trueLabel ? [k] : []));
  if (siblings.length > 0 && random.uniform() < 0.8) return siblings[random.int(siblings.length)];
  const other = random.int(classes.length - 1);
  return other >= trueLabel ? other + 1 : other;
}

/** Options of `loadSynthBirds`: the generator's settings (without `root`) and the loader's. */
export type LoadSynthBirdsOptions = Omit<SynthBirdsOptions, "root"> & LoaderOptions;

/**
 * Loads SynthBirds from `root`, materialising it first when `root` is absent or empty. A present manifest must
 * match the requested settings (else a DatasetError names the path and the fix). Items carry `truth`.
 */
export function loadSynthBirds(root: string, options: LoadSynthBirdsOptions = {}): Dataset {
  const { checkImages = true, ...generator } = options;
  const config = synthBirdsConfig(generator);
  const manifestPath = join(root, MANIFEST);
  const warnings: string[] = [];
  let manifest: SynthBirdsManifest;
  if (!existsSync(manifestPath)) {
    if (existsSync(root) && readdirSync(root).length > 0) {
      throw new DatasetError(
        manifestPath,
        `SynthBirds: ${root} has files but no ${MANIFEST} (an interrupted materialisation?); delete the folder to regenerate`,
      );
    }
    manifest = materializeSynthBirds({ ...generator, root });
    warnings.push(`SynthBirds: materialised ${manifest.images.length} images into ${resolve(root)}`);
  } else {
    manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
    if (manifest.format === "carrot-synthbirds" && manifest.version !== 2) {
      throw new DatasetError(
        manifestPath,
        `SynthBirds: ${root} was generated by an older CARROT (generator version ${manifest.version}, whose ` +
          `eye rings were never drawn); delete the folder to regenerate it`,
      );
    }
    if (
      manifest.format !== "carrot-synthbirds" || JSON.stringify(manifest.config) !== JSON.stringify(config)
    ) {
      throw new DatasetError(
        manifestPath,
        `SynthBirds: ${manifestPath} was generated with ${
          JSON.stringify(manifest.config)
        }, not the requested ` +
          `${JSON.stringify(config)}; pass the same settings or use another (empty) root`,
      );
    }
  }
  const folder = loadImageFolder(root);
  const truth = new Map(manifest.images.map((image) => [image.id, image]));
  if (checkImages && folder.items.length !== manifest.images.length) {
    throw new DatasetError(
      root,
      `SynthBirds: ${folder.items.length} images on disk, ${manifest.images.length} in ${MANIFEST}; delete ${root} to regenerate`,
    );
  }
  const items: DatasetItem[] = folder.items.map((item) => {
    const entry = truth.get(item.id);
    if (!entry) {
      throw new DatasetError(
        item.path,
        `SynthBirds: ${item.id} is not in ${MANIFEST}; delete ${root} to regenerate`,
      );
    }
    // Labels from the manifest, not from the sorted folder names, in case a class has no image on disk.
    return {
      ...item,
      label: entry.label,
      truth: { label: entry.trueLabel, noisy: entry.noisy, shortcut: entry.shortcut },
    };
  });
  return {
    ...folder,
    name: "synthbirds",
    classNames: manifest.classes.map((c) => c.name),
    items,
    warnings: [...folder.warnings, ...warnings],
  };
}
