import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { selectBackend } from "../../lib/backend.ts";
import {
  loadTimmModel,
  loadTimmParameters,
  randomTimmWeights,
  resolveTimmConfig,
  TIMM_MODELS,
  type TimmConfigInput,
  timmForward,
  timmParameterShapes,
} from "../../lib/models/registry.ts";
import type { SwinConfig } from "../../lib/models/swin.ts";
import type { VitConfig } from "../../lib/models/vit.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

const count = (shapes: Map<string, number[]>) =>
  [...shapes.values()].reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);

Deno.test("timmParameterShapes() lists timm's keys and shapes for the registered models (FORMATS.md §2)", () => {
  const vitB = timmParameterShapes(TIMM_MODELS.vit_base_patch16_224.config);
  assert.equal(vitB.size, 152);
  assert.deepEqual(vitB.get("pos_embed"), [1, 197, 768]);
  assert.deepEqual(vitB.get("patch_embed.proj.weight"), [768, 3, 16, 16]);
  assert.deepEqual(vitB.get("blocks.11.attn.qkv.weight"), [2304, 768]);
  assert.deepEqual(vitB.get("blocks.0.mlp.fc1.weight"), [3072, 768]);
  assert.deepEqual(vitB.get("head.weight"), [1000, 768]);
  assert.ok(!vitB.has("fc_norm.weight"), "fc_norm is Identity for global_pool='token'");

  const swinB = timmParameterShapes(TIMM_MODELS.swin_base_patch4_window7_224.config);
  assert.equal(swinB.size, 329);
  assert.deepEqual(swinB.get("patch_embed.proj.weight"), [128, 3, 4, 4]);
  assert.deepEqual(swinB.get("layers.2.blocks.17.attn.relative_position_bias_table"), [169, 16]);
  assert.deepEqual(swinB.get("layers.1.downsample.norm.weight"), [512]);
  assert.deepEqual(swinB.get("layers.3.downsample.reduction.weight"), [1024, 2048]);
  assert.ok(
    !swinB.has("layers.0.downsample.norm.weight") && !swinB.has("layers.3.downsample.reduction.bias"),
  );
  assert.deepEqual(swinB.get("head.fc.weight"), [1000, 1024]);
  assert.deepEqual(
    timmParameterShapes(TIMM_MODELS.swin_base_patch4_window12_384.config).get(
      "layers.0.blocks.0.attn.relative_position_bias_table",
    ),
    [529, 4],
  );

  const dino = timmParameterShapes(TIMM_MODELS.vit_small_patch14_dinov2.config);
  assert.deepEqual(dino.get("pos_embed"), [1, 1370, 384]);
  assert.deepEqual(dino.get("blocks.11.ls2.gamma"), [384]);
  assert.ok(!dino.has("head.weight"));

  // parameter counts published for the same architectures by torchvision (vit_b_16, vit_b_32, vit_l_16, swin_t/s/b)
  const published: [string, number][] = [
    ["vit_base_patch16_224", 86_567_656],
    ["vit_base_patch32_224", 88_224_232],
    ["vit_large_patch16_224", 304_326_632],
    ["swin_tiny_patch4_window7_224", 28_288_354],
    ["swin_small_patch4_window7_224", 49_606_258],
    ["swin_base_patch4_window7_224", 87_768_224],
  ];
  for (const [name, params] of published) {
    assert.equal(count(timmParameterShapes(TIMM_MODELS[name].config)), params, name);
  }
});

/** The registered config shrunk to a few thousand parameters, same structure (patch size, stages, layer scale, head). */
function scaledDown(config: VitConfig | SwinConfig): Record<string, unknown> {
  const numClasses = config.numClasses ? 7 : 0;
  return config.architecture === "vit"
    ? { embedDim: 16, numHeads: 2, depth: 2, imgSize: 3 * config.patchSize, numClasses }
    : {
      embedDim: 8,
      depths: config.depths.map((d) => Math.min(d, 2)),
      numHeads: config.numHeads.map((_, s) => Math.min(2 ** s, 4)),
      numClasses,
    };
}

for (const [name, entry] of Object.entries(TIMM_MODELS)) {
  Deno.test(`registered ${name}: a scaled-down random-weight forward has the right shapes and no NaN`, async () => {
    const overrides = scaledDown(entry.config);
    const { config } = resolveTimmConfig(name, { overrides });
    const before = tf.memory().numTensors;
    const model = await loadTimmModel(name, randomTimmWeights(config, 1), { overrides });
    assert.equal(model.name, name);
    assert.deepEqual(model.preprocessing, {
      ...entry.preprocessing,
      inputSize: [3, config.imgSize, config.imgSize],
    });
    const images = tf.randomNormal([2, config.imgSize, config.imgSize, 3], 0, 1, "float32", 2) as tf.Tensor4D;
    const features = model.forwardFeatures(images), logits = model.forward(images);
    assert.deepEqual(features.shape, [2, model.numFeatures]);
    assert.ok((await features.data()).every(Number.isFinite), "features are finite");
    if (config.numClasses) {
      assert.deepEqual(logits!.shape, [2, 7]);
      assert.ok((await logits!.data()).every(Number.isFinite), "logits are finite");
    } else {
      assert.equal(logits, null);
    }
    tf.dispose([images, features, logits!]);
    model.dispose();
    assert.equal(tf.memory().numTensors, before);
  });
}

Deno.test("resolveTimmConfig() refuses unknown names, unknown fields and impossible geometry", () => {
  assert.throws(
    () => resolveTimmConfig("vit_huge_patch99"),
    /Unknown model "vit_huge_patch99"; registered: vit_tiny_patch16_224/,
  );
  assert.throws(
    () => resolveTimmConfig({ architecture: "vit", embed_dim: 64 } as never),
    (e: Error) =>
      e instanceof TypeError && /unknown field "embed_dim"; known fields .*embedDim/.test(e.message),
  );
  assert.throws(
    () => resolveTimmConfig({ architecture: "vit", depth: 2.5 }),
    /field "depth" = 2.5 has the wrong type/,
  );
  assert.throws(
    () => resolveTimmConfig({ architecture: "vit", imgSize: 30, patchSize: 4 }),
    /imgSize 30 is not a multiple of patchSize 4/,
  );
  assert.throws(
    () => resolveTimmConfig({ architecture: "vit", classToken: false }),
    /globalPool "token" needs classToken: true/,
  );
  assert.throws(
    () => resolveTimmConfig({ architecture: "swin", imgSize: 320 }),
    /stage 0: a 80×80 map is not a multiple of windowSize 7 \(timm would pad; unsupported here\)/,
  );
  assert.throws(() => resolveTimmConfig({ architecture: "cnn" } as never), /Unknown architecture "cnn"/);
  assert.throws(
    () => resolveTimmConfig({ architecture: "vit", fcNorm: 1 as never }),
    /fcNorm must be true, false or null/,
  );
  const custom = resolveTimmConfig({
    architecture: "swin",
    embedDim: 24,
    depths: [2, 2],
    numHeads: [2, 4],
    imgSize: 56,
  });
  assert.equal(custom.name, "custom");
  assert.deepEqual(custom.preprocessing.inputSize, [3, 56, 56]);
  assert.equal(custom.preprocessing.cropPct, 0.875, "timm's global default for unregistered configs");
});

for (
  const input of [
    { architecture: "vit", imgSize: 16, patchSize: 4, embedDim: 16, depth: 2, numHeads: 2, numClasses: 5 },
    {
      architecture: "swin",
      imgSize: 16,
      patchSize: 2,
      embedDim: 8,
      depths: [2, 2],
      numHeads: [2, 2],
      windowSize: 4,
    },
  ] as TimmConfigInput[]
) {
  Deno.test(`timmForward() on loadTimmParameters() equals the loaded backbone (${input.architecture})`, async () => {
    const { config } = resolveTimmConfig(input, { overrides: { numClasses: 5 } });
    const weights = randomTimmWeights(config, 3);
    const model = await loadTimmModel(config, weights);
    const loaded = await loadTimmParameters(config, weights);
    assert.deepEqual([...loaded.tensors.keys()], [...timmParameterShapes(config).keys()], "timm's key order");
    assert.equal(loaded.weightsSha256, model.weightsSha256);
    const images = tf.randomNormal([3, 16, 16, 3], 0, 1, "float32", 4) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    const [features, logits, expected] = tf.tidy(() => {
      const out = timmForward(config, loaded.tensors, images);
      return [out.features, out.logits!, model.forward(images)!];
    });
    assert.equal(tf.memory().numTensors, before + 3, "only the outputs survive the tidy");
    assert.deepEqual(features.shape, [3, model.numFeatures]);
    assert.deepEqual(await logits.data(), await expected.data(), "bit-identical logits");
    assert.throws(
      () => timmForward(config, loaded.tensors, tf.zeros([1, 8, 8, 3])),
      /expected images \[B, 16, 16, 3\]/,
    );
    tf.dispose([features, logits, expected, images, ...loaded.tensors.values()]);
    model.dispose();
  });
}

Deno.test("the committed vit_tiny_synth weights load by name, match their card, and give finite 128-d features", async () => {
  const path = fileURLToPath(new URL("../../data/weights/vit_tiny_synth.safetensors", import.meta.url));
  const card = JSON.parse(readFileSync(path.replace(/\.safetensors$/, ".json"), "utf8"));
  assert.ok(statSync(path).size <= 5 * 2 ** 20, "at most 5 MiB");
  const model = await loadTimmModel("vit_tiny_synth", path);
  assert.equal(model.weightsSha256, card.weights.sha256);
  assert.deepEqual(model.config, card.config);
  assert.deepEqual(model.preprocessing, card.preprocessing);
  assert.ok(card.linearProbe.pretrained.testAccuracy > card.linearProbe.random.testAccuracy);
  const images = tf.randomNormal([2, 64, 64, 3], 0, 1, "float32", 5) as tf.Tensor4D;
  const features = model.forwardFeatures(images);
  assert.deepEqual(features.shape, [2, 128]);
  const values = await features.data();
  assert.ok(values.every(Number.isFinite), "finite features");
  assert.ok(values.slice(0, 128).some((v, i) => v !== values[128 + i]), "features depend on the image");
  tf.dispose([images, features]);
  model.dispose();
});
