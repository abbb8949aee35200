/**
 * NABirds (Van Horn et al., 2015): 555 visual categories of North American birds, 23,929 train / 24,633 test
 * images, in CUB's file format. Class ids are sparse and `classes.txt` also lists the hierarchy's inner nodes, so
 * the labels are the sorted distinct ids of `image_class_labels.txt` mapped to 0..K−1 (MetaFormer's order).
 */
import type { Dataset, LoaderOptions } from "./dataset.ts";
import { readCubFamily } from "./_cub_family.ts";
import { assertImagesExist, countWarnings, type LayoutSpec, resolveRoot } from "./_layout.ts";

const SPEC: LayoutSpec = {
  title: "NABirds",
  layout:
    "nabirds/{images.txt, image_class_labels.txt, train_test_split.txt, classes.txt, bounding_boxes.txt, " +
    "hierarchy.txt, images/<class id>/<uuid>.jpg} (the archive from the Cornell Lab after registration)",
};

/** Loads NABirds from `root` (the `nabirds` folder or its parent). */
export function loadNabirds(root: string, options: LoaderOptions = {}): Dataset {
  const base = resolveRoot(root, "images.txt", ["nabirds"]);
  const { images, classNames } = readCubFamily(base, SPEC);
  const used = [...new Set(images.map((image) => image.classId))].sort((a, b) => Number(a) - Number(b));
  const labelOf = new Map(used.map((id, label) => [id, label]));
  const items = images.map(({ classId, ...image }) => ({ ...image, label: labelOf.get(classId)! }));
  if (options.checkImages ?? true) assertImagesExist(items, { ...SPEC, listedIn: "images.txt" });
  return {
    name: "nabirds",
    root: base,
    classNames: used.map((id) => classNames.get(id)!),
    items,
    warnings: countWarnings(SPEC.title, items, used.length, { classes: 555, train: 23929, test: 24633 }),
    metric: "accuracy",
  };
}
