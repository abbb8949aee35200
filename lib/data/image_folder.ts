/**
 * The generic layout `root/<split>/<class>/<image>`, with splits `train`, `val` (or `valid`, `validation`) and
 * `test`. Classes are the sorted union of class folders over all splits; images are `.jpg`, `.jpeg` and `.png`
 * (any case), sorted by name. Other files are skipped and counted in `warnings`.
 */
import { existsSync, readdirSync } from "node:fs";
import { extname, join, resolve } from "node:path";
import type { Dataset, DatasetItem, LoaderOptions, Split } from "./dataset.ts";
import { DatasetError, type LayoutSpec, requireRoot } from "./_layout.ts";

const SPEC: LayoutSpec = {
  title: "ImageFolder",
  layout: "root/{train,val,test}/<class>/<image>.{jpg,jpeg,png} (val may be named valid or validation)",
};
const SPLIT_FOLDERS: [Split, string][] = [
  ["train", "train"],
  ["val", "val"],
  ["val", "valid"],
  ["val", "validation"],
  ["test", "test"],
];
const IMAGE_EXTENSIONS = new Set([".jpg", ".jpeg", ".png"]);

/** Loads `root/<split>/<class>/*` (no list file, so `checkImages` has nothing to check). */
export function loadImageFolder(root: string, _options: LoaderOptions = {}): Dataset {
  requireRoot(root, SPEC);
  const splits = SPLIT_FOLDERS.filter(([, folder]) => existsSync(join(root, folder)));
  if (splits.length === 0) {
    throw new DatasetError(
      root,
      `${SPEC.title}: ${root} has no train/, val/ or test/ folder. Expected ${SPEC.layout}`,
    );
  }
  const listing = splits.map(([split, folder]) => {
    const classes = readdirSync(join(root, folder), { withFileTypes: true }).filter((e) => e.isDirectory());
    return { split, folder, classes: classes.map((entry) => entry.name).sort() };
  });
  const classNames = [...new Set(listing.flatMap(({ classes }) => classes))].sort();
  const labelOf = new Map(classNames.map((name, label) => [name, label]));
  const items: DatasetItem[] = [];
  let skipped = 0;
  for (const { split, folder, classes } of listing) {
    for (const className of classes) {
      for (const file of readdirSync(join(root, folder, className)).sort()) {
        if (!IMAGE_EXTENSIONS.has(extname(file).toLowerCase())) {
          skipped++;
          continue;
        }
        const id = `${folder}/${className}/${file}`;
        items.push({ id, path: resolve(root, id), label: labelOf.get(className)!, split });
      }
    }
  }
  if (items.length === 0) {
    throw new DatasetError(root, `${SPEC.title}: no images under ${root}. Expected ${SPEC.layout}`);
  }
  const warnings = skipped > 0
    ? [`${SPEC.title}: skipped ${skipped} files that are not .jpg, .jpeg or .png`]
    : [];
  return { name: "imagefolder", root, classNames, items, warnings, metric: "accuracy" };
}
