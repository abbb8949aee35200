import assert from "node:assert/strict";
import { loadInat2017 } from "../../lib/data/inat.ts";
import { makeTree, TINY_JPEG } from "./_trees.ts";

const categories = [
  { id: 2, name: "Cardinalis cardinalis", supercategory: "Aves" },
  { id: 0, name: "Danaus plexippus", supercategory: "Insecta" },
  { id: 1, name: "Turdus migratorius", supercategory: "Aves" },
];
const coco = (images: [number, string, number][]) =>
  JSON.stringify({
    info: {},
    licenses: [],
    categories,
    images: images.map(([id, file_name]) => ({ id, file_name, width: 48, height: 36 })),
    annotations: images.map(([id, , category_id]) => ({ id, image_id: id, category_id })),
  });
const path = (sup: string, cat: string, n: number) => `train_val_images/${sup}/${cat}/${n}.jpg`;
const TRAIN: [number, string, number][] = [[10, path("Aves", "Cardinalis cardinalis", 1), 2], [
  11,
  path("Insecta", "Danaus plexippus", 2),
  0,
]];
const VAL: [number, string, number][] = [[20, path("Aves", "Turdus migratorius", 3), 1]];

function tree(train = coco(TRAIN), val = coco(VAL)) {
  return makeTree({
    "train2017.json": train,
    "val2017.json": val,
    ...Object.fromEntries([...TRAIN, ...VAL].map(([, file]) => [file, TINY_JPEG])),
  });
}

Deno.test("loadInat2017() reads COCO files: sorted category ids, val as test, supercategory level", () => {
  const dataset = loadInat2017(tree());
  assert.deepEqual(dataset.classNames, ["Danaus plexippus", "Turdus migratorius", "Cardinalis cardinalis"]);
  assert.deepEqual(dataset.items.map((i) => [i.label, i.split, i.levels?.supercategory]), [[2, "train", 0], [
    0,
    "train",
    1,
  ], [1, "test", 0]]);
  assert.deepEqual(dataset.levelNames, { supercategory: ["Aves", "Insecta"] });
  assert.match(dataset.warnings.join("\n"), /iNat2017: 2 train images, the official release has 579,184/);
});

Deno.test("loadInat2017() names unknown categories, unannotated images and broken JSON", () => {
  assert.throws(
    () => loadInat2017(tree(undefined, coco([[20, VAL[0][1], 7]]))),
    /val2017\.json: image 20 has category_id 7, absent from the categories/,
  );
  const unannotated = JSON.parse(coco(VAL));
  unannotated.annotations = [];
  assert.throws(
    () => loadInat2017(tree(undefined, JSON.stringify(unannotated))),
    /val2017\.json: image 20 \(.*3\.jpg\) has no annotation/,
  );
  assert.throws(() => loadInat2017(tree("{")), /train2017\.json: not valid JSON/);
  assert.throws(
    () => loadInat2017(tree(JSON.stringify({ images: [] }))),
    /train2017\.json: has no "annotations" array/,
  );
});
