import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { selectBackend } from "../../lib/backend.ts";
import {
  loadTimmModel,
  loadTimmParameters,
  randomTimmWeights,
  readTimmHubFolder,
  resolveTimmConfig,
  TIMM_MODELS,
  type TimmConfigInput,
  timmForward,
  timmParameterShapes,
} from "../../lib/models/registry.ts";
import { writeSafetensors } from "../../lib/models/safetensors.ts";
import type { SwinConfig } from "../../lib/models/swin.ts";
import type { VitConfig } from "../../lib/models/vit.ts";
import { tinyVit } from "../train/_tiny_vit.ts";

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
    () => resolveTimmConfig({ architecture: "vit", embed_dims: 64 } as never),
    (e: Error) =>
      e instanceof TypeError && /unknown field "embed_dims" = 64; known fields .*embedDim/.test(e.message),
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
    () => resolveTimmConfig({ architecture: "swin", imgSize: 200 }),
    /imgSize \/ patchSize = 50 must be a multiple of 2\^\(stages − 1\) = 8 \(timm pads odd maps/,
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

/** A timm model folder as `save_for_hf` writes it: a small ViT on a registered name, sizes from `model_args`. */
const HUB_CONFIG = {
  architecture: "vit_base_patch16_224",
  num_classes: 3,
  num_features: 32,
  global_pool: "avg",
  model_args: {
    img_size: 32,
    patch_size: 8,
    embed_dim: 32,
    depth: 2,
    num_heads: 2,
    global_pool: "avg",
    drop_path_rate: 0.1,
    proj_drop_rate: 0.1,
  },
  pretrained_cfg: {
    tag: "tiny_test",
    custom_load: false,
    input_size: [3, 32, 32],
    fixed_input_size: true,
    interpolation: "bilinear",
    crop_pct: 0.95,
    crop_mode: "center",
    mean: [0.1, 0.2, 0.3],
    std: [0.4, 0.5, 0.6],
    num_classes: 1000, // the top-level num_classes wins, as in timm's _parse_model_cfg
    first_conv: "patch_embed.proj",
    classifier: "head",
  },
};
const HUB_EXPLICIT = { ...tinyVit, numClasses: 3 } as Extract<TimmConfigInput, { architecture: "vit" }>;

async function hubFolder(config: unknown, withWeights = true): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "carrot-hub-" });
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(config));
  if (withWeights) {
    const { config: explicit } = resolveTimmConfig(HUB_EXPLICIT);
    await writeSafetensors(join(dir, "model.safetensors"), randomTimmWeights(explicit, 7));
  }
  return dir;
}

Deno.test("loadTimmModel(folder) loads a timm hub folder with its own config and preprocessing", async () => {
  const dir = await hubFolder(HUB_CONFIG);
  const hub = readTimmHubFolder(dir);
  const explicit = resolveTimmConfig(HUB_EXPLICIT).config;
  assert.equal(hub.name, "vit_base_patch16_224");
  assert.deepEqual(hub.config, explicit);
  assert.equal(hub.weightsPath, join(dir, "model.safetensors"));
  const expectedData = {
    inputSize: [3, 32, 32],
    mean: [0.1, 0.2, 0.3],
    std: [0.4, 0.5, 0.6],
    interpolation: "bilinear",
    cropPct: 0.95,
  };
  assert.deepEqual(hub.preprocessing, expectedData);

  const before = tf.memory().numTensors;
  const model = await loadTimmModel(dir);
  const reference = await loadTimmModel(HUB_EXPLICIT, hub.weightsPath);
  assert.equal(model.name, "vit_base_patch16_224");
  assert.deepEqual(model.preprocessing, expectedData);
  assert.deepEqual(model.config, reference.config);
  assert.equal(model.report.source, hub.weightsPath);
  assert.equal(model.weightsSha256, reference.weightsSha256);
  const images = tf.randomNormal([2, 32, 32, 3], 0, 1, "float32", 8) as tf.Tensor4D;
  const [logits, expected] = [model.forward(images)!, reference.forward(images)!];
  assert.deepEqual(logits.shape, [2, 3]);
  assert.deepEqual(await logits.data(), await expected.data(), "bit-identical to the explicit config");
  tf.dispose([images, logits, expected]);
  model.dispose();
  reference.dispose();

  // overrides still win over the folder (here: drop the head, whose weights are then unexpected)
  const headless = await loadTimmParameters(dir, undefined, { overrides: { numClasses: 0 }, strict: false });
  assert.equal(headless.config.numClasses, 0);
  assert.deepEqual(headless.report.unexpected.sort(), ["head.bias", "head.weight"]);
  tf.dispose([...headless.tensors.values()]);
  assert.equal(tf.memory().numTensors, before);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loadTimmModel(folder) with num_classes 0 builds no head; the legacy single-dict config.json reads", async () => {
  const { pretrained_cfg, ...rest } = HUB_CONFIG;
  const dir = await hubFolder({ ...rest, ...pretrained_cfg, num_classes: 0 }, false);
  const { config } = resolveTimmConfig(HUB_EXPLICIT, { overrides: { numClasses: 0 } });
  await writeSafetensors(join(dir, "model.safetensors"), randomTimmWeights(config, 7));
  const model = await loadTimmModel(dir);
  assert.equal(model.numClasses, 0);
  assert.equal(model.preprocessing.cropPct, 0.95);
  const images = tf.zeros([1, 32, 32, 3]) as tf.Tensor4D;
  assert.equal(model.forward(images), null);
  tf.dispose(images);
  model.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("readTimmHubFolder() and loadTimmModel(folder) refuse broken folders with one line naming the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "carrot-hub-" });
  const config = join(dir, "config.json");
  const refuses = async (type: typeof RangeError | typeof TypeError, pattern: RegExp) =>
    await assert.rejects(
      () => loadTimmModel(dir),
      (e: Error) => e instanceof type && pattern.test(e.message),
    );
  await refuses(RangeError, new RegExp(`^${config}: not found; a timm model folder holds config.json`));
  await Deno.writeTextFile(config, "{ not json");
  await refuses(TypeError, new RegExp(`^${config}: malformed JSON .*; download config.json again$`));
  await Deno.writeTextFile(config, JSON.stringify({ ...HUB_CONFIG, architecture: "foo_bar" }));
  await refuses(
    RangeError,
    /config.json: "architecture" "foo_bar" is not a registered model; registered: vit_tiny_patch16_224, /,
  );
  await Deno.writeTextFile(config, JSON.stringify(HUB_CONFIG));
  await refuses(
    RangeError,
    /model.safetensors: not found; download model.safetensors from the model's Hugging/,
  );
  const variants: [Record<string, unknown>, RegExp][] = [
    [
      { model_args: { ...HUB_CONFIG.model_args, qk_norm: true } },
      /config.json: ViT config: "qk_norm" = true changes/,
    ],
    [
      { pretrained_cfg: { ...HUB_CONFIG.pretrained_cfg, input_size: [3, 64, 64], fixed_input_size: false } },
      /"pretrained_cfg.input_size" \[3,64,64\] does not fit the model, which takes \[3,32,32\]/,
    ],
    [
      { pretrained_cfg: { ...HUB_CONFIG.pretrained_cfg, interpolation: "nearest" } },
      /"pretrained_cfg.interpolation" "nearest" is not supported/,
    ],
    [
      { pretrained_cfg: { ...HUB_CONFIG.pretrained_cfg, mean: [0.5] } },
      /"pretrained_cfg.mean" must be 3 numbers/,
    ],
    [{ model_args: [1] }, /"model_args" must be an object, got \[1\]/],
  ];
  for (const [change, pattern] of variants) {
    await Deno.writeTextFile(config, JSON.stringify({ ...HUB_CONFIG, ...change }));
    assert.throws(
      () => readTimmHubFolder(dir),
      (e: Error) => pattern.test(e.message) && e.message.startsWith(config),
    );
  }
  assert.throws(
    () => resolveTimmConfig("no/such/folder"),
    /Unknown model "no\/such\/folder"; .*timm model folder/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("config objects take timm's arguments in snake_case, ignore training-only ones, refuse unimplemented ones by name", async () => {
  const training = {
    drop_rate: 0.1,
    drop_path_rate: 0.2,
    attn_drop_rate: 0.1,
    proj_drop_rate: 0.1,
    weight_init: "jax",
  };
  const vitArgs = {
    img_size: [32, 32],
    patch_size: 8,
    embed_dim: 32,
    depth: 2,
    num_heads: 2,
    num_classes: 3,
  };
  const vit = resolveTimmConfig({
    architecture: "vit",
    ...vitArgs,
    ...training,
    pos_drop_rate: 0.1,
    patch_drop_rate: 0.5,
    fix_init: true,
    dynamic_img_size: true,
    qk_norm: false,
    reg_tokens: 0,
  } as never);
  assert.deepEqual(vit.config, resolveTimmConfig({ ...HUB_EXPLICIT, globalPool: "token" }).config);
  assert.equal(
    resolveTimmConfig("vit_tiny_patch16_224", { overrides: { img_size: 64 } as never }).config.imgSize,
    64,
  );

  const swinArgs = {
    architecture: "swin",
    img_size: 32,
    patch_size: 2,
    embed_dim: 8,
    depths: [2, 2],
    num_heads: [2, 2],
    window_size: 4,
    num_classes: 4,
  };
  const { config: swin } = resolveTimmConfig({ ...swinArgs, ...training, global_pool: "avg" } as never);
  const model = await loadTimmModel(swin, randomTimmWeights(swin, 2));
  const images = tf.randomNormal([1, 32, 32, 3], 0, 1, "float32", 3) as tf.Tensor4D;
  const logits = model.forward(images)!;
  assert.ok((await logits.data()).every(Number.isFinite));
  tf.dispose([images, logits]);
  model.dispose();

  const refused: [Record<string, unknown>, RegExp][] = [
    [
      { ...swinArgs, global_pool: "max" },
      /Swin config: "global_pool" = "max" changes the forward pass and is not/,
    ],
    [{ ...swinArgs, globalPool: "" }, /Swin config: "globalPool" = "" changes the forward pass/],
    [{ ...swinArgs, head_dim: 16 }, /"head_dim" = 16 changes the forward pass .*only null/],
    [
      { architecture: "vit", ...vitArgs, qk_norm: true },
      /ViT config: "qk_norm" = true changes the forward pass/,
    ],
    [
      { architecture: "vit", ...vitArgs, reg_tokens: 4 },
      /"reg_tokens" = 4 changes the forward pass .*only 0/,
    ],
    [{ architecture: "vit", ...vitArgs, no_embed_class: true }, /"no_embed_class" = true/],
    [
      { architecture: "vit", ...vitArgs, global_pool: "max" },
      /globalPool must be "token" or "avg", got "max"/,
    ],
    [
      { architecture: "vit", ...vitArgs, img_size: [32, 48] },
      /"img_size" = \[32,48\] is not supported; only square/,
    ],
  ];
  for (const [input, pattern] of refused) {
    assert.throws(
      () => resolveTimmConfig(input as never),
      (e: Error) => e instanceof RangeError && pattern.test(e.message),
    );
  }
});
