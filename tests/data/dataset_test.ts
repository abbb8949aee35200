import assert from "node:assert/strict";
import { type Dataset, DATASET_NAMES, loadDataset, splitValidation } from "../../lib/data/dataset.ts";
import { makeTree, TINY_JPEG } from "./_trees.ts";

const toy: Dataset = {
  name: "imagefolder",
  root: "/toy",
  classNames: ["a", "b", "c"],
  items: Array.from({ length: 60 }, (_, i) => ({
    id: String(i),
    path: `/toy/${i}.jpg`,
    label: i % 3,
    split: i < 45 ? "train" as const : "test" as const,
  })),
  warnings: [],
  metric: "accuracy",
};

Deno.test("splitValidation() moves a stratified, seeded share of train to val and keeps item order", () => {
  const split = splitValidation(toy, { fraction: 0.2, seed: 1 });
  assert.deepEqual(split.items.map((i) => i.id), toy.items.map((i) => i.id));
  for (let c = 0; c < 3; c++) {
    assert.equal(split.items.filter((i) => i.label === c && i.split === "val").length, 3); // 0.2 × 15
  }
  assert.equal(split.items.filter((i) => i.split === "test").length, 15);
  assert.deepEqual(splitValidation(toy, { fraction: 0.2, seed: 1 }), split);
  assert.notDeepEqual(splitValidation(toy, { fraction: 0.2, seed: 2 }).items, split.items);
  const perClass = splitValidation(toy, { perClass: 20, seed: 0 }); // capped so one train item per class remains
  for (let c = 0; c < 3; c++) {
    assert.equal(perClass.items.filter((i) => i.label === c && i.split === "train").length, 1);
  }
});

Deno.test("splitValidation() refuses an existing val split and bad sizes", () => {
  const withVal = splitValidation(toy, { perClass: 2, seed: 0 });
  assert.throws(
    () => splitValidation(withVal, { perClass: 2, seed: 0 }),
    /already has 6 val items; use them, or reload with mergeVal: true/,
  );
  assert.throws(
    () => splitValidation(toy, { fraction: 1.5, seed: 0 }),
    /fraction must lie in \(0, 1\), got 1\.5/,
  );
  assert.throws(
    () => splitValidation(toy, { perClass: 0, seed: 0 }),
    /perClass must be an integer ≥ 1, got 0/,
  );
});

Deno.test("loadDataset() dispatches by name and rejects unknown names", () => {
  const root = makeTree({ "train/x/a.jpg": TINY_JPEG, "test/y/b.jpg": TINY_JPEG });
  assert.equal(loadDataset("imagefolder", root).items.length, 2);
  assert.ok(DATASET_NAMES.includes("synthbirds"));
  assert.throws(
    () => loadDataset("imagenet" as never, root),
    /unknown dataset "imagenet"; use one of cub, cars/,
  );
  assert.throws(() => loadDataset("cub", root), /CUB-200-2011: required file images\.txt is missing/);
});
