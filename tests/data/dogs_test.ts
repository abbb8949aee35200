import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { loadDogs } from "../../lib/data/dogs.ts";
import { copyMat, makeTree, TINY_JPEG } from "./_trees.ts";

const BREEDS = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02085936-Maltese_dog"];
const voc = (...boxes: number[][]) =>
  `<annotation><size><width>500</width><height>333</height><depth>3</depth></size>` +
  boxes.map(([a, b, c, d]) =>
    `<object><name>dog</name><bndbox><xmin>${a}</xmin><ymin>${b}</ymin><xmax>${c}</xmax><ymax>${d}</ymax></bndbox></object>`
  ).join("") +
  `</annotation>`;

function tree(lists = "lists/"): string {
  const files: Record<string, string | Uint8Array> = {};
  const rows = { train: [[0, 1], [1, 1], [2, 2], [3, 3], [4, 1]], test: [[0, 2], [1, 3], [2, 3]] };
  for (const [split, entries] of Object.entries(rows)) {
    for (const [k, c] of entries) {
      const breed = BREEDS[c - 1], stem = `${breed}/${breed.split("-")[0]}_${split}${k}`;
      files[`Images/${stem}.jpg`] = TINY_JPEG;
      files[`Annotation/${stem}`] = voc([10, 20, 110, 220]);
    }
  }
  files["Annotation/n02085620-Chihuahua/n02085620_train0"] = voc([10, 20, 110, 220], [5, 40, 60, 250]);
  const root = makeTree(files);
  copyMat("train_list.mat", root, `${lists}train_list.mat`);
  copyMat("test_list.mat", root, `${lists}test_list.mat`);
  return root;
}

Deno.test("loadDogs() reads the .mat lists, names classes by folder and unions multi-dog boxes", () => {
  for (const lists of ["lists/", ""]) {
    const dataset = loadDogs(tree(lists));
    assert.deepEqual(dataset.classNames, BREEDS);
    assert.deepEqual(dataset.items.map((i) => [i.label, i.split]), [
      [0, "train"],
      [0, "train"],
      [1, "train"],
      [2, "train"],
      [0, "train"],
      [1, "test"],
      [2, "test"],
      [2, "test"],
    ]);
    assert.equal(dataset.items[2].id, "n02085782-Japanese_spaniel/n02085782_train2.jpg");
    assert.deepEqual(dataset.items[0].bbox, { x: 4, y: 19, width: 106, height: 231 }); // union of both dogs
    assert.deepEqual(dataset.items[1].bbox, { x: 9, y: 19, width: 101, height: 201 });
    assert.match(
      dataset.warnings.join("\n"),
      /Stanford Dogs: 5 train images, the official release has 12,000/,
    );
  }
});

Deno.test("loadDogs() works without Annotation/ (no boxes, a warning) and names a missing list", () => {
  const root = tree();
  rmSync(join(root, "Annotation"), { recursive: true });
  const dataset = loadDogs(root);
  assert.equal(dataset.items[0].bbox, undefined);
  assert.match(dataset.warnings.join("\n"), /no Annotation\/ folder, so no bounding boxes/);
  rmSync(join(root, "lists/test_list.mat"));
  assert.throws(
    () => loadDogs(root),
    /Stanford Dogs: required file test_list\.mat or lists\/test_list\.mat is missing/,
  );
});

Deno.test("loadDogs() names a listed image that is absent", () => {
  const root = tree();
  rmSync(join(root, "Images/n02085936-Maltese_dog/n02085936_train3.jpg"));
  assert.throws(
    () => loadDogs(root),
    /1 of 8 images listed in train_list\.mat \/ test_list\.mat are missing, e\.g\. .*n02085936_train3\.jpg/,
  );
});
