/**
 * The annotation files that CUB-200-2011 and NABirds share (Caltech-UCSD's format, reused by Cornell):
 * `images.txt`, `train_test_split.txt`, `image_class_labels.txt`, `classes.txt` and the optional
 * `bounding_boxes.txt`, all `<image_id> <value…>` lines, with images under `images/`. Private to `lib/data/`.
 */
import { join, resolve } from "node:path";
import type { BoundingBox, Split } from "./dataset.ts";
import {
  DatasetError,
  intField,
  type LayoutSpec,
  readIdTable,
  requireFile,
  requireRoot,
  type Row,
} from "./_layout.ts";

/** One image as the CUB-family files describe it, before class ids are mapped to labels. */
export interface CubFamilyImage {
  id: string;
  path: string;
  split: Split;
  classId: string;
  bbox?: BoundingBox;
}

/** The parsed files: images in `images.txt` order and class names by class id. */
export interface CubFamilyFiles {
  images: CubFamilyImage[];
  classNames: Map<string, string>;
}

/** Reads the CUB-family files under `root`; every image of `images.txt` must appear in the other files. */
export function readCubFamily(root: string, spec: LayoutSpec): CubFamilyFiles {
  requireRoot(root, spec);
  const file = (name: string) => requireFile(root, [name], spec);
  const imagesPath = file("images.txt");
  const splitPath = file("train_test_split.txt");
  const labelsPath = file("image_class_labels.txt");
  const classesPath = file("classes.txt");
  const images = readIdTable(imagesPath, 2);
  const splits = readIdTable(splitPath, 2);
  const labels = readIdTable(labelsPath, 2);
  const classNames = new Map([...readIdTable(classesPath, 2)].map(([id, row]) => [id, row.fields[1]]));
  const boxesPath = join(root, "bounding_boxes.txt");
  const boxes = readOptionalBoxes(boxesPath);

  const lookup = (table: Map<string, Row>, path: string, id: string): Row => {
    const row = table.get(id);
    if (!row) {
      throw new DatasetError(
        path,
        `${spec.title}: image id ${id} of images.txt has no line in ${path}; re-extract the dataset`,
      );
    }
    return row;
  };
  const out: CubFamilyImage[] = [];
  for (const [id, row] of images) {
    const isTrain = intField(splitPath, lookup(splits, splitPath, id), 1);
    if (isTrain !== 0 && isTrain !== 1) {
      throw new DatasetError(
        splitPath,
        `${splitPath}: image ${id} has is_training_image ${isTrain}, expected 0 or 1`,
      );
    }
    const classId = lookup(labels, labelsPath, id).fields[1];
    if (!classNames.has(classId)) {
      throw new DatasetError(
        labelsPath,
        `${labelsPath}: image ${id} has class id ${classId}, which classes.txt does not list; ` +
          `the two files come from different releases`,
      );
    }
    out.push({
      id,
      path: resolve(root, "images", row.fields[1]),
      split: isTrain ? "train" : "test",
      classId,
      bbox: boxes?.get(id),
    });
  }
  return { images: out, classNames };
}

/** `bounding_boxes.txt` (`<id> <x> <y> <width> <height>`, pixels) when present. */
function readOptionalBoxes(path: string): Map<string, BoundingBox> | undefined {
  let table: Map<string, Row>;
  try {
    table = readIdTable(path, 5);
  } catch (error) {
    if ((error as { code?: string }).code === "ENOENT") return undefined;
    throw error;
  }
  const boxes = new Map<string, BoundingBox>();
  for (const [id, row] of table) {
    const [x, y, width, height] = row.fields.slice(1).map(Number);
    if (![x, y, width, height].every(Number.isFinite)) {
      throw new DatasetError(
        path,
        `${path}:${row.line}: expected four numbers after the id, got "${row.fields.slice(1).join(" ")}"`,
      );
    }
    boxes.set(id, { x, y, width, height });
  }
  return boxes;
}
