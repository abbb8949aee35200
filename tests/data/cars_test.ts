import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { loadCars } from "../../lib/data/cars.ts";
import { copyMat, makeTree, TINY_JPEG } from "./_trees.ts";

const CLASSES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"];
const images = (dir: string, n: number, digits = 5) =>
  Object.fromEntries(
    Array.from({ length: n }, (_, i) => [`${dir}/${String(i + 1).padStart(digits, "0")}.jpg`, TINY_JPEG]),
  );

function devkit(trainDir = "cars_train"): string {
  const root = makeTree({ ...images(trainDir, 4), ...images("cars_test", 3) });
  copyMat("cars_meta.mat", root, "devkit/cars_meta.mat");
  copyMat("cars_train_annos.mat", root, "devkit/cars_train_annos.mat");
  copyMat("cars_test_annos_withlabels.mat", root, "cars_test_annos_withlabels.mat");
  return root;
}

Deno.test("loadCars() reads the devkit layout: class names, labels, boxes, splits", () => {
  const root = devkit();
  const dataset = loadCars(root);
  assert.deepEqual(dataset.classNames, CLASSES);
  assert.deepEqual(dataset.items.map((i) => [i.id, i.label, i.split]), [
    ["cars_train/00001.jpg", 0, "train"],
    ["cars_train/00002.jpg", 1, "train"],
    ["cars_train/00003.jpg", 2, "train"],
    ["cars_train/00004.jpg", 0, "train"],
    ["cars_test/00001.jpg", 2, "test"],
    ["cars_test/00002.jpg", 1, "test"],
    ["cars_test/00003.jpg", 0, "test"],
  ]);
  assert.deepEqual(dataset.items[0].bbox, { x: 2, y: 4, width: 28, height: 16 }); // corners (3, 5)–(30, 20), 1-based
  assert.match(dataset.warnings.join("\n"), /Stanford Cars: 4 train images, the official release has 8,144/);
});

Deno.test("loadCars() accepts Kaggle's nested cars_train/cars_train/", () => {
  const dataset = loadCars(devkit("cars_train/cars_train"));
  assert.equal(dataset.items[0].id, "cars_train/cars_train/00001.jpg");
});

Deno.test("loadCars() reads the all-in-one cars_annos.mat layout", () => {
  const root = makeTree(images("car_ims", 7, 6));
  copyMat("cars_annos.mat", root, "cars_annos.mat");
  const dataset = loadCars(root);
  assert.deepEqual(dataset.classNames, CLASSES);
  assert.deepEqual(dataset.items.map((i) => i.split), [
    "train",
    "train",
    "train",
    "train",
    "test",
    "test",
    "test",
  ]);
  assert.deepEqual(dataset.items.map((i) => i.label), [0, 1, 2, 0, 2, 1, 0]);
  assert.equal(dataset.items[6].path, join(root, "car_ims/000007.jpg"));
});

Deno.test("loadCars() explains a missing test-label file, a bad label and a missing image", () => {
  const unlabelled = devkit();
  rmSync(join(unlabelled, "cars_test_annos_withlabels.mat"));
  copyMat("cars_meta.mat", unlabelled, "devkit/cars_test_annos.mat"); // present, but without labels
  assert.throws(
    () => loadCars(unlabelled),
    /devkit\/cars_test_annos\.mat has no class labels; put cars_test_annos_withlabels\.mat/,
  );
  rmSync(join(unlabelled, "devkit/cars_test_annos.mat"));
  assert.throws(
    () => loadCars(unlabelled),
    /required file cars_test_annos_withlabels\.mat or devkit\/cars_test_annos_withlabels\.mat is missing/,
  );

  const badLabel = devkit();
  copyMat("cars_train_annos_bad_label.mat", badLabel, "devkit/cars_train_annos.mat");
  assert.throws(() => loadCars(badLabel), /cars_train_annos\.mat, annotation 4: label 7 is outside 1\.\.3/);

  const noImage = devkit();
  rmSync(join(noImage, "cars_test/00002.jpg"));
  assert.throws(
    () => loadCars(noImage),
    /1 of 7 images listed in the devkit annotation files are missing, e\.g\. .*cars_test\/00002\.jpg/,
  );
});
