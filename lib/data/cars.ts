/**
 * Stanford Cars (Krause et al., 2013): 196 make-model-year classes, 8,144 train / 8,041 test images. Two
 * layouts circulate and both are read: the devkit (`cars_train/`, `cars_test/`, `devkit/cars_meta.mat`,
 * `devkit/cars_train_annos.mat`, `cars_test_annos_withlabels.mat`, as torchvision expects, including Kaggle's
 * nested `cars_train/cars_train/`) and the all-in-one `car_ims/` + `cars_annos.mat` (as MetaFormer reads it).
 * The CSV re-uploads have no test labels and are not supported.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Dataset, DatasetItem, LoaderOptions, Split } from "./dataset.ts";
import {
  assertImagesExist,
  assertLabel,
  assertUniqueIds,
  boxFromCorners,
  countWarnings,
  DatasetError,
  type LayoutSpec,
  requireFile,
  requireRoot,
} from "./_layout.ts";
import { matField, matNumbers, matStrings, type MatValue, readMat } from "./mat5.ts";

const SPEC: LayoutSpec = {
  title: "Stanford Cars",
  layout: "either {cars_train/*.jpg, cars_test/*.jpg, devkit/cars_meta.mat, devkit/cars_train_annos.mat, " +
    "cars_test_annos_withlabels.mat} (car_devkit.tgz plus the test labels) or {car_ims/*.jpg, cars_annos.mat}",
};
const OFFICIAL = { classes: 196, train: 8144, test: 8041 };

/** Loads Stanford Cars from `root`, detecting the devkit or the `cars_annos.mat` layout. */
export function loadCars(root: string, options: LoaderOptions = {}): Dataset {
  requireRoot(root, SPEC);
  const allInOne = existsSync(join(root, "cars_annos.mat"));
  const { items, classNames } = allInOne ? readAllInOne(root) : readDevkit(root);
  assertUniqueIds(items.map((item) => item.id), SPEC.title, root);
  if (options.checkImages ?? true) {
    assertImagesExist(items, {
      ...SPEC,
      listedIn: allInOne ? "cars_annos.mat" : "the devkit annotation files",
    });
  }
  return {
    name: "cars",
    root,
    classNames,
    items,
    warnings: countWarnings(SPEC.title, items, classNames.length, OFFICIAL),
    metric: "accuracy",
  };
}

function variable(path: string, name: string): MatValue {
  const value = readMat(readFileSync(path), path).get(name);
  if (!value) {
    throw new DatasetError(path, `${path}: has no variable "${name}"; is it the Stanford Cars file?`);
  }
  return value;
}

/** One scalar field of every element of the `annotations` struct array, as numbers or strings. */
function numbersOf(annotations: MatValue, path: string, field: string): number[] {
  return matField(annotations, field, `${path}: annotations`).map((v) =>
    matNumbers(v, `${path}: ${field}`)[0]
  );
}
function stringsOf(annotations: MatValue, path: string, field: string): string[] {
  return matField(annotations, field, `${path}: annotations`).map((v) =>
    matStrings(v, `${path}: ${field}`)[0]
  );
}

/**
 * Items from the `annotations` struct array of `path`; `locate` gives each image's path relative to `root` and
 * its split, from the same struct array.
 */
function annotationItems(
  root: string,
  path: string,
  numClasses: number,
  locate: (annotations: MatValue) => (i: number) => { relative: string; split: Split },
): DatasetItem[] {
  const annotations = variable(path, "annotations");
  const classes = numbersOf(annotations, path, "class");
  const [x1, y1, x2, y2] = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"].map((f) =>
    numbersOf(annotations, path, f)
  );
  const where = locate(annotations);
  return classes.map((classId, i) => {
    const label = classId - 1;
    assertLabel(label, numClasses, `${path}, annotation ${i + 1}`, path);
    const { relative, split } = where(i);
    return {
      id: relative,
      path: resolve(root, relative),
      label,
      split,
      bbox: boxFromCorners(x1[i], y1[i], x2[i], y2[i]),
    };
  });
}

function readDevkit(root: string): { items: DatasetItem[]; classNames: string[] } {
  const metaPath = requireFile(root, ["devkit/cars_meta.mat", "cars_meta.mat"], SPEC);
  const classNames = matStrings(variable(metaPath, "class_names"), `${metaPath}: class_names`);
  const trainPath = requireFile(root, ["devkit/cars_train_annos.mat", "cars_train_annos.mat"], SPEC);
  const unlabelled = ["devkit/cars_test_annos.mat", "cars_test_annos.mat"].find((f) =>
    existsSync(join(root, f))
  );
  const testCandidates = ["cars_test_annos_withlabels.mat", "devkit/cars_test_annos_withlabels.mat"];
  if (unlabelled && !testCandidates.some((f) => existsSync(join(root, f)))) {
    throw new DatasetError(
      join(root, unlabelled),
      `${SPEC.title}: ${unlabelled} has no class labels; put cars_test_annos_withlabels.mat (released with the ` +
        `test labels) in ${root}`,
    );
  }
  const testPath = requireFile(root, testCandidates, SPEC);
  const folder = (split: string) => existsSync(join(root, split, split)) ? `${split}/${split}` : split;
  const fromSplit = (path: string, split: Split, dir: string) =>
    annotationItems(root, path, classNames.length, (annotations) => {
      const fnames = stringsOf(annotations, path, "fname");
      return (i) => ({ relative: `${dir}/${fnames[i]}`, split });
    });
  const items = [
    ...fromSplit(trainPath, "train", folder("cars_train")),
    ...fromSplit(testPath, "test", folder("cars_test")),
  ];
  return { items, classNames };
}

function readAllInOne(root: string): { items: DatasetItem[]; classNames: string[] } {
  const path = join(root, "cars_annos.mat");
  const classNames = matStrings(variable(path, "class_names"), `${path}: class_names`);
  const items = annotationItems(root, path, classNames.length, (annotations) => {
    const relative = stringsOf(annotations, path, "relative_im_path");
    const test = numbersOf(annotations, path, "test");
    return (i) => ({ relative: relative[i], split: test[i] ? "test" : "train" });
  });
  return { items, classNames };
}
