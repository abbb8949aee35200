import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readImage, type RgbImage, selectImageDecoder } from "../../lib/data/images.ts";
import {
  cropImage,
  evalTransform,
  flipHorizontal,
  type Interpolation,
  normalizeImage,
  randomResizedCropBox,
  resizeImage,
  trainTransform,
} from "../../lib/data/transforms.ts";
import { Random } from "../../lib/random.ts";
import { fixturePath, maxAbsDiff } from "../_assert.ts";

const dir = fixturePath("images")!;
const reference = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8"));
const pre = {
  size: reference.size,
  cropPct: reference.cropPct,
  mean: reference.mean,
  std: reference.std,
  interpolation: "bicubic" as const,
};
const load = async (file: string) => readImage(join(dir, file), await selectImageDecoder("wasm"));
const f32 = (file: string) => new Float32Array(readFileSync(join(dir, file)).buffer.slice(0));

Deno.test("resizeImage() equals PIL's Image.resize byte for byte (bicubic and bilinear, down and up)", async () => {
  for (
    const entry of reference.resize as {
      image: string;
      width: number;
      height: number;
      interpolation: Interpolation;
      file: string;
    }[]
  ) {
    const out = resizeImage(await load(entry.image), entry.width, entry.height, entry.interpolation);
    const want = new Uint8Array(readFileSync(join(dir, entry.file)));
    assert.equal(
      maxAbsDiff(out.data, want),
      0,
      `${entry.image} → ${entry.width}×${entry.height} ${entry.interpolation}`,
    );
  }
});

Deno.test("evalTransform() matches timm's eval transform computed with PIL (max |Δ| = 0)", async () => {
  for (
    const [file, entry] of Object.entries(reference.eval) as [string, { file: string; shape: number[] }][]
  ) {
    const out = evalTransform(await load(file), pre);
    assert.equal(out.length, entry.shape.reduce((a, b) => a * b));
    assert.equal(maxAbsDiff(out, f32(entry.file)), 0, file);
  }
});

Deno.test("evalTransform() rejects a crop_pct outside (0, 1] with the default to use", async () => {
  const image = await load("gray.jpg");
  assert.throws(
    () => evalTransform(image, { ...pre, cropPct: 1.2 }),
    /cropPct must lie in \(0, 1\], got 1\.2.*0\.875/,
  );
});

const ramp: RgbImage = { width: 4, height: 2, data: Uint8Array.from({ length: 24 }, (_, i) => i * 10) };

Deno.test("cropImage(), flipHorizontal() and normalizeImage() move and scale pixels exactly", () => {
  assert.deepEqual(
    cropImage(ramp, { x: 1, y: 1, width: 2, height: 1 }).data,
    Uint8Array.from([150, 160, 170, 180, 190, 200]),
  );
  assert.throws(
    () => cropImage(ramp, { x: 3, y: 0, width: 2, height: 1 }),
    /not an integer box inside the 4×2 image/,
  );
  assert.deepEqual(flipHorizontal(flipHorizontal(ramp)).data, ramp.data);
  assert.deepEqual(Array.from(flipHorizontal(ramp).data.subarray(0, 3)), [90, 100, 110]);
  const out = normalizeImage(ramp, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]);
  assert.equal(out[0], -1);
  assert.equal(out[1], Math.fround((Math.fround(10 / 255) - 0.5) / 0.5));
});

Deno.test("resizeImage() keeps a constant image constant and returns the input when the size is unchanged", () => {
  const flat: RgbImage = { width: 7, height: 5, data: new Uint8Array(7 * 5 * 3).fill(200) };
  for (const [w, h] of [[3, 2], [13, 11]]) assert.ok(resizeImage(flat, w, h).data.every((v) => v === 200));
  assert.equal(resizeImage(flat, 7, 5), flat);
});

Deno.test("randomResizedCropBox() stays inside the image with timm's area and ratio ranges, seeded", () => {
  const random = new Random(3);
  for (let trial = 0; trial < 500; trial++) {
    const box = randomResizedCropBox(120, 90, random);
    assert.ok(
      box.x >= 0 && box.y >= 0 && box.x + box.width <= 120 && box.y + box.height <= 90,
      JSON.stringify(box),
    );
    const area = (box.width * box.height) / (120 * 90), ratio = box.width / box.height;
    assert.ok(area > 0.07 && area <= 1, `area ${area}`);
    assert.ok(ratio > 0.7 && ratio < 1.45, `ratio ${ratio}`);
  }
  // Impossible ranges fall back to the central crop with the ratio clamped, as torchvision does.
  assert.deepEqual(randomResizedCropBox(100, 10, new Random(0), { scale: [2, 3], ratio: [1, 2] }), {
    x: 40,
    y: 0,
    width: 20,
    height: 10,
  });
});

Deno.test("trainTransform() is deterministic per seed and flips about half the time", async () => {
  const image = await load("photo.jpg");
  const a = trainTransform(image, pre, new Random(7)), b = trainTransform(image, pre, new Random(7));
  assert.deepEqual(a, b);
  assert.equal(a.length, 64 * 64 * 3);
  const noCrop = { scale: [1, 1] as const, ratio: [4 / 3, 4 / 3] as const };
  const outputs = Array.from(
    { length: 40 },
    (_, seed) => trainTransform(image, pre, new Random(seed), noCrop),
  );
  const flipped = outputs.filter((out) => maxAbsDiff(out, outputs[0]) > 0).length;
  assert.ok(flipped > 8 && flipped < 32, `${flipped} of 40 differ from the first`);
});

Deno.test("resizeImage() with a window equals resizing then cropping, for every axis combination", async () => {
  const image = await load("photo.jpg"); // 120×90
  for (const [w, h] of [[53, 41], [120, 41], [53, 90], [200, 150]]) {
    const window = { x: 3, y: 5, width: Math.min(20, w - 3), height: Math.min(17, h - 5) };
    const full = resizeImage(image, w, h, "bicubic");
    assert.deepEqual(
      resizeImage(image, w, h, "bicubic", window).data,
      cropImage(full, window).data,
      `${w}×${h}`,
    );
  }
  assert.throws(
    () => resizeImage(image, 10, 10, "bicubic", { x: 5, y: 0, width: 6, height: 1 }),
    /not inside the 10×10 output/,
  );
});
