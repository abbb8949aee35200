import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { selectBackend } from "../lib/backend.ts";
import { setLogSink } from "../lib/progress.ts";
import { extractFeatures, type ImageItem, type ImageSource } from "../lib/features.ts";
import type { Backbone } from "../lib/models/backbone.ts";
import {
  loadTimmModel,
  randomTimmWeights,
  resolveTimmConfig,
  type TimmConfigInput,
} from "../lib/models/registry.ts";
import { Random } from "../lib/random.ts";
import { assertClose } from "./_assert.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

const tiny: TimmConfigInput = {
  architecture: "vit",
  imgSize: 8,
  patchSize: 4,
  embedDim: 8,
  depth: 1,
  numHeads: 2,
  numClasses: 0,
};

function tinyModel(seed: number, options: Parameters<typeof loadTimmModel>[2] = {}): Promise<Backbone> {
  return loadTimmModel(tiny, randomTimmWeights(resolveTimmConfig(tiny).config, seed), options);
}

/** `count` images 8×8×3 N(0, 1) (as if normalised), labelled i mod 3 except every 4th; `order` permutes the ids. */
function images(count: number, order: (i: number) => number = (i) => i): ImageSource {
  async function* items(): AsyncIterable<ImageItem> {
    for (let k = 0; k < count; k++) {
      const i = order(k), rng = new Random(i);
      yield {
        id: `img-${i}`,
        image: Float32Array.from({ length: 8 * 8 * 3 }, () => rng.normal()),
        label: i % 4 === 3 ? undefined : i % 3,
      };
    }
  }
  return { dataset: "toy", split: "train", count, items: items() };
}

/** A model that counts the images it is asked to embed. */
function counting(model: Backbone): Backbone & { seen: () => number } {
  let seen = 0;
  return {
    ...model,
    forwardFeatures: (x: tf.Tensor4D) => {
      seen += x.shape[0];
      return model.forwardFeatures(x);
    },
    seen: () => seen,
  };
}

Deno.test("extractFeatures() resumes an interrupted run where it stopped and equals an uninterrupted run", async () => {
  const root = await Deno.makeTempDir({ prefix: "carrot-features-" });
  const model = await tinyModel(1);
  const options = { batchSize: 2, shardSize: 5 };
  const before = tf.memory().numTensors;

  const full = await extractFeatures(images(23), model, { ...options, cacheDir: join(root, "a") });
  const expected = await full.features.data();
  assert.equal(full.computed, 23);
  assert.deepEqual(full.features.shape, [23, 8]);
  assert.deepEqual(full.ids, Array.from({ length: 23 }, (_, i) => `img-${i}`));
  assert.deepEqual(Array.from(full.labels.subarray(0, 5)), [0, 1, 2, -1, 1]);
  assert.deepEqual(readdirSync(full.cachePath!).sort(), ["features.json", "features.safetensors"]);

  // interrupted after two shards (10 images): the exception propagates and the cache holds exactly those shards
  const cacheDir = join(root, "b");
  await assert.rejects(
    extractFeatures(images(23), model, {
      ...options,
      cacheDir,
      onProgress: (done) => {
        if (done === 10) throw new Error("interrupted");
      },
    }),
    /interrupted/,
  );
  const dir = join(cacheDir, `toy__train__custom__${model.weightsSha256.slice(0, 12)}`);
  const sidecar = JSON.parse(readFileSync(join(dir, "features.json"), "utf8"));
  assert.equal(sidecar.done, 10);
  assert.deepEqual(sidecar.shards, ["shard-00000.safetensors", "shard-00001.safetensors"]);
  // what a kill -9 in the middle of the third shard leaves behind: a temporary file and an unlisted shard
  writeFileSync(join(dir, ".shard-00002.safetensors.999.deadbeef.tmp"), "partial");
  writeFileSync(join(dir, "shard-00002.safetensors"), "garbage from a run killed before the sidecar update");

  const resumedModel = counting(model);
  const resumed = await extractFeatures(images(23), resumedModel, { ...options, cacheDir });
  assert.equal(resumed.computed, 13);
  assert.equal(resumedModel.seen(), 13, "the first two shards are not recomputed");
  assert.deepEqual(await resumed.features.data(), expected, "bit-identical to the uninterrupted run");
  assert.deepEqual(resumed.ids, full.ids);
  assert.deepEqual(resumed.labels, full.labels);
  assert.deepEqual(readdirSync(dir).sort(), ["features.json", "features.safetensors"]);

  // complete: served from the cache without reading a single image
  const untouched: ImageSource = {
    ...images(23),
    items: { [Symbol.asyncIterator]: () => assert.fail("a complete cache must not read the images") },
  };
  const cached = await extractFeatures(untouched, model, { ...options, cacheDir });
  assert.equal(cached.computed, 0);
  assert.deepEqual(await cached.features.data(), expected);

  tf.dispose([full.features, resumed.features, cached.features]);
  assert.equal(tf.memory().numTensors, before);
  model.dispose();
  await Deno.remove(root, { recursive: true });
});

Deno.test("extractFeatures() keeps a cache per weights; refuses one made with other preprocessing or image order", async () => {
  const cacheDir = await Deno.makeTempDir({ prefix: "carrot-features-" });
  const model = await tinyModel(1);
  const dir = join(cacheDir, `toy__train__custom__${model.weightsSha256.slice(0, 12)}`);
  await assert.rejects(
    extractFeatures(images(9), model, {
      cacheDir,
      shardSize: 4,
      onProgress: (done) => {
        if (done === 4) throw new Error("stop");
      },
    }),
    /stop/,
  );
  // other weights for the same model name (a retrained backbone): a cache folder of their own, computed afresh
  const other = await tinyModel(2);
  const fresh = await extractFeatures(images(9), other, { cacheDir });
  assert.equal(fresh.computed, 9);
  assert.equal(fresh.cachePath, join(cacheDir, `toy__train__custom__${other.weightsSha256.slice(0, 12)}`));
  assert.notEqual(other.weightsSha256.slice(0, 12), model.weightsSha256.slice(0, 12));
  assert.equal(
    JSON.parse(readFileSync(join(dir, "features.json"), "utf8")).done,
    4,
    "the first cache is untouched",
  );
  tf.dispose(fresh.features);
  const renormalised = await tinyModel(1, { preprocessing: { mean: [0.5, 0.5, 0.5] } });
  await assert.rejects(
    extractFeatures(images(9), renormalised, { cacheDir }),
    (e: Error) => {
      assert.ok(e instanceof RangeError);
      assert.match(
        e.message,
        /^Feature cache .*toy__train__custom__[0-9a-f]{12} was made with preprocessing=/,
      );
      assert.ok(e.message.includes(`Delete ${dir} to recompute, or pass another cacheDir`), e.message);
      return true;
    },
  );
  await assert.rejects(
    extractFeatures(images(9, (k) => 8 - k), model, { cacheDir }),
    /item 0 is "img-8" but the cache in .* has "img-0" there; the source order changed/,
  );
  const done = await extractFeatures(images(9), model, { cacheDir });
  assert.equal(done.computed, 5);
  tf.dispose(done.features);
  [model, other, renormalised].forEach((m) => m.dispose());
  await Deno.remove(cacheDir, { recursive: true });
});

Deno.test("extractFeatures() without a cache: batch size does not change features; bad inputs are named", async () => {
  const model = await tinyModel(3);
  const before = tf.memory().numTensors;
  const lines: string[] = [];
  const previousSink = setLogSink((line) => lines.push(line));
  const one = await extractFeatures(images(7), model, { batchSize: 1, progressBar: true });
  setLogSink(previousSink);
  assert.match(lines.at(-1)!, /^features toy\/train \[#+\] 7\/7 [\d.]+ img\/s in [\d.]+s$/);
  const seven = await extractFeatures(images(7), model, { batchSize: 7 });
  assert.equal(one.cachePath, undefined);
  assertClose(await one.features.data(), await seven.features.data(), { atol: 1e-6, what: "batch 1 vs 7" });
  // the features are the model's own forwardFeatures of the images, row by row
  const rng = new Random(0);
  const x = tf.tensor4d(Float32Array.from({ length: 192 }, () => rng.normal()), [1, 8, 8, 3]);
  const direct = model.forwardFeatures(x);
  assertClose(await direct.data(), (await one.features.data()).subarray(0, 8), { atol: 1e-6, what: "row 0" });
  tf.dispose([one.features, seven.features, x, direct]);
  assert.equal(tf.memory().numTensors, before);

  const wrongSize: ImageSource = {
    dataset: "toy",
    split: "test",
    count: 1,
    items: (async function* () {
      yield { id: "small.jpg", image: new Float32Array(10) };
    })(),
  };
  await assert.rejects(
    extractFeatures(wrongSize, model),
    /Image "small.jpg" has 10 values; custom takes 8×8×3 = 192/,
  );
  await assert.rejects(
    extractFeatures({ ...images(3), count: 4 }, model),
    /toy\/train: 3 images, but count says 4/,
  );
  assert.equal(tf.memory().numTensors, before, "failed runs free their tensors");
  model.dispose();
  assert.ok(!existsSync("toy__train__custom"));
});
