/**
 * iNaturalist 2017 (Van Horn et al., 2018): 5,089 species, 579,184 train and 95,986 val images, COCO-style
 * `train2017.json` / `val2017.json` with `file_name` relative to the root (`train_val_images/<super>/<cat>/…`).
 * The test set's labels were never released, so `val2017.json` is the test split here, as in the FGVC
 * literature. Labels are category ids in sorted order; the supercategory is a coarser level.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Dataset, DatasetItem, LoaderOptions, Split } from "./dataset.ts";
import {
  assertImagesExist,
  assertUniqueIds,
  countWarnings,
  DatasetError,
  type LayoutSpec,
  requireFile,
  requireRoot,
} from "./_layout.ts";

const SPEC: LayoutSpec = {
  title: "iNat2017",
  layout: "{train2017.json, val2017.json, train_val_images/<supercategory>/<category>/<image>.jpg} " +
    "(train_val2017_images.tar.gz and train_val2017.zip extracted into one folder)",
};

interface CocoFile {
  images: { id: number; file_name: string }[];
  annotations: { image_id: number; category_id: number }[];
  categories: { id: number; name: string; supercategory: string }[];
}

/** Loads iNat2017 from `root`. */
export function loadInat2017(root: string, options: LoaderOptions = {}): Dataset {
  requireRoot(root, SPEC);
  const files = (["train", "test"] as Split[]).map((split) => {
    const path = requireFile(root, [split === "train" ? "train2017.json" : "val2017.json"], SPEC);
    let json: CocoFile;
    try {
      json = JSON.parse(readFileSync(path, "utf8"));
    } catch (error) {
      throw new DatasetError(
        path,
        `${path}: not valid JSON (${(error as Error).message}); re-extract train_val2017.zip`,
      );
    }
    for (const key of ["images", "annotations", "categories"] as const) {
      if (!Array.isArray(json[key])) {
        throw new DatasetError(path, `${path}: has no "${key}" array; is it a COCO file?`);
      }
    }
    return { split, path, json };
  });
  const categories = files[0].json.categories.slice().sort((a, b) => a.id - b.id);
  const labelOf = new Map(categories.map((category, label) => [category.id, label]));
  const supers = [...new Set(categories.map((category) => category.supercategory))].sort();
  const superOf = new Map(supers.map((name, index) => [name, index]));
  const items: DatasetItem[] = [];
  for (const { split, path, json } of files) {
    const categoryOf = new Map(json.annotations.map((a) => [a.image_id, a.category_id]));
    for (const image of json.images) {
      const categoryId = categoryOf.get(image.id);
      if (categoryId === undefined) {
        throw new DatasetError(path, `${path}: image ${image.id} (${image.file_name}) has no annotation`);
      }
      const label = labelOf.get(categoryId);
      if (label === undefined) {
        throw new DatasetError(
          path,
          `${path}: image ${image.id} has category_id ${categoryId}, absent from the categories of train2017.json`,
        );
      }
      items.push({
        id: image.file_name,
        path: resolve(root, image.file_name),
        label,
        split,
        levels: { supercategory: superOf.get(categories[label].supercategory)! },
      });
    }
  }
  assertUniqueIds(items.map((item) => item.id), `${SPEC.title} train2017.json + val2017.json`, root);
  if (options.checkImages ?? true) {
    assertImagesExist(items, { ...SPEC, listedIn: "train2017.json / val2017.json" });
  }
  return {
    name: "inat2017",
    root,
    classNames: categories.map((category) => category.name),
    items,
    warnings: countWarnings(SPEC.title, items, categories.length, {
      classes: 5089,
      train: 579184,
      test: 95986,
    }),
    levelNames: { supercategory: supers },
    metric: "accuracy",
  };
}
