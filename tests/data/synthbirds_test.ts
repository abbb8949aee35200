import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadDataset } from "../../lib/data/dataset.ts";
import { readImage, selectImageDecoder } from "../../lib/data/images.ts";
import {
  materializeSynthBirds,
  synthBirdsClasses,
  synthBirdsConfig,
  synthBirdsContactSheet,
} from "../../lib/data/synthbirds.ts";
import { tempDir } from "./_trees.ts";

const SMALL = { numClasses: 8, perClass: { train: 20, val: 2, test: 4 }, seed: 5 };
const SMALL_PARTS = ["beakColour", "wingBars", "crown", "eyeRing"] as const;

Deno.test("materializeSynthBirds() writes an ImageFolder tree and a manifest with exact per-class corruption", () => {
  const root = join(tempDir(), "birds");
  const manifest = materializeSynthBirds({ root, ...SMALL });
  assert.equal(manifest.images.length, 8 * 26);
  for (let c = 0; c < 8; c++) {
    const train = manifest.images.filter((i) => i.split === "train" && i.trueLabel === c);
    assert.equal(train.length, 20);
    assert.equal(train.filter((i) => i.noisy).length, 4); // 20% of 20
    assert.equal(train.filter((i) => i.shortcut).length, 2); // 10% of 20, all clean
    assert.ok(train.every((i) => !(i.noisy && i.shortcut) && i.noisy === (i.label !== i.trueLabel)));
  }
  assert.ok(manifest.images.filter((i) => i.split !== "train").every((i) => !i.noisy && !i.shortcut));
  const flips = manifest.images.filter((i) => i.noisy);
  const siblings = flips.filter((i) =>
    manifest.classes[i.label].group === manifest.classes[i.trueLabel].group
  );
  assert.ok(
    siblings.length / flips.length > 0.6,
    `${siblings.length} of ${flips.length} flips stay in the group`,
  );
  const first = manifest.images[0];
  assert.match(first.id, new RegExp(`^train/${manifest.classes[first.label].name}/00000\\.png$`));

  const againRoot = join(tempDir(), "again");
  assert.deepEqual(materializeSynthBirds({ root: againRoot, ...SMALL }).images, manifest.images);
  for (const image of manifest.images.slice(0, 40)) {
    assert.deepEqual(readFileSync(join(againRoot, image.id)), readFileSync(join(root, image.id)), image.id);
  }
  const other = materializeSynthBirds({ root: join(tempDir(), "other"), ...SMALL, seed: 6 });
  assert.notDeepEqual(other.images.map((i) => i.noisy), manifest.images.map((i) => i.noisy));
  assert.throws(
    () => materializeSynthBirds({ root, ...SMALL }),
    /is not empty; materialise into a new folder/,
  );
});

Deno.test("loadDataset('synthbirds') materialises an absent root, then reloads it and checks the settings", () => {
  const root = join(tempDir(), "sb");
  const first = loadDataset("synthbirds", root, { synthBirds: SMALL });
  assert.match(first.warnings.join("\n"), /materialised 208 images/);
  const second = loadDataset("synthbirds", root, { synthBirds: SMALL });
  assert.deepEqual(second.warnings, []);
  assert.deepEqual(second.items, first.items);
  const noisy = second.items.filter((i) => i.truth?.noisy);
  assert.equal(noisy.length, 32);
  assert.ok(noisy.every((i) => i.truth!.label !== i.label));
  const plain = loadDataset("imagefolder", root); // the same tree as a plain ImageFolder: same observed labels
  assert.deepEqual(plain.items.map((i) => [i.id, i.label]), second.items.map((i) => [i.id, i.label]));
  assert.deepEqual(plain.classNames, second.classNames);
  assert.throws(
    () => loadDataset("synthbirds", root, { synthBirds: { ...SMALL, seed: 9 } }),
    /synthbirds\.json was generated with .*"seed":5.*not the requested .*"seed":9.*pass the same settings or use another \(empty\) root/,
  );
  const foreign = tempDir();
  writeFileSync(join(foreign, "x.txt"), "");
  assert.throws(() => loadDataset("synthbirds", foreign), /has files but no synthbirds\.json/);
});

Deno.test("synthBirdsClasses(): default siblings differ in one or two small parts, pretrain groups hold all 16 combinations; presets share no class", () => {
  // per class, how many of its group's other species differ in 1, 2, 3, 4 small parts
  const expected = { default: [1, 1, 2], pretrain: [1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 4] };
  for (const preset of ["default", "pretrain"] as const) {
    const classes = synthBirdsClasses(preset, synthBirdsConfig({ preset }).numClasses);
    for (const c of classes) {
      const group = classes.filter((o) => o !== c && o.group === c.group);
      assert.equal(group.length, expected[preset].length);
      for (const o of group) {
        assert.deepEqual([o.species.body, o.species.tail, o.species.beakShape], [
          c.species.body,
          c.species.tail,
          c.species.beakShape,
        ]);
      }
      const differences = group.map((o) => SMALL_PARTS.filter((p) => o.species[p] !== c.species[p]).length)
        .sort();
      assert.deepEqual(differences, expected[preset], c.name);
    }
  }
  const main = synthBirdsClasses("default", 20), pretrain = synthBirdsClasses("pretrain", 128);
  assert.equal(new Set(main.map((c) => c.name)).size, 20);
  const coarse = (c: (typeof main)[number]) => JSON.stringify(c.species.body);
  assert.ok(
    !pretrain.some((p) => main.some((m) => coarse(m) === coarse(p))),
    "a pretrain class shares a body colour",
  );
  assert.deepEqual(synthBirdsConfig({ preset: "pretrain" }).labelNoise, 0);
  assert.throws(
    () => synthBirdsConfig({ numClasses: 40 }),
    /numClasses must be an integer in 2\.\.32, got 40/,
  );
  assert.throws(() => synthBirdsConfig({ labelNoise: 0.8, shortcutFraction: 0.4 }), /sum ≤ 1/);
});

Deno.test("SynthBirds PNGs decode with both decoders; renders of one class differ (nuisance)", async () => {
  const root = join(tempDir(), "png");
  const manifest = materializeSynthBirds({
    root,
    numClasses: 4,
    perClass: { train: 3, val: 0, test: 0 },
    labelNoise: 0,
    shortcutFraction: 0,
  });
  const [a, b] = manifest.images.filter((i) => i.trueLabel === 0).map((i) => join(root, i.id));
  for (const name of ["sharp", "wasm"] as const) {
    const decoder = await selectImageDecoder(name);
    const [ia, ib] = [await readImage(a, decoder), await readImage(b, decoder)];
    assert.deepEqual([ia.width, ia.height], [64, 64]);
    const changed = ia.data.filter((v, i) => Math.abs(v - ib.data[i]) > 30).length;
    assert.ok(changed > 0.3 * ia.data.length, `only ${changed} bytes differ much`);
  }
  const sheet = synthBirdsContactSheet();
  assert.deepEqual([sheet.width, sheet.height], [8 * 66 + 2, 5 * 66 + 2]);
});
