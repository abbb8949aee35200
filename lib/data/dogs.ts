/**
 * Stanford Dogs (Khosla et al., 2011): 120 breeds, 12,000 train / 8,580 test images. The split comes from
 * `train_list.mat` / `test_list.mat` (`file_list`: paths below `Images/`, `labels`: 1..120); class names are the
 * `<wnid>-<breed>` folder names. Boxes come from `Annotation/<folder>/<image stem>` (extensionless PASCAL VOC
 * XML) when that folder is present; an image with several dogs gets the box around all of them.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { BoundingBox, Dataset, DatasetItem, LoaderOptions, Split } from "./dataset.ts";
import {
  assertImagesExist,
  assertUniqueIds,
  boxFromCorners,
  countWarnings,
  DatasetError,
  type LayoutSpec,
  requireFile,
  requireRoot,
} from "./_layout.ts";
import { matNumbers, matStrings, readMat } from "./mat5.ts";

const SPEC: LayoutSpec = {
  title: "Stanford Dogs",
  layout:
    "{Images/<wnid>-<breed>/<image>.jpg, train_list.mat, test_list.mat, Annotation/<wnid>-<breed>/<image>} " +
    "(images.tar, lists.tar and annotation.tar extracted into one folder; lists may sit in lists/)",
};

/** Loads Stanford Dogs from `root`. */
export function loadDogs(root: string, options: LoaderOptions = {}): Dataset {
  requireRoot(root, SPEC);
  const annotations = join(root, "Annotation");
  const withBoxes = existsSync(annotations);
  const names = new Map<number, string>();
  const items: DatasetItem[] = [];
  for (const split of ["train", "test"] as Split[]) {
    const path = requireFile(root, [`${split}_list.mat`, `lists/${split}_list.mat`], SPEC);
    const variables = readMat(readFileSync(path), path);
    const get = (name: string) => {
      const value = variables.get(name);
      if (!value) {
        throw new DatasetError(path, `${path}: has no variable "${name}"; is it a Stanford Dogs list?`);
      }
      return value;
    };
    const files = matStrings(get("file_list"), `${path}: file_list`);
    const labels = matNumbers(get("labels"), `${path}: labels`);
    if (files.length !== labels.length) {
      throw new DatasetError(
        path,
        `${path}: ${files.length} files but ${labels.length} labels; re-extract lists.tar`,
      );
    }
    files.forEach((file, i) => {
      const label = labels[i] - 1, folder = dirname(file);
      if (!Number.isInteger(label) || label < 0) {
        throw new DatasetError(path, `${path}: label ${labels[i]} of ${file} is not a class number 1, 2, …`);
      }
      const known = names.get(label);
      if (known !== undefined && known !== folder) {
        throw new DatasetError(path, `${path}: label ${label + 1} is used for both ${known}/ and ${folder}/`);
      }
      names.set(label, folder);
      const item: DatasetItem = { id: file, path: resolve(root, "Images", file), label, split };
      if (withBoxes) item.bbox = readVocBox(join(annotations, file.replace(/\.jpe?g$/i, "")));
      items.push(item);
    });
  }
  const numClasses = Math.max(...names.keys()) + 1;
  const classNames = Array.from({ length: numClasses }, (_, k) => names.get(k) ?? `class_${k + 1}`);
  const warnings = countWarnings(SPEC.title, items, numClasses, { classes: 120, train: 12000, test: 8580 });
  const unnamed = classNames.filter((_, k) => !names.has(k)).length;
  if (unnamed > 0) warnings.push(`${SPEC.title}: ${unnamed} labels below ${numClasses} label no image`);
  if (!withBoxes) warnings.push(`${SPEC.title}: no Annotation/ folder, so no bounding boxes`);
  assertUniqueIds(items.map((item) => item.id), `${SPEC.title} train_list.mat + test_list.mat`, root);
  if (options.checkImages ?? true) {
    assertImagesExist(items, { ...SPEC, listedIn: "train_list.mat / test_list.mat" });
  }
  return { name: "dogs", root, classNames, items, warnings, metric: "accuracy" };
}

/** The box around every `<object><bndbox>` of a VOC annotation, or undefined if the file is absent. */
function readVocBox(path: string): BoundingBox | undefined {
  if (!existsSync(path)) return undefined;
  const xml = readFileSync(path, "utf8");
  const tag = (text: string, name: string) =>
    Number(new RegExp(`<${name}>\\s*([-\\d.]+)\\s*</${name}>`).exec(text)?.[1]);
  const boxes = [...xml.matchAll(/<bndbox>([\s\S]*?)<\/bndbox>/g)].map((m) =>
    ["xmin", "ymin", "xmax", "ymax"].map((name) => tag(m[1], name))
  );
  if (boxes.length === 0 || boxes.some((box) => !box.every(Number.isFinite))) {
    throw new DatasetError(
      path,
      `${path}: no readable <object><bndbox> with xmin, ymin, xmax, ymax; re-extract annotation.tar`,
    );
  }
  const [xmin, ymin] = [0, 1].map((k) => Math.min(...boxes.map((box) => box[k])));
  const [xmax, ymax] = [2, 3].map((k) => Math.max(...boxes.map((box) => box[k])));
  return boxFromCorners(xmin, ymin, xmax, ymax);
}
