/**
 * Backbones by timm name, timm model folder or config object, and `loadTimmModel`, the one entry point that turns
 * timm safetensors weights into a `Backbone` on the current tfjs backend. Names, key layouts, eps and
 * preprocessing: `../shared/FORMATS.md`.
 *
 * @example
 * ```ts
 * const model = await loadTimmModel("vit_base_patch16_224", "model.safetensors");
 * const h = model.forwardFeatures(images); // [B, 768]; images [B, 224, 224, 3] normalised per model.preprocessing
 * const tuned = await loadTimmModel("path/to/folder"); // config.json + model.safetensors, as on the Hugging Face hub
 * ```
 */
import type * as tf from "@tensorflow/tfjs";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Backbone, DifferentiableOutputs, LoadReport, Preprocessing } from "./backbone.ts";
import { LiveParameters } from "./_layers.ts";
import { type Architecture, loadArchitecture, loadParameters, mergeTimmArguments } from "./_timm.ts";
import type { TensorData } from "./safetensors.ts";
import { SWIN, SWIN_MODELS, type SwinConfig } from "./swin.ts";
import { VIT, VIT_MODELS, type VitConfig } from "./vit.ts";
import { Random } from "../random.ts";
import { InputTypeError } from "../errors.ts";

/** A backbone architecture config: `architecture` selects the model, the rest are timm's constructor arguments. */
export type TimmConfig = VitConfig | SwinConfig;

/**
 * A config as users write it: `architecture` plus any of timm's constructor arguments; the rest are defaults.
 * Objects read from JSON may also spell the arguments in snake_case and carry timm's training-only arguments
 * (`drop_path_rate`, …), which are ignored (`VIT_EXTRA_ARGUMENTS`, `SWIN_EXTRA_ARGUMENTS`).
 */
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

/** What `resolveTimmConfig` resolves a model to. */
export interface ResolvedTimmModel {
  /** Registered name (a folder's `architecture`), or "custom" for config objects. */
  name: string;
  /** The validated architecture config. */
  config: TimmConfig;
  /** timm's data config. */
  preprocessing: Preprocessing;
  /** A timm model folder's `model.safetensors` (absent for names and config objects). */
  weightsPath?: string;
}

const isDirectory = (path: string) => statSync(path, { throwIfNoEntry: false })?.isDirectory() ?? false;

/**
 * Resolves a registered name, a timm model folder (`readTimmHubFolder`; a registered name wins over a folder of
 * the same name: write `./name`) or a config object (plus overrides) to a validated config, its name ("custom" for
 * objects) and data config. Throws a `RangeError` listing the registered names for an unknown name.
 */
export function resolveTimmConfig(
  nameOrConfig: string | TimmConfigInput,
  options: Pick<LoadTimmModelOptions, "overrides" | "preprocessing"> = {},
): ResolvedTimmModel {
  let name = "custom", base: TimmConfigInput, data: Omit<Preprocessing, "inputSize"> = DEFAULT_DATA;
  if (typeof nameOrConfig === "string") {
    const entry = TIMM_MODELS[nameOrConfig];
    if (!entry && isDirectory(nameOrConfig)) return readTimmHubFolder(nameOrConfig, options);
    if (!entry) {
      throw new RangeError(
        `Unknown model "${nameOrConfig}"; registered: ${Object.keys(TIMM_MODELS).join(", ")} ` +
          `(or pass a timm model folder with config.json and model.safetensors, or a config object with an ` +
          `"architecture" field)`,
      );
    }
    [name, base, data] = [nameOrConfig, entry.config, entry.preprocessing];
  } else {
    base = nameOrConfig;
  }
  const arch = ARCHITECTURES[base.architecture] as Architecture<TimmConfig> | undefined;
  if (!arch) {
    throw new InputTypeError(
      `Unknown architecture ${JSON.stringify(base.architecture)}; use "vit" or "swin"` +
        (base.architecture in TIMM_MODELS
          ? ` (a timm model folder's config.json: pass the folder instead)`
          : ""),
    );
  }
  const config = arch.resolve(mergeTimmArguments(base, options.overrides ?? {}));
  const preprocessing: Preprocessing = {
    ...DEFAULT_DATA,
    ...data,
    ...options.preprocessing,
    inputSize: [config.inChans, config.imgSize, config.imgSize],
  };
  return { name, config, preprocessing };
}

/** A timm model folder read by `readTimmHubFolder`. */
export interface TimmHubModel extends ResolvedTimmModel {
  /** `<folder>/model.safetensors` (not checked for existence: other weights may be loaded into the config). */
  weightsPath: string;
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const isCount = (v: unknown) => Number.isInteger(v) && (v as number) > 0;

/**
 * Reads a timm model folder — `config.json` + `model.safetensors`, as timm's `save_for_hf` writes it and every
 * timm model on the Hugging Face hub holds it — the way timm's `create_model("local-dir:<folder>")` does
 * (`_hub.py` `load_model_config_from_path`, `_builder.py` `_update_default_model_kwargs`). The registered
 * `architecture` is the base; on top come, each winning over the next: `options.overrides`, `model_args`, then
 * `num_classes` (top level, else `pretrained_cfg.num_classes`, else 1000; ignored when negative; 0 = no head),
 * `in_chans` = `input_size[0]` and, where `pretrained_cfg.fixed_input_size`, `img_size` = `input_size[1:]`. The
 * data config is `pretrained_cfg`'s mean, std, interpolation and crop_pct (timm's global defaults where absent),
 * then `options.preprocessing`; `input_size` must fit the model that `config.json` describes. The top-level
 * `num_features` and `global_pool` are informational, as in timm. Throws a `RangeError` (missing file, unknown
 * architecture, unsupported value) or `TypeError` (malformed JSON, wrong type) naming `config.json` and the fix.
 */
export function readTimmHubFolder(
  folder: string,
  options: Pick<LoadTimmModelOptions, "overrides" | "preprocessing"> = {},
): TimmHubModel {
  const path = join(folder, "config.json");
  if (!existsSync(path)) {
    throw new RangeError(
      `${path}: not found; a timm model folder holds config.json and model.safetensors (download both from the ` +
        `model's Hugging Face page, or write them with timm's save_for_hf)`,
    );
  }
  let hub: unknown;
  try {
    hub = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new InputTypeError(`${path}: malformed JSON (${(e as Error).message}); download config.json again`);
  }
  const fail = (field: string, wanted: string, got: unknown): never => {
    throw new InputTypeError(`${path}: "${field}" must be ${wanted}, got ${JSON.stringify(got)}`);
  };
  if (!isObject(hub)) return fail("(top level)", "an object", hub);
  // timm's legacy single-dict form has no "pretrained_cfg": the whole object is the data config
  const cfg = "pretrained_cfg" in hub ? hub.pretrained_cfg : hub;
  if (!isObject(cfg)) return fail("pretrained_cfg", "an object", cfg);
  const modelArgs = hub.model_args ?? {};
  if (!isObject(modelArgs)) return fail("model_args", "an object", modelArgs);
  if (typeof hub.architecture !== "string") {
    return fail("architecture", "a timm model name", hub.architecture);
  }
  const name = hub.architecture.split(".")[0]; // timm drops a ".tag" suffix too
  if (!TIMM_MODELS[name]) {
    throw new RangeError(
      `${path}: "architecture" ${JSON.stringify(hub.architecture)} is not a registered model; registered: ` +
        Object.keys(TIMM_MODELS).join(", "),
    );
  }
  const numClasses = hub.num_classes ?? cfg.num_classes ?? 1000;
  if (typeof numClasses !== "number" || !Number.isInteger(numClasses)) {
    return fail("num_classes", "an integer", numClasses);
  }
  const inputSize = cfg.input_size;
  if (
    inputSize !== undefined &&
    !(Array.isArray(inputSize) && inputSize.length === 3 && inputSize.every(isCount))
  ) {
    return fail("pretrained_cfg.input_size", "[channels, height, width]", inputSize);
  }
  const data: Partial<Omit<Preprocessing, "inputSize">> = {};
  for (const key of ["mean", "std"] as const) {
    const value = cfg[key];
    if (value === undefined) continue;
    if (!(Array.isArray(value) && value.length === 3 && value.every((v) => typeof v === "number"))) {
      return fail(`pretrained_cfg.${key}`, "3 numbers", value);
    }
    data[key] = value as Preprocessing["mean"];
  }
  if (cfg.crop_pct !== undefined) {
    if (!(typeof cfg.crop_pct === "number" && cfg.crop_pct > 0)) {
      return fail("pretrained_cfg.crop_pct", "a positive number", cfg.crop_pct);
    }
    data.cropPct = cfg.crop_pct;
  }
  if (cfg.interpolation !== undefined) {
    if (cfg.interpolation !== "bicubic" && cfg.interpolation !== "bilinear") {
      throw new RangeError(
        `${path}: "pretrained_cfg.interpolation" ${JSON.stringify(cfg.interpolation)} is not supported; ` +
          `use "bicubic" or "bilinear"`,
      );
    }
    data.interpolation = cfg.interpolation;
  }
  if (cfg.crop_mode !== undefined && cfg.crop_mode !== "center") {
    throw new RangeError(
      `${path}: "pretrained_cfg.crop_mode" ${JSON.stringify(cfg.crop_mode)} is not supported; ` +
        `only "center" (resize the shorter side, centre-crop) is`,
    );
  }
  const derived: Json = numClasses >= 0 ? { num_classes: numClasses } : {};
  if (inputSize) {
    derived.in_chans = inputSize[0];
    if (cfg.fixed_input_size === true) derived.img_size = inputSize.slice(1);
  }
  const resolve = (overrides: Json) => {
    try {
      return resolveTimmConfig(name, {
        overrides,
        preprocessing: { ...DEFAULT_DATA, ...data, ...options.preprocessing },
      });
    } catch (e) {
      if (e instanceof RangeError) throw new RangeError(`${path}: ${e.message}`);
      if (e instanceof TypeError) throw new InputTypeError(`${path}: ${e.message}`);
      throw e;
    }
  };
  const own = resolve(mergeTimmArguments(derived, modelArgs));
  const size = own.preprocessing.inputSize;
  if (inputSize && !inputSize.every((v, i) => v === size[i])) {
    throw new RangeError(
      `${path}: "pretrained_cfg.input_size" ${JSON.stringify(inputSize)} does not fit the model, which ` +
        `takes ${JSON.stringify(size)}; make img_size in "model_args" and input_size agree`,
    );
  }
  const resolved = options.overrides
    ? resolve(mergeTimmArguments(derived, modelArgs, options.overrides))
    : own;
  return { ...resolved, weightsPath: join(folder, "model.safetensors") };
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

/** `weights`, else a folder's `model.safetensors`, which must exist. */
function weightsOf(
  weights: string | ReadonlyMap<string, TensorData> | undefined,
  weightsPath: string | undefined,
): string | ReadonlyMap<string, TensorData> {
  if (weights !== undefined) return weights;
  if (weightsPath === undefined) {
    throw new InputTypeError("loadTimmModel: weights are required for a registered name or a config object");
  }
  if (!existsSync(weightsPath)) {
    throw new RangeError(
      `${weightsPath}: not found; download model.safetensors from the model's Hugging Face page into the folder ` +
        `(or pass the weights path)`,
    );
  }
  return weightsPath;
}

/**
 * The parameters `loadTimmModel` would build, left in timm's layout (for training with `timmForward`): the same
 * resolution, key mapping, checks and errors, without constructing a backbone.
 */
export async function loadTimmParameters(
  nameOrConfig: string | TimmConfigInput,
  weights?: string | ReadonlyMap<string, TensorData>,
  options: Pick<LoadTimmModelOptions, "strict" | "overrides" | "preprocessing"> = {},
): Promise<TimmParameters> {
  const { name, config, preprocessing, weightsPath } = resolveTimmConfig(nameOrConfig, options);
  const loaded = await loadParameters(architectureOf(config), config, weightsOf(weights, weightsPath), {
    strict: options.strict ?? true,
  });
  const order = [...timmParameterShapes(loaded.config).keys()];
  const tensors = new Map(order.map((key) => [key, loaded.tensors.get(key)!]));
  return { ...loaded, name, preprocessing, tensors };
}

/**
 * Loads timm weights into a backbone on the current tfjs backend. `nameOrConfig` is a registered timm name, a timm
 * model folder (`config.json` + `model.safetensors`, read by `readTimmHubFolder`: the model gets the folder's own
 * config and preprocessing) or a config object with timm's constructor arguments and an `architecture` field
 * (`{ architecture: "vit", imgSize: 32, patchSize: 4, embedDim: 64, depth: 2, numHeads: 4, numClasses: 5 }`).
 * `weights` is a `.safetensors` path (read in one streaming pass that also yields `weightsSha256`) or in-memory
 * tensors; it defaults to a folder's `model.safetensors` and is required otherwise. Every key is mapped by the architecture's `filter…Checkpoint` (old Swin layouts, position-embedding
 * resampling) and checked: missing or unexpected keys throw a `TypeError` listing them (see `strict`), a shape
 * mismatch throws `Cannot load "blocks.3.attn.qkv.weight": expected [2304, 768], got [768, 2304]`.
 */
export async function loadTimmModel(
  nameOrConfig: string | TimmConfigInput,
  weights?: string | ReadonlyMap<string, TensorData>,
  options: LoadTimmModelOptions = {},
): Promise<Backbone<TimmConfig>> {
  const { name, config, preprocessing, weightsPath } = resolveTimmConfig(nameOrConfig, options);
  const load = {
    strict: options.strict ?? true,
    name,
    preprocessing,
    maxTensorBytes: options.maxTensorBytes ?? 64 * 2 ** 20,
  };
  return await loadArchitecture(architectureOf(config), config, weightsOf(weights, weightsPath), load);
}
