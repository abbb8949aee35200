/**
 * Swin Transformer — Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", ICCV
 * 2021 — exactly as timm ≥ 0.9's `SwinTransformer` computes it (`timm/models/swin_transformer.py`).
 *
 * PatchEmbed + LN, then per stage s: PatchMerging at the start of stages 1… (concat of the 2×2 neighbours
 * x[0::2,0::2], x[1::2,0::2], x[0::2,1::2], x[1::2,1::2], LN(4C), Linear(4C → 2C, no bias)), then blocks
 * x += WindowAttn(LN₁(x)), x += MLP(LN₂(x)); odd blocks roll the map by −⌊w/2⌋ before the attention and back after,
 * masking pairs from different regions with −100. A map whose side is not a multiple of the window is zero-padded
 * at the bottom and right (after the roll) for the attention and cropped back, as timm's `_attn` does; the padded
 * tokens take part in the attention unmasked. Scores get the relative-position bias table[idx(i, j), h]. The pooled
 * feature is LN(x) averaged over H and W. LayerNorm ε = 1e-5, exact GELU.
 */
import * as tf from "@tensorflow/tfjs";
import {
  type Attention,
  attention,
  type LayerNorm,
  layerNorm,
  type Linear,
  linear,
  type Mlp,
  mlp,
  type ParameterSource,
  type ParameterTable,
  patchEmbed,
  sequential,
} from "./_layers.ts";
import {
  type Backbone,
  type CheckpointPlan,
  type DifferentiableOutputs,
  makeBackbone,
  type Preprocessing,
} from "./backbone.ts";
import {
  type Architecture,
  type ExtraTimmArguments,
  type ModelInfo,
  requireThat,
  withDefaults,
} from "./_timm.ts";

/** timm's `SwinTransformer` constructor arguments (camelCase) that decide the weights and the forward pass. */
export interface SwinConfig {
  /** Selects this architecture. */
  architecture: "swin";
  /** Input side in pixels (square). */
  imgSize: number;
  /** Side of the square patches of the embedding. */
  patchSize: number;
  /** Input channels. */
  inChans: number;
  /** Channels C of stage 0; stage s has C·2^s. */
  embedDim: number;
  /** Blocks per stage. */
  depths: number[];
  /** Heads per stage. */
  numHeads: number[];
  /** Attention window side (shrunk to the map side where the map is smaller; larger maps are padded to a multiple). */
  windowSize: number;
  /** MLP hidden width = ⌊C · mlpRatio⌋. */
  mlpRatio: number;
  /** Whether `attn.qkv` has a bias. */
  qkvBias: boolean;
  /** Classes of the head (`head.fc`); 0 for none. */
  numClasses: number;
}

/** timm's constructor defaults (Swin-T). */
export const SWIN_DEFAULTS: SwinConfig = {
  architecture: "swin",
  imgSize: 224,
  patchSize: 4,
  inChans: 3,
  embedDim: 96,
  depths: [2, 2, 6, 2],
  numHeads: [3, 6, 12, 24],
  windowSize: 7,
  mlpRatio: 4,
  qkvBias: true,
  numClasses: 1000,
};

/**
 * The rest of timm's `SwinTransformer` constructor arguments (timm 0.6–1.0): dropout, stochastic depth and
 * initialisation are ignored, as is `strict_img_size`, which changes nothing for inputs of `imgSize` (the only ones
 * a backbone takes); the others are supported only at timm's default (`global_pool` "avg": the mean over H and W).
 */
export const SWIN_EXTRA_ARGUMENTS: ExtraTimmArguments = {
  ignored: ["dropRate", "projDropRate", "attnDropRate", "dropPathRate", "weightInit", "strictImgSize"],
  fixed: { globalPool: "avg", headDim: null, alwaysPartition: false, ape: false, patchNorm: true },
};

const EPS = 1e-5;

/**
 * Geometry of one stage: channels, heads, map side r, window w = min(r, windowSize), the side the attention sees
 * (r rounded up to a multiple of w: timm pads), shift of odd blocks.
 */
interface Stage {
  depth: number;
  dim: number;
  heads: number;
  resolution: number;
  window: number;
  /** ⌈r / w⌉ · w. */
  padded: number;
  /** 0 when the map fits in one window (timm's `_calc_window_shift`), else ⌊windowSize/2⌋. */
  shift: number;
}

function stagesOf(c: SwinConfig): Stage[] {
  const grid = c.imgSize / c.patchSize;
  return c.depths.map((depth, s) => {
    const resolution = grid / 2 ** s, fits = resolution <= c.windowSize;
    const window = fits ? resolution : c.windowSize;
    return {
      depth,
      dim: c.embedDim * 2 ** s,
      heads: c.numHeads[s],
      resolution,
      window,
      padded: Math.ceil(resolution / window) * window,
      shift: fits ? 0 : Math.floor(c.windowSize / 2),
    };
  });
}

// ── window geometry ─────────────────────────────────────────────────────────────────────────────────────────────

/**
 * timm's `get_relative_position_index` for a w×w window, flattened [w², w²] row-major: for tokens i, j at (y, x),
 * idx[i, j] = (yᵢ − yⱼ + w − 1)·(2w − 1) + (xᵢ − xⱼ + w − 1), a row of the (2w−1)² × heads bias table.
 */
export function relativePositionIndex(window: number): Int32Array {
  const t = window * window, index = new Int32Array(t * t);
  for (let i = 0; i < t; i++) {
    for (let j = 0; j < t; j++) {
      const dy = Math.floor(i / window) - Math.floor(j / window), dx = (i % window) - (j % window);
      index[i * t + j] = (dy + window - 1) * (2 * window - 1) + (dx + window - 1);
    }
  }
  return index;
}

/**
 * The shifted-window attention mask [nW, w², w²] of an r×r map (timm's `attn_mask`; r is the padded side, a
 * multiple of w): after rolling by −shift the map is split into 3×3 regions at r − w and r − shift on each axis; a
 * pair of tokens of one window gets −100 when they come from different regions, else 0. Windows in row-major order,
 * as `partition` lays them out.
 */
export function shiftedWindowMask(resolution: number, window: number, shift: number): Float32Array {
  const region = (v: number) => (v < resolution - window ? 0 : v < resolution - shift ? 1 : 2);
  const perSide = resolution / window, t = window * window;
  const mask = new Float32Array(perSide * perSide * t * t);
  for (let n = 0; n < perSide * perSide; n++) {
    const ids = Array.from({ length: t }, (_, i) => {
      const y = Math.floor(n / perSide) * window + Math.floor(i / window),
        x = (n % perSide) * window + (i % window);
      return region(y) * 3 + region(x);
    });
    for (let i = 0; i < t; i++) {
      for (let j = 0; j < t; j++) mask[(n * t + i) * t + j] = ids[i] === ids[j] ? 0 : -100;
    }
  }
  return mask;
}

/** torch.roll(x, shift, axis) for NHWC maps: out[i] = x[(i − shift) mod n] along `axis` (1 = H, 2 = W). */
function roll(x: tf.Tensor4D, shift: number, axis: 1 | 2): tf.Tensor4D {
  const n = x.shape[axis], k = ((-shift % n) + n) % n;
  const head = [-1, -1, -1, -1], tailBegin = [0, 0, 0, 0];
  head[axis] = k;
  tailBegin[axis] = k;
  return tf.concat([tf.slice(x, tailBegin), tf.slice(x, [0, 0, 0, 0], head)], axis);
}

/** [B, r, r, C] → windows [B·nW·w², C], windows row-major, tokens row-major inside each (timm `window_partition`). */
function partition(x: tf.Tensor4D, window: number): tf.Tensor2D {
  const [b, r, , c] = x.shape, per = r / window;
  const windows = tf.transpose(tf.reshape(x, [b * per, window, per, window * c]), [0, 2, 1, 3]);
  return tf.reshape(windows, [b * r * r, c]);
}

/** Inverse of `partition` (timm `window_reverse`). */
function unpartition(x: tf.Tensor2D, batch: number, resolution: number, window: number): tf.Tensor4D {
  const c = x.shape[1], per = resolution / window;
  const rows = tf.transpose(tf.reshape(x, [batch * per, per, window, window * c]), [0, 2, 1, 3]);
  return tf.reshape(rows, [batch, resolution, resolution, c]);
}

// ── blocks ──────────────────────────────────────────────────────────────────────────────────────────────────────

interface SwinBlock {
  norm1: LayerNorm;
  attn: Attention;
  /** Relative-position bias (+ shift mask) [nW or 1, H, w², w²], computed once at load. */
  bias: tf.Tensor4D;
  norm2: LayerNorm;
  mlp: Mlp;
  shift: number;
}

/**
 * x [B, r, r, C] → x + WindowAttn(LN₁(x)) (shifted when `p.shift`; zero-padded to [B, r', r', C], r' = `g.padded`,
 * after the roll and cropped before rolling back, as in timm's `_attn`), then + MLP(LN₂(·)).
 */
function block(x: tf.Tensor4D, p: SwinBlock, g: Stage): tf.Tensor4D {
  const [b, r, , c] = x.shape, w = g.window, pad = g.padded - r;
  const flat = tf.reshape(x, [b * r * r, c]) as tf.Tensor2D;
  let h = tf.reshape(layerNorm(flat, p.norm1), [b, r, r, c]) as tf.Tensor4D;
  if (p.shift) h = roll(roll(h, -p.shift, 1), -p.shift, 2);
  if (pad) h = tf.pad(h, [[0, 0], [0, pad], [0, pad], [0, 0]]);
  const windows = (g.padded / w) ** 2;
  h = unpartition(attention(partition(h, w), b * windows, w * w, p.attn, p.bias), b, g.padded, w);
  if (pad) h = tf.slice(h, [0, 0, 0, 0], [-1, r, r, -1]);
  if (p.shift) h = roll(roll(h, p.shift, 1), p.shift, 2);
  const y = tf.add(flat, tf.reshape(h, [b * r * r, c])) as tf.Tensor2D;
  return tf.reshape(tf.add(y, mlp(layerNorm(y, p.norm2), p.mlp)), [b, r, r, c]);
}

interface PatchMerging {
  norm: LayerNorm;
  reduction: Linear;
}

/** [B, r, r, C] → [B, r/2, r/2, 2C]: concat (0,0), (1,0), (0,1), (1,1) neighbours (row, col), LN, Linear. */
function patchMerging(x: tf.Tensor4D, p: PatchMerging): tf.Tensor4D {
  const [b, r, , c] = x.shape, half = r / 2;
  // [B·r/2, row parity, r/2, col parity, C] → [B·r/2, r/2, col parity, row parity, C]: row parity varies fastest
  const merged = tf.transpose(tf.reshape(x, [b * half, 2, half, 2, c]), [0, 2, 3, 1, 4]);
  const y = linear(layerNorm(tf.reshape(merged, [b * half * half, 4 * c]), p.norm), p.reduction);
  return tf.reshape(y, [b, half, half, 2 * c]);
}

// ── backbone ────────────────────────────────────────────────────────────────────────────────────────────────────

interface SwinParameters {
  patchEmbed: Linear;
  patchNorm: LayerNorm;
  stages: { downsample?: PatchMerging; blocks: SwinBlock[] }[];
  norm: LayerNorm;
  head?: Linear;
}

/** Pooled features h = mean over H, W of LN(x) [B, C_last]. */
function swinFeatures(images: tf.Tensor4D, p: SwinParameters, c: SwinConfig, stages: Stage[]): tf.Tensor2D {
  const b = images.shape[0], grid = c.imgSize / c.patchSize;
  const embedded = layerNorm(patchEmbed(images, p.patchEmbed, c.patchSize), p.patchNorm);
  const steps = stages.flatMap((g, s) => {
    const { downsample, blocks } = p.stages[s];
    const merge = downsample ? [(x: tf.Tensor4D) => patchMerging(x, downsample)] : [];
    return [...merge, ...blocks.map((blk) => (x: tf.Tensor4D) => block(x, blk, g))];
  });
  const x = sequential(tf.reshape(embedded, [b, grid, grid, c.embedDim]) as tf.Tensor4D, steps);
  const [, r, , dim] = x.shape;
  return tf.mean(tf.reshape(layerNorm(tf.reshape(x, [b * r * r, dim]), p.norm), [b, r * r, dim]), 1);
}

// ── checkpoint ──────────────────────────────────────────────────────────────────────────────────────────────────

/**
 * Maps timm Swin checkpoint keys onto the timm ≥ 0.9 layout (timm's `checkpoint_filter_fn`):
 * - `*.relative_position_index` and `*.attn_mask` (persistent buffers before timm 0.9.5) are ignored: both are
 *   recomputed from the config;
 * - the ≤ 0.8 layout (PatchMerging at the end of stages 0–2, recognised by `layers.0.downsample.*`) is renamed
 *   `layers.N.downsample.* → layers.{N+1}.downsample.*`;
 * - `head.*` becomes `head.fc.*` when the checkpoint has no `head.fc.weight` (≤ 0.8 naming).
 */
export function filterSwinCheckpoint(checkpoint: ReadonlyMap<string, number[]>): CheckpointPlan {
  const plan: CheckpointPlan = { tensors: new Map(), renamed: [], ignored: [], resampled: [] };
  const downsampleAtEnd = [...checkpoint.keys()].some((k) => k.startsWith("layers.0.downsample."));
  const oldHead = checkpoint.has("head.weight") && !checkpoint.has("head.fc.weight");
  for (const [key, shape] of checkpoint) {
    if (key.endsWith(".relative_position_index") || key.endsWith(".attn_mask")) {
      plan.ignored.push(key);
      continue;
    }
    let target = key;
    if (downsampleAtEnd) {
      target = target.replace(/^layers\.(\d+)\.downsample\./, (_, n) => `layers.${+n + 1}.downsample.`);
    }
    if (oldHead) target = target.replace(/^head\./, "head.fc.");
    if (target !== key) plan.renamed.push([key, target]);
    plan.tensors.set(target, { source: key, shape });
  }
  return plan;
}

/** Every parameter of `config` in timm ≥ 0.9's layout and order, with its shape. */
export function swinParameterShapes(c: SwinConfig): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  const p = c.patchSize, c0 = c.embedDim;
  shapes.set("patch_embed.proj.weight", [c0, c.inChans, p, p]).set("patch_embed.proj.bias", [c0]);
  shapes.set("patch_embed.norm.weight", [c0]).set("patch_embed.norm.bias", [c0]);
  stagesOf(c).forEach((g, s) => {
    const d = g.dim, hidden = Math.floor(d * c.mlpRatio);
    if (s > 0) {
      const prev = d / 2, m = `layers.${s}.downsample`;
      shapes.set(`${m}.norm.weight`, [4 * prev]).set(`${m}.norm.bias`, [4 * prev]);
      shapes.set(`${m}.reduction.weight`, [2 * prev, 4 * prev]);
    }
    for (let j = 0; j < g.depth; j++) {
      const b = `layers.${s}.blocks.${j}`;
      shapes.set(`${b}.norm1.weight`, [d]).set(`${b}.norm1.bias`, [d]);
      shapes.set(`${b}.attn.relative_position_bias_table`, [(2 * g.window - 1) ** 2, g.heads]);
      shapes.set(`${b}.attn.qkv.weight`, [3 * d, d]);
      if (c.qkvBias) shapes.set(`${b}.attn.qkv.bias`, [3 * d]);
      shapes.set(`${b}.attn.proj.weight`, [d, d]).set(`${b}.attn.proj.bias`, [d]);
      shapes.set(`${b}.norm2.weight`, [d]).set(`${b}.norm2.bias`, [d]);
      shapes.set(`${b}.mlp.fc1.weight`, [hidden, d]).set(`${b}.mlp.fc1.bias`, [hidden]);
      shapes.set(`${b}.mlp.fc2.weight`, [d, hidden]).set(`${b}.mlp.fc2.bias`, [d]);
    }
  });
  const last = c.embedDim * 2 ** (c.depths.length - 1);
  shapes.set("norm.weight", [last]).set("norm.bias", [last]);
  if (c.numClasses > 0) {
    shapes.set("head.fc.weight", [c.numClasses, last]).set("head.fc.bias", [c.numClasses]);
  }
  return shapes;
}

// ── configs ─────────────────────────────────────────────────────────────────────────────────────────────────────

/**
 * Fills timm's defaults into `input` (timm's constructor arguments, camelCase or snake_case; see
 * `SWIN_EXTRA_ARGUMENTS` for those without a field) and checks the geometry. Maps that are not a multiple of the
 * window are padded as timm pads them (not what torchvision computes); every stage's map must halve exactly.
 */
export function resolveSwinConfig(input: Record<string, unknown>): SwinConfig {
  const what = "Swin config";
  const c = withDefaults(SWIN_DEFAULTS, input, what, SWIN_EXTRA_ARGUMENTS);
  for (const f of ["imgSize", "patchSize", "inChans", "embedDim", "windowSize"] as const) {
    requireThat(Number.isInteger(c[f]) && c[f] > 0, what, `${f} must be a positive integer, got ${c[f]}`);
  }
  requireThat(
    c.depths.length > 0 && c.depths.length === c.numHeads.length,
    what,
    "depths and numHeads need one entry per stage",
  );
  requireThat(
    c.mlpRatio > 0 && Number.isInteger(c.numClasses) && c.numClasses >= 0,
    what,
    "mlpRatio > 0 and numClasses ≥ 0",
  );
  const grid = c.imgSize / c.patchSize, halvings = 2 ** (c.depths.length - 1);
  requireThat(
    Number.isInteger(grid) && grid % halvings === 0,
    what,
    `imgSize / patchSize = ${grid} must be a multiple of 2^(stages − 1) = ${halvings} (timm pads odd maps before ` +
      `merging; unsupported here)`,
  );
  for (const [s, g] of stagesOf(c).entries()) {
    requireThat(
      g.dim % g.heads === 0,
      what,
      `stage ${s}: ${g.dim} channels are not divisible by ${g.heads} heads`,
    );
  }
  return c;
}

const IMAGENET: Omit<Preprocessing, "inputSize"> = {
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
  interpolation: "bicubic",
  cropPct: 0.9,
};

function registered(fields: Partial<SwinConfig>, cropPct = IMAGENET.cropPct) {
  const config = resolveSwinConfig(fields);
  return {
    config,
    preprocessing: { ...IMAGENET, cropPct, inputSize: [3, config.imgSize, config.imgSize] } as Preprocessing,
  };
}

const SWIN_SB = { depths: [2, 2, 18, 2] };

/** Registered Swins by timm name, with timm's data config (ImageNet mean/std, bicubic, crop 0.9; 1.0 at 384 px). */
export const SWIN_MODELS = {
  swin_tiny_patch4_window7_224: registered({}),
  swin_small_patch4_window7_224: registered({ ...SWIN_SB }),
  swin_base_patch4_window7_224: registered({ ...SWIN_SB, embedDim: 128, numHeads: [4, 8, 16, 32] }),
  swin_large_patch4_window7_224: registered({ ...SWIN_SB, embedDim: 192, numHeads: [6, 12, 24, 48] }),
  swin_base_patch4_window12_384: registered(
    { ...SWIN_SB, embedDim: 128, numHeads: [4, 8, 16, 32], windowSize: 12, imgSize: 384 },
    1,
  ),
} as const;

// ── factory ─────────────────────────────────────────────────────────────────────────────────────────────────────

/**
 * Rows `index` of `table` (`tf.gather`), with the gradient as ScatterNd's duplicate-summing scatter of dy:
 * gather's own gradient kernel, UnsortedSegmentSum, is missing on WASM. Index tensors are made from `index`
 * where used, so the backward pass does not depend on tensors a `tf.tidy` may have freed.
 */
function gatherRows(table: tf.Tensor, index: Int32Array): tf.Tensor {
  const gather = tf.customGrad((...inputs: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const t = inputs[0] as tf.Tensor;
    return {
      value: tf.gather(t, tf.tensor1d(index, "int32")),
      gradFunc: (dy: tf.Tensor | tf.Tensor[]) =>
        tf.scatterND(tf.tensor2d(index, [index.length, 1], "int32"), dy as tf.Tensor, t.shape),
    };
  });
  return gather(table);
}

/** Relative-position bias table[idx(i, j), h] (+ shift mask of the padded map) of one block → [nW or 1, H, w², w²]. */
function relativeBias(table: tf.Tensor, g: Stage, shift: number): tf.Tensor4D {
  const tokens = g.window * g.window, windows = (g.padded / g.window) ** 2;
  const relative = tf.reshape(tf.transpose(gatherRows(table, relativePositionIndex(g.window))), [
    1,
    g.heads,
    tokens,
    tokens,
  ]);
  return (shift
    ? tf.add(
      relative,
      tf.tensor4d(shiftedWindowMask(g.padded, g.window, shift), [windows, 1, tokens, tokens]),
    )
    : relative) as tf.Tensor4D;
}

function swinParameters(c: SwinConfig, stages: Stage[], t: ParameterSource): SwinParameters {
  return {
    patchEmbed: t.patchEmbed("patch_embed.proj"),
    patchNorm: t.layerNorm("patch_embed.norm", EPS),
    stages: stages.map((g, s) => ({
      downsample: s > 0
        ? {
          norm: t.layerNorm(`layers.${s}.downsample.norm`, EPS),
          reduction: t.linear(`layers.${s}.downsample.reduction`, false),
        }
        : undefined,
      blocks: Array.from({ length: g.depth }, (_, j) => {
        const b = `layers.${s}.blocks.${j}`, shift = j % 2 === 1 ? g.shift : 0;
        return {
          norm1: t.layerNorm(`${b}.norm1`, EPS),
          attn: t.attention(`${b}.attn`, g.heads, c.qkvBias),
          bias: t.derived(
            `${b}.attn.relative_position_bias_table`,
            (table) => relativeBias(table, g, shift),
          ) as tf.Tensor4D,
          norm2: t.layerNorm(`${b}.norm2`, EPS),
          mlp: t.mlp(`${b}.mlp`),
          shift,
        };
      }),
    })),
    norm: t.layerNorm("norm", EPS),
    head: c.numClasses > 0 ? t.linear("head.fc") : undefined,
  };
}

/** Bytes of the largest intermediate tensor per image (MLP hidden, qkv, window scores or the input). */
function swinActivationBytes(c: SwinConfig): number {
  return 4 * Math.max(
    c.imgSize * c.imgSize * c.inChans,
    ...stagesOf(c).map((g) =>
      Math.max(
        g.resolution ** 2 * Math.floor(g.dim * c.mlpRatio),
        g.padded ** 2 * 3 * g.dim,
        (g.padded / g.window) ** 2 * g.heads * g.window ** 4,
      )
    ),
  );
}

function createSwin(c: SwinConfig, t: ParameterTable, info: ModelInfo): Backbone<SwinConfig> {
  const stages = stagesOf(c);
  const p = swinParameters(c, stages, t);
  return makeBackbone({
    ...info,
    config: c,
    numFeatures: stages[stages.length - 1].dim,
    imgSize: c.imgSize,
    inChans: c.inChans,
    features: (images) => swinFeatures(images, p, c, stages),
    head: p.head,
    bytesPerImage: swinActivationBytes(c),
    tensors: t.owned,
  }, info.maxTensorBytes);
}

function forwardSwin(c: SwinConfig, t: ParameterSource, images: tf.Tensor4D): DifferentiableOutputs {
  const stages = stagesOf(c);
  const p = swinParameters(c, stages, t);
  const features = swinFeatures(images, p, c, stages);
  return { features, logits: p.head ? linear(features, p.head) : null };
}

/** The Swin as the registry sees it. */
export const SWIN: Architecture<SwinConfig> = {
  resolve: resolveSwinConfig,
  parameterShapes: swinParameterShapes,
  filterCheckpoint: filterSwinCheckpoint,
  create: createSwin,
  forward: forwardSwin,
  activationBytes: swinActivationBytes,
};
