import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { loadCub } from "../../lib/data/cub.ts";
import { DatasetError } from "../../lib/data/dataset.ts";
import { evalTransform } from "../../lib/data/transforms.ts";
import { readImageBatch, selectImageDecoder } from "../../lib/data/images.ts";
import { lines, makeTree, TINY_JPEG } from "./_trees.ts";

const FILES = {
  "CUB_200_2011/images.txt": lines(
    "1 001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg",
    "2 001.Black_footed_Albatross/Black_Footed_Albatross_0002_55.jpg",
    "3 002.Laysan_Albatross/Laysan_Albatross_0001_545.jpg",
    "4 003.Sooty_Albatross/Sooty_Albatross_0001_1071.jpg",
  ),
  "CUB_200_2011/train_test_split.txt": lines("1 1", "2 0", "3 1", "4 0"),
  "CUB_200_2011/image_class_labels.txt": lines("1 1", "2 1", "3 2", "4 3"),
  "CUB_200_2011/classes.txt": lines(
    "1 001.Black_footed_Albatross",
    "2 002.Laysan_Albatross",
    "3 003.Sooty_Albatross",
  ),
  "CUB_200_2011/bounding_boxes.txt": lines(
    "1 60.0 27.0 325.0 304.0",
    "2 1.0 2.0 3.0 4.0",
    "3 5 6 7 8",
    "4 0 0 10 10",
  ),
  "CUB_200_2011/images/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg": TINY_JPEG,
  "CUB_200_2011/images/001.Black_footed_Albatross/Black_Footed_Albatross_0002_55.jpg": TINY_JPEG,
  "CUB_200_2011/images/002.Laysan_Albatross/Laysan_Albatross_0001_545.jpg": TINY_JPEG,
  "CUB_200_2011/images/003.Sooty_Albatross/Sooty_Albatross_0001_1071.jpg": TINY_JPEG,
};

Deno.test("loadCub() reads the official files: labels 0-based, split, boxes, count warnings", async () => {
  const root = makeTree(FILES);
  for (const given of [root, join(root, "CUB_200_2011")]) { // the archive's folder or its parent
    const dataset = loadCub(given);
    assert.equal(dataset.name, "cub");
    assert.deepEqual(dataset.classNames, [
      "001.Black_footed_Albatross",
      "002.Laysan_Albatross",
      "003.Sooty_Albatross",
    ]);
    assert.deepEqual(dataset.items.map((i) => [i.id, i.label, i.split]), [
      ["1", 0, "train"],
      ["2", 0, "test"],
      ["3", 1, "train"],
      ["4", 2, "test"],
    ]);
    assert.deepEqual(dataset.items[0].bbox, { x: 60, y: 27, width: 325, height: 304 });
    assert.equal(
      dataset.items[3].path,
      join(root, "CUB_200_2011/images/003.Sooty_Albatross/Sooty_Albatross_0001_1071.jpg"),
    );
    assert.match(dataset.warnings.join("\n"), /2 train images, the official release has 5,994/);
    assert.match(dataset.warnings.join("\n"), /3 classes, the official release has 200/);
  }
  const decoder = await selectImageDecoder();
  const pre = {
    size: 16,
    cropPct: 0.875,
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
    interpolation: "bicubic",
  } as const;
  const batch = await readImageBatch(loadCub(root).items.map((i) => i.path), {
    decoder,
    transform: (x) => evalTransform(x, pre),
  });
  assert.equal(batch.pixels.length, 4 * 16 * 16 * 3);
});

Deno.test("loadCub() names the missing root, file and image, and the expected layout", () => {
  assert.throws(
    () => loadCub("/nonexistent/cub"),
    /CUB-200-2011: the root folder \/nonexistent\/cub does not exist\. Expected CUB_200_2011\/\{images\.txt/,
  );
  const noClasses = makeTree({ ...FILES, "CUB_200_2011/classes.txt": "" });
  rmSync(join(noClasses, "CUB_200_2011/classes.txt"));
  assert.throws(
    () => loadCub(noClasses),
    (e) =>
      e instanceof DatasetError &&
      /required file classes\.txt is missing under .*CUB_200_2011\. Expected/.test(e.message),
  );
  const noImage = makeTree(FILES);
  rmSync(join(noImage, "CUB_200_2011/images/002.Laysan_Albatross/Laysan_Albatross_0001_545.jpg"));
  assert.throws(
    () => loadCub(noImage),
    /1 of 4 images listed in images\.txt are missing, e\.g\. .*Laysan_Albatross_0001_545\.jpg/,
  );
  assert.equal(loadCub(noImage, { checkImages: false }).items.length, 4);
});

Deno.test("loadCub() rejects duplicate ids, unknown class ids and bad split flags with file and line", () => {
  const duplicate = makeTree({
    ...FILES,
    "CUB_200_2011/train_test_split.txt": lines("1 1", "2 0", "3 1", "2 1", "4 0"),
  });
  assert.throws(() => loadCub(duplicate), /train_test_split\.txt:4: duplicate id 2 \(first on line 2\)/);
  const unknown = makeTree({
    ...FILES,
    "CUB_200_2011/image_class_labels.txt": lines("1 1", "2 1", "3 9", "4 3"),
  });
  assert.throws(() => loadCub(unknown), /image 3 has class id 9, which classes\.txt does not list/);
  const flag = makeTree({ ...FILES, "CUB_200_2011/train_test_split.txt": lines("1 1", "2 2", "3 1", "4 0") });
  assert.throws(() => loadCub(flag), /image 2 has is_training_image 2, expected 0 or 1/);
  const missingLine = makeTree({
    ...FILES,
    "CUB_200_2011/image_class_labels.txt": lines("1 1", "2 1", "4 3"),
  });
  assert.throws(
    () => loadCub(missingLine),
    /image id 3 of images\.txt has no line in .*image_class_labels\.txt/,
  );
});
