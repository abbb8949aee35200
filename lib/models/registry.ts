/**
 * Backbones by timm name, and `loadTimmModel`, the one entry point that turns timm safetensors weights into a
 * `Backbone` on the current tfjs backend. Names, key layouts, eps and preprocessing: `../shared/FORMATS.md`.
 *
 * @example
 * ```ts
 * const model = await loadTimmModel("vit_base_patch16_224", "model.safetensors");
 * const h = model.forwardFeatures(images); // [B, 768]; images [B, 224, 224, 3] normalised per model.preprocessing
 * ```
 */
import type * as tf from "@tensorflow/tfjs";
import type { Backbone, DifferentiableOutputs, LoadReport, Preprocessing } from "./backbone.ts";
import { LiveParameters } from "./_layers.ts";
import { type Architecture, loadArchitecture, loadParameters } from "./_timm.ts";
import type { TensorData } from "./safetensors.ts";
import { SWIN, SWIN_MODELS, type SwinConfig } from "./swin.ts";
import { VIT, VIT_MODELS, type VitConfig } from "./vit.ts";
import { Random } from "../random.ts";

/** A backbone architecture config: `architecture` selects the model, the rest are timm's constructor arguments. */
export type TimmConfig = VitConfig | SwinConfig;

/** A config as users write it: `architecture` plus any of timm's constructor arguments; the rest are defaults. */
export type TimmConfigInput =
  | (Partial<VitConfig> & { architecture: "vit" })
  | (Partial<SwinConfig> & { architecture: "swin" });

/** A registered model: its architecture config and timm's data config for its default pretrained weights. */
export interface RegisteredModel {
  /** Architecture config, as timm constructs the model. */
  config: TimmConfig;
  /** timm's data config of the default pretrained tag. */
  preprocessing: Preprocessing;
}

/** Every registered model by timm name (`vit_base_patch16_224`, `swin_base_patch4_window7_224`, …). */
export const TIMM_MODELS: Readonly<Record<string, RegisteredModel>> = { ...VIT_MODELS, ...SWIN_MODELS };

const ARCHITECTURES = { vit: VIT, swin: SWIN } as const;

/** timm's global defaults (`timm/data/constants.py`) for configs that are not registered. */
const DEFAULT_DATA: Omit<Preprocessing, "inputSize"> = {
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
  interpolation: "bicubic",
  cropPct: 0.875,
};

/** Options of `loadTimmModel`. */
export interface LoadTimmModelOptions {
  /**
   * Every checkpoint key must be used and every model key present (default true). With false, unexpected keys are
   * ignored (listed in `report.unexpected`) and a missing head is dropped (`forward` returns null).
   */
  strict?: boolean;
  /** Changes to the named config, e.g. `{ imgSize: 224 }` (the position embedding is resampled) or `{ numClasses: 0 }`. */
  overrides?: Partial<Omit<VitConfig, "architecture">> | Partial<Omit<SwinConfig, "architecture">>;
  /** Changes to the data config (e.g. the mean/std of a fine-tuned checkpoint). */
  preprocessing?: Partial<Omit<Preprocessing, "inputSize">>;
  /** Largest intermediate tensor per forward chunk; batches are split to stay below it (default 64 MiB). */
  maxTensorBytes?: number;
}

/**
 * Resolves a registered name or a config object (plus overrides) to a validated config, its name ("custom" for
 * objects) and data config. Throws a `RangeError` listing the registered names for an unknown name.
 */
export function resolveTimmConfig(
  nameOrConfig: string | TimmConfigInput,
  options: Pick<LoadTimmModelOptions, "overrides" | "preprocessing"> = {},
): { name: string; config: TimmConfig; preprocessing: Preprocessing } {
  let name = "custom", base: TimmConfigInput, data: Omit<Preprocessing, "inputSize"> = DEFAULT_DATA;
  if (typeof nameOrConfig === "string") {
    const entry = TIMM_MODELS[nameOrConfig];
    if (!entry) {
      throw new RangeError(
        `Unknown model "${nameOrConfig}"; registered: ${Object.keys(TIMM_MODELS).join(", ")} ` +
          `(or pass a config object with an "architecture" field)`,
      );
    }
    [name, base, data] = [nameOrConfig, entry.config, entry.preprocessing];
  } else {
    base = nameOrConfig;
  }
  const arch = ARCHITECTURES[base.architecture] as Architecture<TimmConfig> | undefined;
  if (!arch) {
    throw new TypeError(`Unknown architecture ${JSON.stringify(base.architecture)}; use "vit" or "swin"`);
  }
  const config = arch.resolve({ ...base, ...options.overrides });
  const preprocessing: Preprocessing = {
    ...DEFAULT_DATA,
    ...data,
    ...options.preprocessing,
    inputSize: [config.inChans, config.imgSize, config.imgSize],
  };
  return { name, config, preprocessing };
}

const architectureOf = (config: TimmConfig) => ARCHITECTURES[config.architecture] as Architecture<TimmConfig>;

/** Every parameter key of `config` with its shape, in timm's layout and order (nothing is allocated). */
export function timmParameterShapes(config: TimmConfig): Map<string, number[]> {
  return architectureOf(config).parameterShapes(config);
}

/** Bytes of the largest intermediate tensor of one image's forward pass under `config` (float32). */
export function timmActivationBytes(config: TimmConfig): number {
  return architectureOf(config).activationBytes(config);
}

/**
 * The forward pass of `config` computed directly from timm-layout tensors `params` (timm key → tensor in timm's
 * shape, typically `tf.Variable`s being trained): h = pooled pre-logits [B, D] and z = W h + b [B, K] (null without
 * a head), exactly what `loadTimmModel(config, params).forward…` computes, but with every layout change (the
 * transposed linear weights, the patch-embedding matrix, Swin's bias tables) recomputed inside the caller's scope,
 * so that `tf.grads`/`tf.variableGrads` around it differentiate with respect to `params`. No batch splitting: keep
 * B · `timmActivationBytes(config)` under the backend's tensor limit. Intermediate tensors are freed as soon as the
 * next block exists unless a gradient tape keeps them; call inside `tf.tidy`.
 */
export function timmForward(
  config: TimmConfig,
  params: ReadonlyMap<string, tf.Tensor>,
  images: tf.Tensor4D,
): DifferentiableOutputs {
  const [, h, w, c] = images.shape;
  if (images.rank !== 4 || h !== config.imgSize || w !== config.imgSize || c !== config.inChans) {
    throw new RangeError(
      `timmForward: expected images [B, ${config.imgSize}, ${config.imgSize}, ${config.inChans}] (NHWC, ` +
        `normalised), got [${images.shape.join(", ")}]`,
    );
  }
  return architectureOf(config).forward(config, new LiveParameters(params), images);
}

/**
 * Random weights for `config` in timm's layout, for benchmarks and tests: weight matrices, tokens and bias tables
 * N(0, 0.02²) (timm's `trunc_normal_(std=.02)` without the truncation), LayerNorm gains and layer scales 1,
 * biases 0. Deterministic in `seed`.
 */
export function randomTimmWeights(config: TimmConfig, seed = 0): Map<string, TensorData> {
  const rng = new Random(seed);
  const weights = new Map<string, TensorData>();
  for (const [key, shape] of timmParameterShapes(config)) {
    const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (key.endsWith(".bias")) {
      // zeros
    } else if (shape.length === 1) {
      values.fill(1); // LayerNorm gains, layer-scale gammas
    } else {
      for (let i = 0; i < values.length; i++) values[i] = 0.02 * rng.normal();
    }
    weights.set(key, { dtype: "F32", shape, values });
  }
  return weights;
}

/** `loadTimmParameters`' result: the resolved config and data config with the checked timm-layout tensors. */
export interface TimmParameters {
  /** Registered name, or "custom". */
  name: string;
  /** The config the tensors fit (numClasses 0 when a missing head was dropped with `strict: false`). */
  config: TimmConfig;
  /** timm's data config. */
  preprocessing: Preprocessing;
  /** timm key → float32 tensor in timm's shape on the current backend, in timm's order; owned by the caller. */
  tensors: Map<string, tf.Tensor>;
  /** Hex SHA-256 of the weights file (or of the in-memory tensors). */
  weightsSha256: string;
  /** What loading did to the checkpoint's keys. */
  report: LoadReport;
}

/**
 * The parameters `loadTimmModel` would build, left in timm's layout (for training with `timmForward`): the same
 * resolution, key mapping, checks and errors, without constructing a backbone.
 */
export async function loadTimmParameters(
  nameOrConfig: string | TimmConfigInput,
  weights: string | ReadonlyMap<string, TensorData>,
  options: Pick<LoadTimmModelOptions, "strict" | "overrides" | "preprocessing"> = {},
): Promise<TimmParameters> {
  const { name, config, preprocessing } = resolveTimmConfig(nameOrConfig, options);
  const loaded = await loadParameters(architectureOf(config), config, weights, {
    strict: options.strict ?? true,
  });
  const order = [...timmParameterShapes(loaded.config).keys()];
  const tensors = new Map(order.map((key) => [key, loaded.tensors.get(key)!]));
  return { ...loaded, name, preprocessing, tensors };
}

/**
 * Loads timm weights into a backbone on the current tfjs backend. `nameOrConfig` is a registered timm name or a
 * config object with timm's constructor arguments in camelCase and an `architecture` field
 * (`{ architecture: "vit", imgSize: 32, patchSize: 4, embedDim: 64, depth: 2, numHeads: 4, numClasses: 5 }`).
 * `weights` is a `.safetensors` path (read in one streaming pass that also yields `weightsSha256`) or in-memory
 * tensors. Every key is mapped by the architecture's `filter…Checkpoint` (old Swin layouts, position-embedding
 * resampling) and checked: missing or unexpected keys throw a `TypeError` listing them (see `strict`), a shape
 * mismatch throws `Cannot load "blocks.3.attn.qkv.weight": expected [2304, 768], got [768, 2304]`.
 */
export function loadTimmModel(
  nameOrConfig: string | TimmConfigInput,
  weights: string | ReadonlyMap<string, TensorData>,
  options: LoadTimmModelOptions = {},
): Promise<Backbone<TimmConfig>> {
  const { name, config, preprocessing } = resolveTimmConfig(nameOrConfig, options);
  const load = {
    strict: options.strict ?? true,
    name,
    preprocessing,
    maxTensorBytes: options.maxTensorBytes ?? 64 * 2 ** 20,
  };
  return loadArchitecture(architectureOf(config), config, weights, load);
}
