import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ImageDecodeError, readImage, readImageBatch, selectImageDecoder } from "../../lib/data/images.ts";
import { evalTransform, type TransformConfig } from "../../lib/data/transforms.ts";
import { fixturePath } from "../_assert.ts";

const dir = fixturePath("images")!;
const reference = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8"));
const pre: TransformConfig = {
  size: reference.size,
  cropPct: reference.cropPct,
  mean: reference.mean,
  std: reference.std,
  interpolation: "bicubic",
};

// Deno's streaming WASM compilation can abort the whole test runner (a V8 "Check failed" panic), so the codecs
// must compile from bytes: every streaming call made in this file is recorded, before any decoder loads.
const streamingCalls: string[] = [];
for (const name of ["instantiateStreaming", "compileStreaming"] as const) {
  const original = WebAssembly[name] as (...args: unknown[]) => unknown;
  Object.assign(WebAssembly, {
    [name]: (...args: unknown[]) => (streamingCalls.push(name), original.apply(WebAssembly, args)),
  });
}

Deno.test("the WASM codecs compile from bytes, never through WebAssembly streaming", async () => {
  const decoder = await selectImageDecoder("wasm");
  assert.equal((await readImage(join(dir, "gray.jpg"), decoder)).width, 48);
  assert.equal((await readImage(join(dir, "alpha.png"), decoder)).width, 90);
  assert.deepEqual(streamingCalls, []);
});

for (const name of ["sharp", "wasm"] as const) {
  Deno.test(`${name} decoder gives PIL's RGB pixels for baseline, progressive, grayscale and CMYK JPEGs`, async () => {
    const decoder = await selectImageDecoder(name);
    assert.equal(decoder.name, name);
    for (
      const [file, entry] of Object.entries(reference.decoded) as [
        string,
        { file: string; shape: number[] },
      ][]
    ) {
      if (file === "cmyk.jpg" && name === "wasm") {
        await assert.rejects(
          readImage(join(dir, file), decoder),
          (e) => e instanceof ImageDecodeError && /cmyk\.jpg: .*CMYK JPEG.*sharp decoder/.test(e.message),
        );
        continue;
      }
      const image = await readImage(join(dir, file), decoder);
      assert.deepEqual([image.height, image.width, 3], entry.shape, file);
      assert.deepEqual(
        image.data,
        new Uint8Array(readFileSync(join(dir, entry.file))),
        `${file}: pixels differ from PIL`,
      );
    }
  });

  Deno.test(`${name} decoder drops a PNG's alpha (not composited), as PIL's convert("RGB")`, async () => {
    const decoder = await selectImageDecoder(name);
    const image = await readImage(join(dir, "alpha.png"), decoder);
    assert.equal(image.width, 90);
    assert.equal(image.height, 120);
    // timm's eval transform on it equals PIL's exactly (also checks the alpha channel is discarded).
    const want = new Float32Array(readFileSync(join(dir, "alpha.png.eval.f32")).buffer.slice(0));
    assert.deepEqual(evalTransform(image, pre), want);
  });
}

Deno.test("selectImageDecoder('auto') picks sharp here and says why", async () => {
  const decoder = await selectImageDecoder();
  assert.equal(decoder.name, "sharp");
  assert.match(decoder.reason, /native libvips/);
});

Deno.test("readImage() crops a bottom banner and names the file when it cannot", async () => {
  const decoder = await selectImageDecoder("wasm");
  const image = await readImage(join(dir, "gray.jpg"), decoder, { bannerHeight: 20 });
  assert.deepEqual([image.width, image.height], [48, 16]);
  const full = await readImage(join(dir, "gray.jpg"), decoder);
  assert.deepEqual(image.data, full.data.subarray(0, 48 * 16 * 3));
  await assert.rejects(
    readImage(join(dir, "gray.jpg"), decoder, { bannerHeight: 36 }),
    /gray\.jpg: is 36 pixels high/,
  );
});

Deno.test("readImageBatch() fails on the first bad image by default and skips it with skipBadImages", async () => {
  const root = await Deno.makeTempDir({ prefix: "carrot_images_" });
  const bad = join(root, "broken.jpg"), missing = join(root, "missing.jpg");
  writeFileSync(bad, new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]));
  const paths = [join(dir, "photo.jpg"), bad, join(dir, "alpha.png"), missing];
  for (const decoderName of ["sharp", "wasm"] as const) {
    const decoder = await selectImageDecoder(decoderName);
    const transform = (image: Parameters<typeof evalTransform>[0]) => evalTransform(image, pre);
    await assert.rejects(
      readImageBatch(paths, { decoder, transform, concurrency: 1 }),
      (e) =>
        e instanceof ImageDecodeError && e.path === bad &&
        e.message.includes(`cannot decode with ${decoderName}`),
    );
    const batch = await readImageBatch(paths, { decoder, transform, skipBadImages: true });
    assert.deepEqual(batch.loaded, [0, 2]);
    assert.equal(batch.pixels.length, 2 * 64 * 64 * 3);
    assert.deepEqual(batch.skipped.map((s) => s.path), [bad, missing].sort());
    assert.match(batch.skipped.find((s) => s.path === missing)!.reason, /cannot read the file/);
    if (decoderName === "wasm") { // libjpeg's own words reach the error, not the console
      assert.match(
        batch.skipped.find((s) => s.path === bad)!.reason,
        /JPEG datastream contains no image \(libjpeg\)/,
      );
    }
    assert.match(batch.warnings[0], /^skipped 2 unreadable images: .*broken\.jpg/);
    const photo = new Float32Array(readFileSync(join(dir, "photo.jpg.eval.f32")).buffer.slice(0));
    assert.deepEqual(batch.pixels.subarray(0, photo.length), photo);
  }
  await Deno.remove(root, { recursive: true });
});

Deno.test("the wasm decoder keeps libjpeg's message with its own image when decodes run concurrently", async () => {
  const decoder = await selectImageDecoder("wasm");
  const good = readFileSync(join(dir, "photo.jpg"));
  const broken = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]);
  const inputs = Array.from({ length: 16 }, (_, i) => (i % 2 ? broken : good));
  // All decodes start in one tick, so their starts and failures interleave.
  const results = await Promise.allSettled(inputs.map((bytes) => decoder.decode(bytes)));
  results.forEach((result, i) => {
    if (i % 2 === 0) assert.equal(result.status, "fulfilled");
    else {
      assert.equal(result.status, "rejected");
      assert.match(
        (result as PromiseRejectedResult).reason.message,
        /^(Premature end of JPEG file; )?JPEG datastream contains no image \(libjpeg\)$/,
      );
    }
  });
});
