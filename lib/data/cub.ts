/**
 * CUB-200-2011 (Wah et al., 2011): 200 bird species, 5,994 train / 5,794 test images, boxes and the official
 * split in `train_test_split.txt`. Class ids 1..200 become labels 0..199 (as TransFG does).
 */
import type { Dataset, LoaderOptions } from "./dataset.ts";
import { readCubFamily } from "./_cub_family.ts";
import { assertImagesExist, assertLabel, countWarnings, type LayoutSpec, resolveRoot } from "./_layout.ts";

const SPEC: LayoutSpec = {
  title: "CUB-200-2011",
  layout: "CUB_200_2011/{images.txt, image_class_labels.txt, train_test_split.txt, classes.txt, " +
    "bounding_boxes.txt, images/<class>/<image>.jpg} (extract CUB_200_2011.tgz)",
};

/** Loads CUB-200-2011 from `root` (the `CUB_200_2011` folder or its parent). */
export function loadCub(root: string, options: LoaderOptions = {}): Dataset {
  const base = resolveRoot(root, "images.txt", ["CUB_200_2011"]);
  const { images, classNames } = readCubFamily(base, SPEC);
  const classIds = [...classNames.keys()].sort((a, b) => Number(a) - Number(b));
  const items = images.map(({ classId, ...image }) => {
    const label = Number(classId) - 1;
    assertLabel(label, classIds.length, `image_class_labels.txt, image ${image.id}`, base);
    return { ...image, label };
  });
  if (options.checkImages ?? true) assertImagesExist(items, { ...SPEC, listedIn: "images.txt" });
  return {
    name: "cub",
    root: base,
    classNames: classIds.map((id) => classNames.get(id)!),
    items,
    warnings: countWarnings(SPEC.title, items, classIds.length, { classes: 200, train: 5994, test: 5794 }),
    metric: "accuracy",
  };
}
