/**
 * Glue between timm checkpoints and the architectures: the checkpoint plan that each `filter…Checkpoint` returns,
 * config validation, and the one-pass weight reader that checks every key and shape before any tensor is built.
 */
import * as tf from "@tensorflow/tfjs";
import { createHash } from "node:crypto";
import type {
  Backbone,
  CheckpointPlan,
  DifferentiableOutputs,
  LoadReport,
  Preprocessing,
} from "./backbone.ts";
import { type ParameterSource, ParameterTable } from "./_layers.ts";
import { type SafetensorsDtype, streamSafetensors, type TensorData } from "./safetensors.ts";
import { InputTypeError } from "../errors.ts";

/** Starts a plan that maps every checkpoint key to itself; filters then rename, drop or transform entries. */
export function identityPlan(checkpoint: ReadonlyMap<string, number[]>): CheckpointPlan {
  const tensors = new Map([...checkpoint].map(([key, shape]) => [key, { source: key, shape }]));
  return { tensors, renamed: [], ignored: [], resampled: [] };
}

/** What an architecture module provides to the registry. */
export interface Architecture<Config> {
  /** Fills timm's constructor defaults into `input` and validates it (TypeError/RangeError naming the field). */
  resolve(input: Record<string, unknown>): Config;
  /** Every parameter key of `config` in timm's layout with its shape, in timm's order. */
  parameterShapes(config: Config): Map<string, number[]>;
  /** Maps checkpoint keys (with shapes) onto `config`'s keys: the one place where keys are renamed or reshaped. */
  filterCheckpoint(checkpoint: ReadonlyMap<string, number[]>, config: Config): CheckpointPlan;
  /** Builds the backbone from loaded parameters. */
  create(config: Config, params: ParameterTable, info: ModelInfo): Backbone<Config>;
  /** The same forward pass from `params` without batch splitting, differentiable in the timm-layout tensors. */
  forward(config: Config, params: ParameterSource, images: tf.Tensor4D): DifferentiableOutputs;
  /** Bytes of the largest intermediate tensor per image (batches are split so that none exceeds a limit). */
  activationBytes(config: Config): number;
}

/** Provenance handed to `Architecture.create`. */
export interface ModelInfo {
  name: string;
  preprocessing: Preprocessing;
  weightsSha256: string;
  report: LoadReport;
  maxTensorBytes: number;
}

/**
 * timm constructor arguments that a config has no field for, in camelCase (inputs may spell every argument in
 * snake_case, as timm and `config.json`'s `model_args` do).
 */
export interface ExtraTimmArguments {
  /** Arguments that never change the eval-mode forward pass (dropout, stochastic depth, initialisation): ignored. */
  ignored: readonly string[];
  /** Arguments that change it, implemented only at timm's default given here: any other value is refused. */
  fixed: Readonly<Record<string, unknown>>;
}

const camelCase = (name: string) => name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/**
 * Merges timm constructor arguments: a later object wins, also over another spelling of the same argument
 * (`img_size` and `imgSize` are one argument); the winner keeps its spelling, for error messages.
 */
export function mergeTimmArguments(...inputs: Readonly<Record<string, unknown>>[]): Record<string, unknown> {
  const merged = new Map<string, [string, unknown]>();
  for (const input of inputs) {
    for (const [name, value] of Object.entries(input)) merged.set(camelCase(name), [name, value]);
  }
  return Object.fromEntries(merged.values());
}

/**
 * `{ ...defaults, ...input }` after reading `input` as timm's constructor arguments: names in snake_case or
 * camelCase (a later spelling wins), `extra.ignored` dropped, `extra.fixed` checked against timm's default (a
 * `RangeError` naming the argument and value otherwise), a uniform list such as `img_size: [224, 224]` read as its
 * one value; every remaining field must exist in `defaults` and have its default's type (integers where the default
 * is an integer), else a `TypeError` naming the field.
 */
export function withDefaults<Config extends object>(
  defaults: Config,
  input: Record<string, unknown>,
  what: string,
  extra: ExtraTimmArguments,
): Config {
  const fields: Record<string, unknown> = {};
  for (const [name, given] of Object.entries(input)) {
    const field = camelCase(name), shown = `"${name}" = ${JSON.stringify(given)}`;
    if (extra.ignored.includes(field)) continue;
    if (field in extra.fixed) {
      const supported = JSON.stringify(extra.fixed[field]);
      if (JSON.stringify(given) !== supported) {
        throw new RangeError(
          `${what}: ${shown} changes the forward pass and is not implemented; ` +
            `only ${supported} (timm's default) is supported`,
        );
      }
      continue;
    }
    if (!(field in defaults)) {
      throw new InputTypeError(
        `${what}: unknown field ${shown}; known fields (timm's constructor arguments in camelCase or ` +
          `snake_case): ${Object.keys(defaults).join(", ")}`,
      );
    }
    const reference = (defaults as Record<string, unknown>)[field];
    let value = given;
    if (typeof reference === "number" && Array.isArray(given) && given.length > 0) {
      if (!given.every((v) => v === given[0])) {
        throw new RangeError(`${what}: ${shown} is not supported; only square sizes (equal entries) are`);
      }
      value = given[0];
    }
    const ok = reference === null
      ? value === null || typeof value === "number" || typeof value === "boolean"
      : Array.isArray(reference)
      ? Array.isArray(value) && value.every((v) => Number.isInteger(v) && v > 0)
      : typeof value === typeof reference &&
        (typeof value !== "number" || !Number.isInteger(reference) || Number.isInteger(value));
    if (!ok) {
      throw new InputTypeError(`${what}: field ${shown} has the wrong type`);
    }
    fields[field] = value;
  }
  return { ...defaults, ...fields } as Config;
}

/** Throws a `RangeError` "`what`: `field` must be …, got …" unless `ok`. */
export function requireThat(ok: boolean, what: string, message: string): void {
  if (!ok) throw new RangeError(`${what}: ${message}`);
}

const shapeText = (shape: readonly number[]) => `[${shape.join(", ")}]`;
const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((d, i) => d === b[i]);

function listKeys(keys: string[]): string {
  return keys.length <= 8 ? keys.join(", ") : `${keys.slice(0, 8).join(", ")} and ${keys.length - 8} more`;
}

/** What `checkPlan` decided: which model keys to read from which checkpoint keys. */
interface CheckedPlan {
  plan: CheckpointPlan;
  unexpected: string[];
  /** True when a missing head was dropped (non-strict): the model is built without one. */
  headDropped: boolean;
}

/**
 * Compares a plan with the parameter shapes of `config`. Strict: any missing or unexpected key throws a
 * `TypeError` listing them. Non-strict: unexpected keys are ignored and a missing head is dropped; any other
 * missing key still throws. A shape mismatch throws `Cannot load "<key>": expected [..], got [..]`.
 */
function checkPlan<Config extends { numClasses: number }>(
  arch: Architecture<Config>,
  config: Config,
  checkpoint: ReadonlyMap<string, number[]>,
  strict: boolean,
  source: string,
): CheckedPlan & { config: Config } {
  const plan = arch.filterCheckpoint(checkpoint, config);
  let expected = arch.parameterShapes(config);
  let missing = [...expected.keys()].filter((k) => !plan.tensors.has(k));
  let headDropped = false;
  if (!strict && missing.length && config.numClasses > 0) {
    const headless = { ...config, numClasses: 0 };
    const withoutHead = arch.parameterShapes(headless);
    if (missing.every((k) => !withoutHead.has(k))) {
      [config, expected, missing, headDropped] = [headless, withoutHead, [], true];
    }
  }
  const unexpected = [...plan.tensors.keys()].filter((k) => !expected.has(k));
  if (missing.length || (strict && unexpected.length)) {
    throw new InputTypeError(
      `${source}: the checkpoint does not fit the config: ` +
        [
          missing.length ? `missing keys: ${listKeys(missing)}` : "",
          strict && unexpected.length ? `unexpected keys: ${listKeys(unexpected)}` : "",
        ].filter(Boolean).join("; ") +
        ". Check the config (numClasses, globalPool, depth, …) against the checkpoint" +
        (strict ? ", or pass { strict: false } to ignore unexpected keys and drop a missing head" : ""),
    );
  }
  for (const [key, shape] of expected) {
    const got = plan.tensors.get(key)!.shape;
    if (!sameShape(got, shape)) {
      throw new RangeError(
        `Cannot load "${key}": expected ${shapeText(shape)}, got ${shapeText(got)} (${source})`,
      );
    }
  }
  for (const key of unexpected) plan.tensors.delete(key);
  return { plan, unexpected, headDropped, config };
}

function toFloat32(key: string, data: TensorData, source: string): Float32Array {
  if (data.values instanceof Float32Array) return data.values;
  if (data.values instanceof Float64Array) return Float32Array.from(data.values);
  throw new InputTypeError(`Cannot load "${key}": dtype ${data.dtype} is not floating point (${source})`);
}

/** SHA-256 over name, dtype, shape and bytes of every tensor in name order: the identity of in-memory weights. */
function hashTensors(weights: ReadonlyMap<string, TensorData>): string {
  const hash = createHash("sha256");
  for (const name of [...weights.keys()].sort()) {
    const t = weights.get(name)!;
    hash.update(`${name}\0${t.dtype}\0${t.shape.join(",")}\0`);
    hash.update(new Uint8Array(t.values.buffer, t.values.byteOffset, t.values.byteLength));
  }
  return hash.digest("hex");
}

/** Checked timm-layout tensors of a config, before any architecture rearranges them. */
export interface LoadedParameters<Config> {
  /** The config the tensors fit (numClasses 0 when a missing head was dropped). */
  config: Config;
  /** timm key → float32 tensor in timm's shape, on the current backend; owned by the caller. */
  tensors: Map<string, tf.Tensor>;
  /** Hex SHA-256 of the file, or of the in-memory tensors. */
  weightsSha256: string;
  /** What loading did to the checkpoint's keys. */
  report: LoadReport;
}

/**
 * Reads `weights` (a safetensors path, streamed in one pass that also hashes the file, or in-memory tensors) for
 * `config`: plan, check every key and shape before reading any data, then build float32 tensors in timm layout on
 * the current tfjs backend. Frees everything already built when anything throws.
 */
export async function loadParameters<Config extends { numClasses: number }>(
  arch: Architecture<Config>,
  config: Config,
  weights: string | ReadonlyMap<string, TensorData>,
  options: { strict: boolean },
): Promise<LoadedParameters<Config>> {
  const source = typeof weights === "string" ? weights : "(memory)";
  const built = new Map<string, tf.Tensor>();
  let checked: (CheckedPlan & { config: Config }) | undefined;
  const bySource = new Map<string, string>();
  const select = (shapes: ReadonlyMap<string, { shape: number[]; dtype: SafetensorsDtype }>) => {
    const checkpoint = new Map([...shapes].map(([k, e]) => [k, e.shape]));
    checked = checkPlan(arch, config, checkpoint, options.strict, source);
    for (const [key, planned] of checked.plan.tensors) bySource.set(planned.source, key);
    return bySource.keys();
  };
  const onTensor = (name: string, data: TensorData) => {
    const key = bySource.get(name)!;
    const planned = checked!.plan.tensors.get(key)!;
    const values = toFloat32(key, data, source);
    built.set(
      key,
      tf.tensor(planned.transform ? planned.transform(values) : values, planned.shape, "float32"),
    );
  };
  try {
    let sha256: string;
    if (typeof weights === "string") {
      const result = await streamSafetensors(weights, {
        select: (header) => select(header.entries),
        onTensor,
        sha256: true,
      });
      sha256 = result.sha256!;
    } else {
      for (const name of select(weights)) onTensor(name, weights.get(name)!);
      sha256 = hashTensors(weights);
    }
    const { plan, unexpected } = checked!;
    const report: LoadReport = {
      source,
      renamed: plan.renamed,
      ignored: plan.ignored,
      unexpected,
      resampled: plan.resampled,
    };
    return { config: checked!.config, tensors: built, weightsSha256: sha256, report };
  } catch (e) {
    tf.dispose([...built.values()]);
    throw e;
  }
}

/** `loadParameters`, then the architecture's backbone; frees everything built when anything throws. */
export async function loadArchitecture<Config extends { numClasses: number }>(
  arch: Architecture<Config>,
  config: Config,
  weights: string | ReadonlyMap<string, TensorData>,
  options: { strict: boolean; name: string; preprocessing: Preprocessing; maxTensorBytes: number },
): Promise<Backbone<Config>> {
  const loaded = await loadParameters(arch, config, weights, options);
  const table = new ParameterTable(loaded.tensors);
  try {
    return arch.create(loaded.config, table, {
      name: options.name,
      preprocessing: options.preprocessing,
      weightsSha256: loaded.weightsSha256,
      report: loaded.report,
      maxTensorBytes: options.maxTensorBytes,
    });
  } catch (e) {
    tf.dispose([...loaded.tensors.values(), ...table.owned]);
    throw e;
  }
}
