/**
 * FGVC-Aircraft 2013b (Maji et al., 2013): 10,000 images in three splits of 3,334 / 3,333 / 3,333 and three label
 * levels (100 variants, 70 families, 30 manufacturers). Label lines are `<id> <name>` where the name may contain
 * spaces and slashes ("F/A-18"), so they split on the first space; class order follows `variants.txt` (as
 * torchvision does). Every image carries a 20-pixel copyright banner at the bottom that the official toolkit
 * crops (`bannerHeight`), and the official metric is mean per-class accuracy.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Dataset, DatasetItem, LoaderOptions, Split } from "./dataset.ts";
import {
  assertImagesExist,
  assertUniqueIds,
  boxFromCorners,
  countWarnings,
  DatasetError,
  type LayoutSpec,
  readIdTable,
  readRows,
  requireFile,
  requireRoot,
  resolveRoot,
} from "./_layout.ts";

const SPEC: LayoutSpec = {
  title: "FGVC-Aircraft",
  layout: "fgvc-aircraft-2013b/data/{images/<id>.jpg, variants.txt, images_variant_{train,val,test}.txt, " +
    "families.txt, images_family_*.txt, manufacturers.txt, images_manufacturer_*.txt, images_box.txt}",
};
const SPLITS: Split[] = ["train", "val", "test"];
const COARSE_LEVELS = [["family", "families.txt"], ["manufacturer", "manufacturers.txt"]] as const;

/** Options of `loadAircraft`. */
export interface AircraftOptions extends LoaderOptions {
  /** Fold the official val split into train ("trainval", as most papers train). Default false. */
  mergeVal?: boolean;
}

/** Loads FGVC-Aircraft from `root` (the `fgvc-aircraft-2013b` folder, its `data/` folder, or their parent). */
export function loadAircraft(root: string, options: AircraftOptions = {}): Dataset {
  requireRoot(root, SPEC);
  const base = resolveRoot(root, "variants.txt", ["data", "fgvc-aircraft-2013b/data"]);
  const classNames = readNames(requireFile(base, ["variants.txt"], SPEC));
  const variants = readLevel(base, "variant", classNames, true)!;
  const levels = COARSE_LEVELS.flatMap(([level, file]) => {
    if (!existsSync(join(base, file))) return [];
    const names = readNames(join(base, file));
    const labels = readLevel(base, level, names, false);
    return labels ? [{ level, names, byId: new Map(labels.map((entry) => [entry.id, entry.label])) }] : [];
  });
  const boxes = readBoxes(join(base, "images_box.txt"));
  const items: DatasetItem[] = variants.map(({ id, split, label }) => {
    const itemLevels = Object.fromEntries(levels.map(({ level, byId }) => {
      const coarse = byId.get(id);
      if (coarse === undefined) {
        throw new DatasetError(
          base,
          `${SPEC.title}: image ${id} has a variant but no ${level} label; re-extract the data`,
        );
      }
      return [level, coarse];
    }));
    return {
      id,
      path: resolve(base, "images", `${id}.jpg`),
      label,
      split: options.mergeVal && split === "val" ? "train" : split,
      bbox: boxes?.get(id),
      ...(levels.length > 0 ? { levels: itemLevels } : {}),
    };
  });
  assertUniqueIds(items.map((item) => item.id), `${SPEC.title} images_variant_{train,val,test}.txt`, base);
  if (options.checkImages ?? true) {
    assertImagesExist(items, { ...SPEC, listedIn: "images_variant_{train,val,test}.txt" });
  }
  const official = options.mergeVal
    ? { classes: 100, train: 6667, test: 3333 }
    : { classes: 100, train: 3334, val: 3333, test: 3333 };
  return {
    name: "aircraft",
    root: base,
    classNames,
    items,
    warnings: countWarnings(SPEC.title, items, classNames.length, official),
    ...(levels.length > 0
      ? { levelNames: Object.fromEntries(levels.map(({ level, names }) => [level, names])) }
      : {}),
    bannerHeight: 20,
    metric: "mean-per-class-accuracy",
  };
}

function readNames(path: string): string[] {
  return readFileSync(path, "utf8").split(/\r?\n/).map((line) => line.trim()).filter((line) => line !== "");
}

interface LevelLabel {
  id: string;
  split: Split;
  label: number;
}

/** `images_<level>_<split>.txt` for the three splits; undefined if a coarse level's files are absent. */
function readLevel(
  base: string,
  level: string,
  names: string[],
  required: boolean,
): LevelLabel[] | undefined {
  const files = SPLITS.map((split) => `images_${level}_${split}.txt`);
  if (!required && !files.every((file) => existsSync(join(base, file)))) return undefined;
  const index = new Map(names.map((name, i) => [name, i]));
  return SPLITS.flatMap((split, s) => {
    const path = requireFile(base, [files[s]], SPEC);
    return readRows(path, 2).map((row) => {
      const label = index.get(row.fields[1]);
      if (label === undefined) {
        throw new DatasetError(
          path,
          `${path}:${row.line}: ${level} "${row.fields[1]}" is not in ${
            level === "variant" ? "variants" : level
          }` +
            ` list (${names.length} names); the label and name files come from different releases`,
        );
      }
      return { id: row.fields[0], split, label };
    });
  });
}

/** `images_box.txt`: `<id> <xmin> <ymin> <xmax> <ymax>`, 1-based inclusive. */
function readBoxes(path: string) {
  if (!existsSync(path)) return undefined;
  return new Map(
    [...readIdTable(path, 5)].map(([id, row]) => {
      const [xmin, ymin, xmax, ymax] = row.fields.slice(1).map(Number);
      return [id, boxFromCorners(xmin, ymin, xmax, ymax)];
    }),
  );
}
