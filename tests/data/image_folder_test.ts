import assert from "node:assert/strict";
import { join } from "node:path";
import { loadImageFolder } from "../../lib/data/image_folder.ts";
import { makeTree, TINY_JPEG } from "./_trees.ts";

Deno.test("loadImageFolder() reads root/<split>/<class>/* with sorted classes and files", () => {
  const root = makeTree({
    "train/wren/b.jpg": TINY_JPEG,
    "train/wren/a.JPEG": TINY_JPEG,
    "train/robin/c.png": TINY_JPEG,
    "train/robin/notes.txt": "not an image",
    "valid/robin/d.jpg": TINY_JPEG,
    "test/sparrow/e.jpg": TINY_JPEG,
  });
  const dataset = loadImageFolder(root);
  assert.deepEqual(dataset.classNames, ["robin", "sparrow", "wren"]);
  assert.deepEqual(dataset.items.map((i) => [i.id, i.label, i.split]), [
    ["train/robin/c.png", 0, "train"],
    ["train/wren/a.JPEG", 2, "train"],
    ["train/wren/b.jpg", 2, "train"],
    ["valid/robin/d.jpg", 0, "val"],
    ["test/sparrow/e.jpg", 1, "test"],
  ]);
  assert.equal(dataset.items[0].path, join(root, "train/robin/c.png"));
  assert.deepEqual(dataset.warnings, ["ImageFolder: skipped 1 files that are not .jpg, .jpeg or .png"]);
});

Deno.test("loadImageFolder() explains a root without split folders or without images", () => {
  assert.throws(
    () => loadImageFolder(makeTree({ "robin/a.jpg": TINY_JPEG })),
    /has no train\/, val\/ or test\/ folder\. Expected root\/\{train,val,test\}\/<class>/,
  );
  assert.throws(
    () => loadImageFolder(makeTree({ "train/robin/readme.md": "x" })),
    /ImageFolder: no images under/,
  );
});
