import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { join } from "node:path";
import { selectBackend } from "../../lib/backend.ts";
import { resampleAbsPosEmbed } from "../../lib/models/pos_embed.ts";
import { loadTimmModel } from "../../lib/models/registry.ts";
import { filterVitCheckpoint, resolveVitConfig } from "../../lib/models/vit.ts";
import { readSafetensors, type TensorData, writeSafetensors } from "../../lib/models/safetensors.ts";
import { assertClose, maxAbsDiff } from "../_assert.ts";
import { backboneFixture, fixtureInputs, forEachBackend, readArray } from "./_fixtures.ts";
import { bfloat16Value, float16Value, toBfloat16Bits, toFloat16Bits } from "./_half.ts";

const vit = backboneFixture("vit"), avgpool = backboneFixture("vit_avgpool");

async function outputs(model: Awaited<ReturnType<typeof loadTimmModel>>, images: tf.Tensor4D) {
  const [features, logits] = [model.forwardFeatures(images), model.forward(images)];
  const result = { features: await features.data(), logits: logits ? await logits.data() : undefined };
  tf.dispose([features, logits!]);
  return result;
}

Deno.test({
  name:
    "loadTimmModel() reproduces timm's float64 ViT fixtures vit/ and vit_avgpool/ to 1e-4 on every backend",
  ignore: !vit || !avgpool,
}, async () => {
  await forEachBackend(async (backend) => {
    for (const f of [vit!, avgpool!]) {
      const before = tf.memory().numTensors;
      const model = await loadTimmModel(f.config, f.weights);
      const images = fixtureInputs(f);
      const { features, logits } = await outputs(model, images);
      const what = `${backend} ${f.dir}`;
      assertClose(features, readArray(f.dir, `${f.pooled}_f64.bin`), {
        atol: 1e-4,
        what: `${what} pre-logits`,
      });
      assertClose(logits!, readArray(f.dir, "logits_f64.bin"), { atol: 1e-4, what: `${what} logits` });
      images.dispose();
      model.dispose();
      assert.equal(tf.memory().numTensors, before, `${what}: tensors leaked`);
    }
  });
});

Deno.test({
  name: "forwardFeatures() gives the same features when the batch is split and works inside tf.tidy",
  ignore: !vit,
}, async () => {
  await selectBackend("wasm", { threads: 1, quiet: true });
  const f = vit!;
  const whole = await loadTimmModel(f.config, f.weights);
  const split = await loadTimmModel(f.config, f.weights, { maxTensorBytes: 1 }); // one image per chunk
  const images = fixtureInputs(f);
  const before = tf.memory().numTensors;
  const [a, b] = tf.tidy(() => [whole.forwardFeatures(images), split.forwardFeatures(images)]);
  assert.equal(tf.memory().numTensors, before + 2, "tidy keeps only the returned features");
  // same arithmetic, other summation order: OpenBLAS' kernels tile a product by its row count (measured 1.1e-6 with
  // the Haswell kernel, 0 with SkylakeX); a chunking bug moves features by 1e-1
  assertClose(await b.data(), await a.data(), { atol: 1e-5, what: "split vs whole batch" });
  assert.equal(whole.weightsSha256, split.weightsSha256);
  tf.dispose([a, b, images]);
  whole.dispose();
  split.dispose();
  assert.throws(() => whole.forwardFeatures(images), /disposed/);
});

Deno.test(
  { name: "loadTimmModel() names the key and both shapes on a shape mismatch", ignore: !vit },
  async () => {
    const f = vit!;
    const { tensors } = await readSafetensors(f.weights);
    const qkv = tensors.get("blocks.1.attn.qkv.weight")!;
    tensors.set("blocks.1.attn.qkv.weight", { ...qkv, shape: [64, 192] });
    const before = tf.memory().numTensors;
    await assert.rejects(
      loadTimmModel(f.config, tensors),
      (e: Error) =>
        e instanceof RangeError &&
        e.message.startsWith(`Cannot load "blocks.1.attn.qkv.weight": expected [192, 64], got [64, 192]`),
    );
    await assert.rejects(
      loadTimmModel({ ...f.config, embedDim: 32 } as typeof f.config, f.weights),
      (e: Error) =>
        e.message.startsWith(`Cannot load "cls_token": expected [1, 1, 32], got [1, 1, 64] (${f.weights})`),
    );
    assert.equal(tf.memory().numTensors, before, "a failed load frees what it built");
  },
);

Deno.test({
  name:
    "loadTimmModel() lists missing and unexpected keys; strict: false ignores extras and drops a missing head",
  ignore: !vit,
}, async () => {
  const f = vit!;
  const { tensors } = await readSafetensors(f.weights);
  tensors.delete("head.weight");
  tensors.delete("head.bias");
  tensors.set("extra.buffer", { dtype: "F32", shape: [1], values: Float32Array.from([0]) });
  await assert.rejects(
    loadTimmModel(f.config, tensors),
    (e: Error) =>
      e instanceof TypeError &&
      e.message.includes("missing keys: head.weight, head.bias; unexpected keys: extra.buffer") &&
      e.message.includes("{ strict: false }"),
  );
  const model = await loadTimmModel(f.config, tensors, { strict: false });
  assert.equal(model.numClasses, 0);
  assert.deepEqual(model.report.unexpected, ["extra.buffer"]);
  const images = fixtureInputs(f);
  assert.equal(model.forward(images), null);
  const { features } = await outputs(model, images);
  assertClose(features, readArray(f.dir, "pre_logits_f64.bin"), { atol: 1e-4, what: "headless pre-logits" });
  tensors.delete("blocks.0.norm1.weight");
  await assert.rejects(
    loadTimmModel(f.config, tensors, { strict: false }),
    /missing keys: blocks\.0\.norm1\.weight, head\.weight, head\.bias\./,
  );
  images.dispose();
  model.dispose();
});

Deno.test({
  name: "loadTimmModel() resamples pos_embed to a new imgSize as timm does (bicubic, class token kept)",
  ignore: !vit,
}, async () => {
  const f = vit!;
  const before = tf.memory().numTensors;
  const resampled = await loadTimmModel(f.config, f.weights, { overrides: { imgSize: 48 } }); // grid 8 → 12
  assert.deepEqual(resampled.report.resampled, ["pos_embed"]);
  assert.deepEqual(resampled.preprocessing.inputSize, [3, 48, 48]);
  // the same model built from weights whose pos_embed was resampled by hand
  const { tensors } = await readSafetensors(f.weights);
  const pos = tensors.get("pos_embed")!;
  const values = resampleAbsPosEmbed(pos.values as Float32Array, {
    dim: 64,
    from: [8, 8],
    to: [12, 12],
    prefixTokens: 1,
  });
  tensors.set("pos_embed", { dtype: "F32", shape: [1, 145, 64], values });
  const manual = await loadTimmModel({ ...f.config, imgSize: 48 } as typeof f.config, tensors);
  assert.deepEqual(manual.report.resampled, []);
  const images = tf.randomUniform([2, 48, 48, 3], -2, 2, "float32", 1) as tf.Tensor4D;
  const a = await outputs(resampled, images), b = await outputs(manual, images);
  assert.equal(maxAbsDiff(a.logits!, b.logits!), 0);
  const small = fixtureInputs(f);
  assert.throws(
    () => resampled.forwardFeatures(small),
    /expected images \[B, 48, 48, 3\].*got \[5, 32, 32, 3\]/,
  );
  tf.dispose([images, small]);
  resampled.dispose();
  manual.dispose();
  assert.equal(tf.memory().numTensors, before);
});

Deno.test({
  name: "F16 and BF16 checkpoints load exactly as the float32 values they encode, close to the F32 model",
  ignore: !vit,
}, async () => {
  await selectBackend("wasm", { threads: 1, quiet: true });
  const f = vit!;
  const dir = await Deno.makeTempDir({ prefix: "carrot-vit-" });
  const { tensors } = await readSafetensors(f.weights);
  const images = fixtureInputs(f);
  const reference = readArray(f.dir, "logits_f64.bin");
  for (
    const [dtype, encode, decode, bound] of [
      ["F16", toFloat16Bits, float16Value, 0.01],
      ["BF16", toBfloat16Bits, bfloat16Value, 0.1],
    ] as const
  ) {
    const encoded = new Map<string, TensorData>(), rounded = new Map<string, TensorData>();
    for (const [name, t] of tensors) {
      const bits = Uint16Array.from(t.values as Float32Array, encode);
      encoded.set(name, { dtype, shape: t.shape, values: bits });
      rounded.set(name, { dtype: "F32", shape: t.shape, values: Float32Array.from(bits, decode) });
    }
    const path = join(dir, `${dtype}.safetensors`);
    await writeSafetensors(path, encoded);
    const fromFile = await loadTimmModel(f.config, path),
      fromRounded = await loadTimmModel(f.config, rounded);
    const a = await outputs(fromFile, images), b = await outputs(fromRounded, images);
    assert.equal(maxAbsDiff(a.logits!, b.logits!), 0, `${dtype}: file vs rounded F32`);
    const error = maxAbsDiff(a.logits!, reference);
    assert.ok(error > 1e-6 && error < bound, `${dtype}: |logits − F32 logits| = ${error}`);
    fromFile.dispose();
    fromRounded.dispose();
  }
  images.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("filterVitCheckpoint() drops pre_logits and mask_token and plans a pos_embed resample", () => {
  const config = resolveVitConfig({ imgSize: 32, patchSize: 4, embedDim: 64, depth: 1, numHeads: 4 });
  const plan = filterVitCheckpoint(
    new Map([
      ["cls_token", [1, 1, 64]],
      ["pos_embed", [1, 17, 64]],
      ["pre_logits.fc.weight", [64, 64]],
      ["mask_token", [1, 64]],
    ]),
    config,
  );
  assert.deepEqual(plan.ignored, ["pre_logits.fc.weight", "mask_token"]);
  assert.deepEqual(plan.resampled, ["pos_embed"]);
  assert.deepEqual([...plan.tensors.keys()], ["cls_token", "pos_embed"]);
  assert.deepEqual(plan.tensors.get("pos_embed")!.shape, [1, 65, 64], "4×4 grid → 8×8 grid, class slot kept");
  // a pos_embed whose width differs is left for the shape check to report
  const wrong = filterVitCheckpoint(new Map([["pos_embed", [1, 17, 32]]]), config);
  assert.deepEqual(wrong.resampled, []);
});
