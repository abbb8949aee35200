import assert from "node:assert/strict";
import { join } from "node:path";
import { loadAircraft } from "../../lib/data/aircraft.ts";
import { readImage, selectImageDecoder } from "../../lib/data/images.ts";
import { lines, makeTree, TINY_JPEG } from "./_trees.ts";

const D = "fgvc-aircraft-2013b/data";
const FILES = {
  [`${D}/variants.txt`]: lines("707-320", "F/A-18", "Cessna 172"),
  [`${D}/families.txt`]: lines("Boeing 707", "F/A-18", "Cessna 172"),
  [`${D}/manufacturers.txt`]: lines("Boeing", "McDonnell Douglas", "Cessna"),
  [`${D}/images_variant_train.txt`]: lines("0034309 707-320", "1514522 F/A-18"),
  [`${D}/images_variant_val.txt`]: lines("0062765 Cessna 172"),
  [`${D}/images_variant_test.txt`]: lines("1025794 F/A-18", "0056978 707-320"),
  [`${D}/images_family_train.txt`]: lines("0034309 Boeing 707", "1514522 F/A-18"),
  [`${D}/images_family_val.txt`]: lines("0062765 Cessna 172"),
  [`${D}/images_family_test.txt`]: lines("1025794 F/A-18", "0056978 Boeing 707"),
  [`${D}/images_manufacturer_train.txt`]: lines("0034309 Boeing", "1514522 McDonnell Douglas"),
  [`${D}/images_manufacturer_val.txt`]: lines("0062765 Cessna"),
  [`${D}/images_manufacturer_test.txt`]: lines("1025794 McDonnell Douglas", "0056978 Boeing"),
  [`${D}/images_box.txt`]: lines(
    "0034309 83 155 1067 431",
    "1514522 1 1 10 10",
    "0062765 1 1 10 10",
    "1025794 1 1 5 5",
    "0056978 2 2 3 3",
  ),
  ...Object.fromEntries(
    ["0034309", "1514522", "0062765", "1025794", "0056978"].map((id) => [`${D}/images/${id}.jpg`, TINY_JPEG]),
  ),
};

Deno.test("loadAircraft() splits label lines on the first space and reads three levels, banner and metric", async () => {
  const root = makeTree(FILES);
  const dataset = loadAircraft(root);
  assert.deepEqual(dataset.classNames, ["707-320", "F/A-18", "Cessna 172"]);
  assert.deepEqual(dataset.items.map((i) => [i.id, i.label, i.split]), [
    ["0034309", 0, "train"],
    ["1514522", 1, "train"],
    ["0062765", 2, "val"],
    ["1025794", 1, "test"],
    ["0056978", 0, "test"],
  ]);
  assert.deepEqual(dataset.items[1].levels, { family: 1, manufacturer: 1 });
  assert.deepEqual(dataset.levelNames?.manufacturer, ["Boeing", "McDonnell Douglas", "Cessna"]);
  assert.deepEqual(dataset.items[0].bbox, { x: 82, y: 154, width: 985, height: 277 });
  assert.equal(dataset.bannerHeight, 20);
  assert.equal(dataset.metric, "mean-per-class-accuracy");
  assert.match(dataset.warnings.join("\n"), /FGVC-Aircraft: 1 val images, the official release has 3,333/);
  const image = await readImage(dataset.items[0].path, await selectImageDecoder(), {
    bannerHeight: dataset.bannerHeight,
  });
  assert.equal(image.height, 36 - 20);
  assert.equal(loadAircraft(join(root, D)).items.length, 5); // the data/ folder itself works too
});

Deno.test("loadAircraft({ mergeVal }) folds val into train (trainval)", () => {
  const dataset = loadAircraft(makeTree(FILES), { mergeVal: true });
  assert.deepEqual(dataset.items.map((i) => i.split), ["train", "train", "train", "test", "test"]);
  assert.match(dataset.warnings.join("\n"), /3 train images, the official release has 6,667/);
});

Deno.test("loadAircraft() names unknown variants, duplicate ids and the missing split file", () => {
  const unknown = makeTree({
    ...FILES,
    [`${D}/images_variant_test.txt`]: lines("1025794 F/A-18", "0056978 747-400"),
  });
  assert.throws(
    () => loadAircraft(unknown),
    /images_variant_test\.txt:2: variant "747-400" is not in variants list \(3 names\)/,
  );
  const duplicate = makeTree({
    ...FILES,
    [`${D}/images_variant_test.txt`]: lines("1025794 F/A-18", "0034309 707-320"),
  });
  assert.throws(() => loadAircraft(duplicate), /duplicate image id 0034309/);
  const noVal = makeTree(
    Object.fromEntries(Object.entries(FILES).filter(([path]) => !path.endsWith("variant_val.txt"))),
  );
  assert.throws(
    () => loadAircraft(noVal),
    /FGVC-Aircraft: required file images_variant_val\.txt is missing under .*Expected fgvc-aircraft-2013b\/data\//,
  );
});
