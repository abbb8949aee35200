import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { selectBackend } from "../../lib/backend.ts";
import {
  loadTimmModel,
  loadTimmParameters,
  randomTimmWeights,
  resolveTimmConfig,
  timmForward,
} from "../../lib/models/registry.ts";
import { readSafetensors, type TensorData, writeSafetensors } from "../../lib/models/safetensors.ts";
import { filterSwinCheckpoint, relativePositionIndex, shiftedWindowMask } from "../../lib/models/swin.ts";
import { assertClose, fixturePath } from "../_assert.ts";
import { backboneFixture, fixtureInputs, forEachBackend, readArray } from "./_fixtures.ts";

const swin = backboneFixture("swin");

Deno.test({
  name: "loadTimmModel() reproduces timm's float64 Swin fixture to 5e-5 on every backend",
  ignore: !swin,
}, async () => {
  const f = swin!;
  await forEachBackend(async (backend) => {
    const before = tf.memory().numTensors;
    const model = await loadTimmModel(f.config, f.weights);
    const images = fixtureInputs(f);
    const [pooled, logits] = [model.forwardFeatures(images), model.forward(images)!];
    assertClose(await pooled.data(), readArray(f.dir, "pooled_f64.bin"), {
      atol: 5e-5,
      what: `${backend} pooled`,
    });
    assertClose(await logits.data(), readArray(f.dir, "logits_f64.bin"), {
      atol: 5e-5,
      what: `${backend} logits`,
    });
    assert.equal(model.numFeatures, 48);
    tf.dispose([images, pooled, logits]);
    model.dispose();
    assert.equal(tf.memory().numTensors, before, `${backend}: tensors leaked`);
  });
});

Deno.test({ name: "relativePositionIndex(7) equals the fixture's timm buffer", ignore: !swin }, () => {
  assert.deepEqual(
    Array.from(relativePositionIndex(7)),
    Array.from(readArray(swin!.dir, "relative_position_index_7x7_i32.bin")),
  );
});

Deno.test("shiftedWindowMask() follows timm's slice construction", () => {
  // timm: img_mask regions by the slices (0, −w), (−w, −s), (−s, None) on each axis, then window_partition
  const r = 8, w = 4, s = 2;
  const bands = [[0, r - w], [r - w, r - s], [r - s, r]];
  const id = (y: number, x: number) =>
    bands.findIndex(([a, b]) => y >= a && y < b) * 3 + bands.findIndex(([a, b]) => x >= a && x < b);
  const mask = shiftedWindowMask(r, w, s), t = w * w, per = r / w;
  for (let n = 0; n < per * per; n++) {
    const wy = Math.floor(n / per) * w, wx = (n % per) * w;
    for (let i = 0; i < t; i++) {
      for (let j = 0; j < t; j++) {
        const same = id(wy + Math.floor(i / w), wx + (i % w)) === id(wy + Math.floor(j / w), wx + (j % w));
        assert.equal(mask[(n * t + i) * t + j], same ? 0 : -100, `window ${n} (${i}, ${j})`);
      }
    }
  }
  // only the last window row/column mixes regions
  assert.ok(mask.subarray(0, t * t).every((v) => v === 0), "the top-left window is one region");
});

/** The fixture's timm ≥ 0.9 tensors rewritten in the ≤ 0.8 layout, with the buffers old checkpoints carried. */
function oldLayout(tensors: Map<string, TensorData>): Map<string, TensorData> {
  const old = new Map<string, TensorData>();
  for (const [key, t] of tensors) {
    const renamed = key.replace(/^layers\.(\d+)\.downsample\./, (_, n) => `layers.${+n - 1}.downsample.`)
      .replace(/^head\.fc\./, "head.");
    old.set(renamed, t);
  }
  const index = relativePositionIndex(7);
  for (const block of ["layers.0.blocks.0", "layers.0.blocks.1", "layers.1.blocks.0", "layers.1.blocks.1"]) {
    old.set(`${block}.attn.relative_position_index`, {
      dtype: "I64",
      shape: [49, 49],
      values: BigInt64Array.from(index, (v) => BigInt(v)),
    });
  }
  old.set("layers.0.blocks.1.attn_mask", {
    dtype: "F32",
    shape: [4, 49, 49],
    values: shiftedWindowMask(14, 7, 3),
  });
  return old;
}

Deno.test({
  name: "loadTimmModel() reads timm ≤ 0.8 Swin checkpoints (downsample at stage end, head.weight, buffers)",
  ignore: !swin,
}, async () => {
  await selectBackend("wasm", { threads: 1, quiet: true });
  const f = swin!;
  const { tensors } = await readSafetensors(f.weights);
  const dir = await Deno.makeTempDir({ prefix: "carrot-swin-" });
  const path = join(dir, "old.safetensors");
  await writeSafetensors(path, oldLayout(tensors));
  const before = tf.memory().numTensors;
  const model = await loadTimmModel(f.config, path);
  assert.deepEqual(model.report.renamed.sort(), [
    ["head.bias", "head.fc.bias"],
    ["head.weight", "head.fc.weight"],
    ["layers.0.downsample.norm.bias", "layers.1.downsample.norm.bias"],
    ["layers.0.downsample.norm.weight", "layers.1.downsample.norm.weight"],
    ["layers.0.downsample.reduction.weight", "layers.1.downsample.reduction.weight"],
  ]);
  assert.equal(model.report.ignored.length, 5, "4 relative_position_index + 1 attn_mask");
  const images = fixtureInputs(f);
  const logits = model.forward(images)!;
  assertClose(await logits.data(), readArray(f.dir, "logits_f64.bin"), {
    atol: 5e-5,
    what: "old-layout logits",
  });
  tf.dispose([images, logits]);
  model.dispose();
  assert.equal(tf.memory().numTensors, before);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("filterSwinCheckpoint() leaves a timm ≥ 0.9 checkpoint unchanged apart from buffers", () => {
  const plan = filterSwinCheckpoint(
    new Map([
      ["layers.1.downsample.norm.weight", [96]],
      ["head.fc.weight", [10, 48]],
      ["layers.0.blocks.0.attn.relative_position_index", [49, 49]],
    ]),
  );
  assert.deepEqual([...plan.tensors.keys()], ["layers.1.downsample.norm.weight", "head.fc.weight"]);
  assert.deepEqual(plan.renamed, []);
  assert.deepEqual(plan.ignored, ["layers.0.blocks.0.attn.relative_position_index"]);
});

const padded = fixturePath("swin_padded");

Deno.test({
  name: "loadTimmModel() reproduces timm's window padding (10×10 and 5×5 maps, window 4) on every backend",
  ignore: !padded,
}, async () => {
  // tests/fixtures/swin_padded: float64 NumPy transcription of timm's SwinTransformerBlock._attn (roll, zero-pad
  // bottom/right to a multiple of the window, mask built on the padded map, crop, roll back), validated against
  // timm's own outputs on the unpadded fixture (make_swin_padded.py --check)
  const dir = padded!;
  const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
  const config = { architecture: "swin", ...manifest.timm_kwargs } as const;
  const weights = join(dir, "swin_padded.safetensors");
  const inputs = Float32Array.from(readArray(dir, "inputs_nhwc_f32.bin"));
  await forEachBackend(async (backend) => {
    const before = tf.memory().numTensors;
    const model = await loadTimmModel(config, weights);
    const images = tf.tensor4d(inputs, manifest.shapes["inputs_nhwc_f32.bin"]);
    const [pooled, logits] = [model.forwardFeatures(images), model.forward(images)!];
    assertClose(await pooled.data(), readArray(dir, "pooled_f64.bin"), {
      atol: 1e-5,
      what: `${backend} pooled`,
    });
    assertClose(await logits.data(), readArray(dir, "logits_f64.bin"), {
      atol: 1e-5,
      what: `${backend} logits`,
    });
    // the differentiable path pads too, and the gradient flows through the pad and the crop
    const params = await loadTimmParameters(config, weights);
    const key = "layers.1.blocks.1.attn.relative_position_bias_table";
    const [same, grad] = tf.tidy(() => {
      const loss = (table: tf.Tensor) =>
        tf.sum(timmForward(model.config, new Map([...params.tensors, [key, table]]), images).logits!);
      return [
        timmForward(model.config, params.tensors, images).logits!,
        tf.grad(loss)(params.tensors.get(key)!),
      ];
    });
    assertClose(await same.data(), await logits.data(), { atol: 1e-5, what: `${backend} timmForward` });
    const g = await grad.data();
    assert.ok(g.every(Number.isFinite) && g.some((v) => v !== 0), `${backend}: a finite, non-zero gradient`);
    tf.dispose([images, pooled, logits, same, grad, ...params.tensors.values()]);
    model.dispose();
    assert.equal(tf.memory().numTensors, before, `${backend}: tensors leaked`);
  });
});

Deno.test("Swin-T's layout at 256 px (maps 64, 32, 16, 8; window 7: all padded) runs with finite features", async () => {
  const config = {
    architecture: "swin",
    img_size: 256,
    embed_dim: 8,
    num_heads: [1, 2, 2, 4],
    num_classes: 0,
  } as const;
  const { config: resolved } = resolveTimmConfig(config as never);
  assert.equal(resolved.imgSize, 256, "img_size in snake_case");
  const before = tf.memory().numTensors;
  const model = await loadTimmModel(resolved, randomTimmWeights(resolved, 4));
  const images = tf.randomNormal([1, 256, 256, 3], 0, 1, "float32", 5) as tf.Tensor4D;
  const features = model.forwardFeatures(images);
  assert.deepEqual(features.shape, [1, 64]);
  assert.ok((await features.data()).every(Number.isFinite));
  tf.dispose([images, features]);
  model.dispose();
  assert.equal(tf.memory().numTensors, before);
});
