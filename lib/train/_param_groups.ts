/**
 * Per-parameter learning-rate scales and weight-decay flags, as timm's `param_groups_layer_decay` and
 * `param_groups_weight_decay` (`timm/optim/_param_groups.py`) assign them.
 *
 * Layer-wise decay (Clark et al., "ELECTRA", ICLR 2020; BEiT's fine-tuning recipe): parameters are numbered
 * from the input, l = 0 (patch embedding, class token, position embedding) up to L (the head), and a parameter's
 * learning rate is η · decay^(L − l), so layers near the input move least. The numbering is timm's
 * `group_matcher` (fine-grained) passed through `group_with_matcher`: ViT — l = 0 for `cls_token`, `pos_embed`,
 * `patch_embed.*`; l = i + 1 for `blocks.i.*`; Swin — l = 0 for `patch_embed.*`, block j of stage s is
 * 1 + (blocks of earlier stages) + j and `layers.s.downsample.*` shares the number of the stage's first block. In
 * both, the final `norm.*` joins the last block (timm's MATCH_PREV_GROUP) and everything unmatched (`fc_norm`,
 * the head) forms the last group, L = blocks + 1.
 * No weight decay for 1-D tensors (biases, norms, layer scales) and for `pos_embed`, `cls_token` and Swin's
 * `relative_position_bias_table` (timm's `no_weight_decay` lists).
 */
import type { TimmConfig } from "../models/registry.ts";

/** How one parameter is optimised. */
export interface ParameterGroup {
  /** Layer number l (0 = input side). */
  layer: number;
  /** decay^(L − l): the factor on the scheduled learning rate. */
  lrScale: number;
  /** Whether decoupled weight decay applies. */
  weightDecay: boolean;
}

function layerOf(key: string, config: TimmConfig): { layer: number; last: number } {
  const blocks = config.architecture === "vit" ? config.depth : config.depths.reduce((a, b) => a + b, 0);
  const last = blocks + 1;
  if (key.startsWith("norm.")) return { layer: blocks, last };
  if (config.architecture === "vit") {
    if (/^(cls_token|pos_embed|patch_embed\.)/.test(key)) return { layer: 0, last };
    const block = /^blocks\.(\d+)\./.exec(key);
    return { layer: block ? Number(block[1]) + 1 : last, last };
  }
  const before = config.depths.map((_, s) => config.depths.slice(0, s).reduce((a, b) => a + b, 0));
  if (key.startsWith("patch_embed.")) return { layer: 0, last };
  const block = /^layers\.(\d+)\.(?:blocks\.(\d+)|downsample)\./.exec(key);
  return { layer: block ? 1 + before[Number(block[1])] + Number(block[2] ?? 0) : last, last };
}

/** The group of every parameter in `shapes` (timm key → shape) for `config`, with layer decay `decay` ∈ (0, 1]. */
export function parameterGroups(
  config: TimmConfig,
  shapes: ReadonlyMap<string, readonly number[]>,
  decay: number,
): Map<string, ParameterGroup> {
  const groups = new Map<string, ParameterGroup>();
  for (const [key, shape] of shapes) {
    const { layer, last } = layerOf(key, config);
    const exempt = shape.length <= 1 || key.endsWith(".bias") || key === "pos_embed" || key === "cls_token" ||
      key.endsWith("relative_position_bias_table");
    groups.set(key, { layer, lrScale: decay ** (last - layer), weightDecay: !exempt });
  }
  return groups;
}
