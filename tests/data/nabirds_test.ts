import assert from "node:assert/strict";
import { loadNabirds } from "../../lib/data/nabirds.ts";
import { lines, makeTree, TINY_JPEG } from "./_trees.ts";

const ids = [
  "0042f0d6-7d2e-4e95-8a5b-0f2e8f3f8c11",
  "00a3c8b7-1234-4d5e-9f00-aabbccddeeff",
  "01b2c3d4-5678-49ab-8cde-112233445566",
];
const file = (id: string, dir: string) => `${dir}/${id.replaceAll("-", "")}.jpg`;

Deno.test("loadNabirds() maps sparse class ids to 0..K−1 in sorted order and ignores hierarchy nodes", () => {
  const root = makeTree({
    "nabirds/images.txt": lines(
      `${ids[0]} ${file(ids[0], "0817")}`,
      `${ids[1]} ${file(ids[1], "0295")}`,
      `${ids[2]} ${file(ids[2], "1000")}`,
    ),
    "nabirds/train_test_split.txt": lines(`${ids[0]} 1`, `${ids[1]} 0`, `${ids[2]} 1`),
    "nabirds/image_class_labels.txt": lines(`${ids[0]} 817`, `${ids[1]} 295`, `${ids[2]} 1000`),
    "nabirds/classes.txt": lines(
      "0 Birds",
      "1 Perching Birds",
      "295 Forster's Tern",
      "817 Oak Titmouse",
      "1000 Cooper's Hawk (Adult)",
    ),
    "nabirds/hierarchy.txt": lines("1 0", "295 1", "817 1", "1000 1"),
    "nabirds/bounding_boxes.txt": lines(`${ids[0]} 83 59 128 228`, `${ids[1]} 1 2 3 4`, `${ids[2]} 5 6 7 8`),
    [`nabirds/images/${file(ids[0], "0817")}`]: TINY_JPEG,
    [`nabirds/images/${file(ids[1], "0295")}`]: TINY_JPEG,
    [`nabirds/images/${file(ids[2], "1000")}`]: TINY_JPEG,
  });
  const dataset = loadNabirds(root);
  assert.deepEqual(dataset.classNames, ["Forster's Tern", "Oak Titmouse", "Cooper's Hawk (Adult)"]);
  assert.deepEqual(dataset.items.map((i) => [i.id, i.label, i.split]), [[ids[0], 1, "train"], [
    ids[1],
    0,
    "test",
  ], [ids[2], 2, "train"]]);
  assert.deepEqual(dataset.items[0].bbox, { x: 83, y: 59, width: 128, height: 228 });
  assert.match(dataset.warnings.join("\n"), /NABirds: 2 train images, the official release has 23,929/);
  assert.throws(
    () => loadNabirds(root + "/nope"),
    /NABirds: the root folder .* does not exist\. Expected nabirds\/\{images\.txt/,
  );
});
