/**
 * Vision Transformer — Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at
 * Scale", ICLR 2021 — exactly as timm's `VisionTransformer` computes it (`timm/models/vision_transformer.py`),
 * with DINOv2's layer scale (Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision", 2023).
 *
 * tokens = [cls; PatchEmbed(x)] + pos_embed; per block x += ls1 ⊙ Attn(LN₁(x)), x += ls2 ⊙ MLP(LN₂(x)) with
 * LayerNorm ε = 1e-6 and exact GELU; h = LN(x)[:, 0] (`token`) or fc_norm(mean of the patch tokens) (`avg`).
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
import { type PosEmbedResample, resampleAbsPosEmbed } from "./pos_embed.ts";
import {
  type Architecture,
  type ExtraTimmArguments,
  identityPlan,
  type ModelInfo,
  requireThat,
  withDefaults,
} from "./_timm.ts";

/** timm's `VisionTransformer` constructor arguments (camelCase) that decide the weights and the forward pass. */
export interface VitConfig {
  /** Selects this architecture. */
  architecture: "vit";
  /** Input side in pixels (square); the position embedding has (imgSize / patchSize)² patch slots. */
  imgSize: number;
  /** Side of the square patches (the stride of the embedding conv). */
  patchSize: number;
  /** Input channels. */
  inChans: number;
  /** Token width D (the feature dimension). */
  embedDim: number;
  /** Number of blocks. */
  depth: number;
  /** Attention heads; head_dim = embedDim / numHeads. */
  numHeads: number;
  /** MLP hidden width = ⌊embedDim · mlpRatio⌋. */
  mlpRatio: number;
  /** Whether `attn.qkv` has a bias. */
  qkvBias: boolean;
  /** Classes of the head; 0 for none (`forward` returns null). */
  numClasses: number;
  /** `token`: the class token; `avg`: the mean of the patch tokens (the class token still attends). */
  globalPool: "token" | "avg";
  /** Whether a class token is prepended (`cls_token`). */
  classToken: boolean;
  /** LayerNorm after pooling (`fc_norm`) instead of on all tokens (`norm`); null = timm's default, globalPool avg. */
  fcNorm: boolean | null;
  /** Layer scale (`blocks.N.ls1.gamma`, `ls2.gamma`, DINOv2); null for none. Only its presence matters here. */
  initValues: number | null;
}

/** timm's constructor defaults. */
export const VIT_DEFAULTS: VitConfig = {
  architecture: "vit",
  imgSize: 224,
  patchSize: 16,
  inChans: 3,
  embedDim: 768,
  depth: 12,
  numHeads: 12,
  mlpRatio: 4,
  qkvBias: true,
  numClasses: 1000,
  globalPool: "token",
  classToken: true,
  fcNorm: null,
  initValues: null,
};

/**
 * The rest of timm's `VisionTransformer` constructor arguments (timm 0.6–1.0): dropout, stochastic depth and
 * initialisation are ignored, as are `dynamic_img_size`/`dynamic_img_pad`, which change nothing for inputs of
 * `imgSize` (the only ones a backbone takes); the others are supported only at timm's default.
 */
export const VIT_EXTRA_ARGUMENTS: ExtraTimmArguments = {
  ignored: [
    "dropRate",
    "posDropRate",
    "patchDropRate",
    "projDropRate",
    "attnDropRate",
    "dropPathRate",
    "weightInit",
    "fixInit",
    "dynamicImgSize",
    "dynamicImgPad",
  ],
  fixed: {
    qkNorm: false,
    scaleAttnNorm: false,
    scaleMlpNorm: false,
    projBias: true,
    posEmbed: "learn",
    noEmbedClass: false,
    regTokens: 0,
    preNorm: false,
    finalNorm: true,
    poolIncludePrefix: false,
    embedNormLayer: null,
    normLayer: null,
    actLayer: null,
    representationSize: null,
    distilled: false,
  },
};

const EPS = 1e-6;

// ── blocks ──────────────────────────────────────────────────────────────────────────────────────────────────────

interface VitBlock {
  norm1: LayerNorm;
  attn: Attention;
  ls1?: tf.Tensor1D;
  norm2: LayerNorm;
  mlp: Mlp;
  ls2?: tf.Tensor1D;
}

const scaled = (x: tf.Tensor2D, gamma?: tf.Tensor1D): tf.Tensor2D => gamma ? tf.mul(x, gamma) : x;

/** x [B·T, D] → x + ls1 ⊙ Attn(LN₁(x)), then + ls2 ⊙ MLP(LN₂(·)). */
function block(x: tf.Tensor2D, batch: number, tokens: number, p: VitBlock): tf.Tensor2D {
  const y = tf.add<tf.Tensor2D>(x, scaled(attention(layerNorm(x, p.norm1), batch, tokens, p.attn), p.ls1));
  return tf.add(y, scaled(mlp(layerNorm(y, p.norm2), p.mlp), p.ls2));
}

// ── backbone ────────────────────────────────────────────────────────────────────────────────────────────────────

interface VitParameters {
  patchEmbed: Linear;
  clsToken?: tf.Tensor3D;
  posEmbed: tf.Tensor3D;
  blocks: VitBlock[];
  norm?: LayerNorm;
  fcNorm?: LayerNorm;
  head?: Linear;
}

const usesFcNorm = (c: VitConfig) => c.fcNorm ?? c.globalPool === "avg";
const prefixTokens = (c: VitConfig) => (c.classToken ? 1 : 0);
const gridSize = (c: VitConfig) => c.imgSize / c.patchSize;
const hiddenDim = (c: VitConfig) => Math.floor(c.embedDim * c.mlpRatio);

/** Pooled pre-logits h [B, D] of normalised NHWC images. */
function vitFeatures(images: tf.Tensor4D, p: VitParameters, c: VitConfig): tf.Tensor2D {
  const batch = images.shape[0], patches = gridSize(c) ** 2, prefix = prefixTokens(c);
  const tokens = patches + prefix, dim = c.embedDim;
  let seq: tf.Tensor3D = tf.reshape(patchEmbed(images, p.patchEmbed, c.patchSize), [batch, patches, dim]);
  if (p.clsToken) seq = tf.concat([tf.tile(p.clsToken, [batch, 1, 1]), seq], 1); // concat, then add pos_embed
  const embedded: tf.Tensor2D = tf.reshape(tf.add(seq, p.posEmbed), [batch * tokens, dim]);
  const x = sequential(embedded, p.blocks.map((b) => (y: tf.Tensor2D) => block(y, batch, tokens, b)));
  let pooled: tf.Tensor2D;
  if (c.globalPool === "token") {
    const cls = tf.reshape(tf.slice(tf.reshape(x, [batch, tokens, dim]), [0, 0, 0], [-1, 1, -1]), [
      batch,
      dim,
    ]);
    pooled = p.norm ? layerNorm(cls as tf.Tensor2D, p.norm) : cls as tf.Tensor2D; // LN is per token: LN(x)[:, 0]
  } else {
    const normed = p.norm ? layerNorm(x, p.norm) : x;
    pooled = tf.mean(tf.slice(tf.reshape(normed, [batch, tokens, dim]), [0, prefix, 0], [-1, -1, -1]), 1);
  }
  return p.fcNorm ? layerNorm(pooled, p.fcNorm) : pooled;
}

// ── checkpoint ──────────────────────────────────────────────────────────────────────────────────────────────────

/**
 * Maps timm ViT checkpoint keys onto `config` (timm's `checkpoint_filter_fn`, the parts that apply here):
 * - `pos_embed` [1, P + n², D] with another grid than the config's is resampled to it (`resampleAbsPosEmbed`:
 *   bicubic, antialias, prefix tokens kept), as timm does when a checkpoint is loaded at another resolution;
 * - `pre_logits.*` (the representation layer of timm ≤ 0.5 in21k checkpoints, which timm drops) and `mask_token`
 *   (DINOv2's original checkpoints, unused at inference) are ignored;
 * - every other key is taken as it is.
 */
export function filterVitCheckpoint(
  checkpoint: ReadonlyMap<string, number[]>,
  config: VitConfig,
): CheckpointPlan {
  const plan = identityPlan(checkpoint);
  for (const key of checkpoint.keys()) {
    if (key.startsWith("pre_logits.") || key === "mask_token") {
      plan.tensors.delete(key);
      plan.ignored.push(key);
    }
  }
  const pos = checkpoint.get("pos_embed");
  const prefix = prefixTokens(config), grid = gridSize(config), wanted = prefix + grid * grid;
  if (pos && pos.length === 3 && pos[0] === 1 && pos[2] === config.embedDim && pos[1] !== wanted) {
    const old = Math.round(Math.sqrt(pos[1] - prefix));
    if (old * old === pos[1] - prefix) {
      const spec: PosEmbedResample = {
        dim: config.embedDim,
        from: [old, old],
        to: [grid, grid],
        prefixTokens: prefix,
      };
      plan.tensors.set("pos_embed", {
        source: "pos_embed",
        shape: [1, wanted, config.embedDim],
        transform: (values) => resampleAbsPosEmbed(values, spec),
      });
      plan.resampled.push("pos_embed");
    }
  }
  return plan;
}

/** Every parameter of `config` in timm's layout and order, with its shape. */
export function vitParameterShapes(c: VitConfig): Map<string, number[]> {
  const d = c.embedDim, hidden = hiddenDim(c), p = c.patchSize;
  const shapes = new Map<string, number[]>();
  if (c.classToken) shapes.set("cls_token", [1, 1, d]);
  shapes.set("pos_embed", [1, prefixTokens(c) + gridSize(c) ** 2, d]);
  shapes.set("patch_embed.proj.weight", [d, c.inChans, p, p]);
  shapes.set("patch_embed.proj.bias", [d]);
  for (let i = 0; i < c.depth; i++) {
    const b = `blocks.${i}`;
    shapes.set(`${b}.norm1.weight`, [d]).set(`${b}.norm1.bias`, [d]);
    shapes.set(`${b}.attn.qkv.weight`, [3 * d, d]);
    if (c.qkvBias) shapes.set(`${b}.attn.qkv.bias`, [3 * d]);
    shapes.set(`${b}.attn.proj.weight`, [d, d]).set(`${b}.attn.proj.bias`, [d]);
    if (c.initValues !== null) shapes.set(`${b}.ls1.gamma`, [d]);
    shapes.set(`${b}.norm2.weight`, [d]).set(`${b}.norm2.bias`, [d]);
    shapes.set(`${b}.mlp.fc1.weight`, [hidden, d]).set(`${b}.mlp.fc1.bias`, [hidden]);
    shapes.set(`${b}.mlp.fc2.weight`, [d, hidden]).set(`${b}.mlp.fc2.bias`, [d]);
    if (c.initValues !== null) shapes.set(`${b}.ls2.gamma`, [d]);
  }
  const norm = usesFcNorm(c) ? "fc_norm" : "norm";
  shapes.set(`${norm}.weight`, [d]).set(`${norm}.bias`, [d]);
  if (c.numClasses > 0) shapes.set("head.weight", [c.numClasses, d]).set("head.bias", [c.numClasses]);
  return shapes;
}

// ── configs ─────────────────────────────────────────────────────────────────────────────────────────────────────

/**
 * Fills timm's defaults into `input` (timm's constructor arguments, camelCase or snake_case; see
 * `VIT_EXTRA_ARGUMENTS` for those without a field) and checks that the geometry is consistent.
 */
export function resolveVitConfig(input: Record<string, unknown>): VitConfig {
  const what = "ViT config";
  const c = withDefaults(VIT_DEFAULTS, input, what, VIT_EXTRA_ARGUMENTS);
  for (const f of ["imgSize", "patchSize", "inChans", "embedDim", "depth", "numHeads"] as const) {
    requireThat(Number.isInteger(c[f]) && c[f] > 0, what, `${f} must be a positive integer, got ${c[f]}`);
  }
  requireThat(
    c.imgSize % c.patchSize === 0,
    what,
    `imgSize ${c.imgSize} is not a multiple of patchSize ${c.patchSize}`,
  );
  requireThat(
    c.embedDim % c.numHeads === 0,
    what,
    `embedDim ${c.embedDim} is not a multiple of numHeads ${c.numHeads}`,
  );
  requireThat(
    c.mlpRatio > 0 && Number.isInteger(c.numClasses) && c.numClasses >= 0,
    what,
    "mlpRatio > 0 and numClasses ≥ 0",
  );
  requireThat(
    c.globalPool === "token" || c.globalPool === "avg",
    what,
    `globalPool must be "token" or "avg", got "${c.globalPool}"`,
  );
  requireThat(c.classToken || c.globalPool !== "token", what, `globalPool "token" needs classToken: true`);
  requireThat(c.fcNorm === null || typeof c.fcNorm === "boolean", what, `fcNorm must be true, false or null`);
  requireThat(
    c.initValues === null || typeof c.initValues === "number",
    what,
    `initValues must be a number or null`,
  );
  return c;
}

const AUGREG: Omit<Preprocessing, "inputSize"> = {
  mean: [0.5, 0.5, 0.5],
  std: [0.5, 0.5, 0.5],
  interpolation: "bicubic",
  cropPct: 0.9,
};
const DINOV2: Omit<Preprocessing, "inputSize"> = {
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
  interpolation: "bicubic",
  cropPct: 1,
};

function registered(fields: Partial<VitConfig>, data: Omit<Preprocessing, "inputSize">) {
  const config = resolveVitConfig(fields);
  return {
    config,
    preprocessing: { ...data, inputSize: [3, config.imgSize, config.imgSize] } as Preprocessing,
  };
}

/**
 * Registered ViTs by timm name, with the data config of timm's default pretrained tag (augreg in21k→in1k:
 * mean = std = 0.5, bicubic, crop 0.9, 1.0 at 384 px; DINOv2 lvd142m: ImageNet mean/std, 518 px, crop 1.0, no head).
 * `vit_tiny_synth` is CARROT's own: the 64 px, patch-8 ViT pretrained on SynthBirds' "pretrain" classes by
 * `deno task pretrain-synth` (weights and card in `data/weights/`), no head, mean = std = 0.5, crop 1.0; its
 * features are the class token (average pooling learnt the small parts far more slowly: the mean over 64 patch
 * tokens is dominated by the background).
 */
export const VIT_MODELS = {
  vit_tiny_patch16_224: registered({ embedDim: 192, numHeads: 3 }, AUGREG),
  vit_small_patch16_224: registered({ embedDim: 384, numHeads: 6 }, AUGREG),
  vit_base_patch16_224: registered({}, AUGREG),
  vit_large_patch16_224: registered({ embedDim: 1024, depth: 24, numHeads: 16 }, AUGREG),
  vit_base_patch32_224: registered({ patchSize: 32 }, AUGREG),
  vit_base_patch16_384: registered({ imgSize: 384 }, { ...AUGREG, cropPct: 1 }),
  vit_small_patch14_dinov2: registered(
    { patchSize: 14, imgSize: 518, embedDim: 384, numHeads: 6, initValues: 1e-5, numClasses: 0 },
    DINOV2,
  ),
  vit_base_patch14_dinov2: registered(
    { patchSize: 14, imgSize: 518, initValues: 1e-5, numClasses: 0 },
    DINOV2,
  ),
  vit_large_patch14_dinov2: registered(
    { patchSize: 14, imgSize: 518, embedDim: 1024, depth: 24, numHeads: 16, initValues: 1e-5, numClasses: 0 },
    DINOV2,
  ),
  vit_tiny_synth: registered(
    { imgSize: 64, patchSize: 8, embedDim: 128, depth: 4, numHeads: 4, numClasses: 0, globalPool: "token" },
    { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], interpolation: "bicubic", cropPct: 1 },
  ),
} as const;

// ── factory ─────────────────────────────────────────────────────────────────────────────────────────────────────

function vitParameters(c: VitConfig, t: ParameterSource): VitParameters {
  return {
    patchEmbed: t.patchEmbed("patch_embed.proj"),
    clsToken: c.classToken ? t.tensor("cls_token") : undefined,
    posEmbed: t.tensor("pos_embed"),
    blocks: Array.from({ length: c.depth }, (_, i) => ({
      norm1: t.layerNorm(`blocks.${i}.norm1`, EPS),
      attn: t.attention(`blocks.${i}.attn`, c.numHeads, c.qkvBias),
      ls1: c.initValues !== null ? t.tensor(`blocks.${i}.ls1.gamma`) : undefined,
      norm2: t.layerNorm(`blocks.${i}.norm2`, EPS),
      mlp: t.mlp(`blocks.${i}.mlp`),
      ls2: c.initValues !== null ? t.tensor(`blocks.${i}.ls2.gamma`) : undefined,
    })),
    norm: usesFcNorm(c) ? undefined : t.layerNorm("norm", EPS),
    fcNorm: usesFcNorm(c) ? t.layerNorm("fc_norm", EPS) : undefined,
    head: c.numClasses > 0 ? t.linear("head") : undefined,
  };
}

/** Bytes of the largest intermediate tensor per image (MLP hidden, attention scores, qkv or the input). */
function vitActivationBytes(c: VitConfig): number {
  const tokens = prefixTokens(c) + gridSize(c) ** 2;
  return 4 * Math.max(
    tokens * hiddenDim(c),
    c.numHeads * tokens * tokens,
    3 * tokens * c.embedDim,
    c.imgSize * c.imgSize * c.inChans,
  );
}

function createVit(c: VitConfig, t: ParameterTable, info: ModelInfo): Backbone<VitConfig> {
  const p = vitParameters(c, t);
  return makeBackbone({
    ...info,
    config: c,
    numFeatures: c.embedDim,
    imgSize: c.imgSize,
    inChans: c.inChans,
    features: (images) => vitFeatures(images, p, c),
    head: p.head,
    bytesPerImage: vitActivationBytes(c),
    tensors: t.owned,
  }, info.maxTensorBytes);
}

function forwardVit(c: VitConfig, t: ParameterSource, images: tf.Tensor4D): DifferentiableOutputs {
  const p = vitParameters(c, t);
  const features = vitFeatures(images, p, c);
  return { features, logits: p.head ? linear(features, p.head) : null };
}

/** The ViT as the registry sees it. */
export const VIT: Architecture<VitConfig> = {
  resolve: resolveVitConfig,
  parameterShapes: vitParameterShapes,
  filterCheckpoint: filterVitCheckpoint,
  create: createVit,
  forward: forwardVit,
  activationBytes: vitActivationBytes,
};
