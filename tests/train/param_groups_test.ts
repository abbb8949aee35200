import assert from "node:assert/strict";
import { resolveTimmConfig, timmParameterShapes } from "../../lib/models/registry.ts";
import { parameterGroups } from "../../lib/train/_param_groups.ts";

Deno.test("parameterGroups() numbers ViT layers as timm's group_matcher and exempts norms, biases and tokens from decay", () => {
  const { config } = resolveTimmConfig({
    architecture: "vit",
    depth: 2,
    embedDim: 16,
    numHeads: 2,
    numClasses: 3,
  });
  const groups = parameterGroups(config, timmParameterShapes(config), 0.5);
  const layer = (key: string) => groups.get(key)!.layer;
  assert.deepEqual(
    ["cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.bias"]
      .map(layer),
    [0, 0, 0, 1, 2],
  );
  assert.equal(layer("norm.weight"), 2, "the final norm joins the last block (MATCH_PREV_GROUP)");
  assert.equal(layer("head.weight"), 3, "unmatched parameters form the last group");
  assert.equal(groups.get("pos_embed")!.lrScale, 0.125);
  assert.equal(groups.get("head.bias")!.lrScale, 1);
  const decayed = [...groups].filter(([, g]) => g.weightDecay).map(([k]) => k);
  assert.ok(decayed.every((k) => k.endsWith(".weight") && !k.includes("norm")), decayed.join(", "));
  assert.ok(decayed.includes("head.weight") && decayed.includes("patch_embed.proj.weight"));
  assert.equal(groups.get("cls_token")!.weightDecay, false);
});

Deno.test("parameterGroups() numbers Swin blocks across stages, downsample with its stage's first block", () => {
  const { config } = resolveTimmConfig({
    architecture: "swin",
    imgSize: 16,
    patchSize: 2,
    embedDim: 8,
    depths: [2, 3],
    numHeads: [2, 2],
    windowSize: 4,
    numClasses: 3,
  });
  const groups = parameterGroups(config, timmParameterShapes(config), 1);
  const layer = (key: string) => groups.get(key)!.layer;
  assert.deepEqual(
    [
      "patch_embed.norm.weight",
      "layers.0.blocks.0.norm1.weight",
      "layers.0.blocks.1.mlp.fc1.weight",
      "layers.1.downsample.reduction.weight",
      "layers.1.blocks.0.attn.qkv.weight",
      "layers.1.blocks.2.attn.proj.bias",
      "norm.bias",
      "head.fc.weight",
    ].map(layer),
    [0, 1, 2, 3, 3, 5, 5, 6],
  );
  assert.ok([...groups.values()].every((g) => g.lrScale === 1), "decay 1 scales nothing");
  assert.equal(groups.get("layers.0.blocks.1.attn.relative_position_bias_table")!.weightDecay, false);
});
