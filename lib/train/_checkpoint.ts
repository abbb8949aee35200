/**
 * Fine-tuning checkpoints: two safetensors files per run folder, rewritten atomically after every epoch.
 * - `state.safetensors` — everything a resume needs, in one file: `param.<timm key>` (the weights),
 *   `optimizer.m.<timm key>` and `optimizer.v.<timm key>` (AdamW moments), `alpha` [n]; metadata `carrot` = JSON
 *   { epoch, step, checkpointId, identity, history }.
 * - `model.safetensors` — the weights alone under timm's key names (metadata `format: "pt"` as timm/HF write it, and
 *   `carrot` = JSON { epoch, checkpointId, config, preprocessing }), so `loadTimmModel(config, path)` with
 *   `strict: true` and timm's `load_state_dict` read it as it is.
 * The state is written first and a resume reads only the state, so an interrupted write can never pair the weights
 * of one epoch with the moments of another; a model file left behind by an interruption is rewritten on resume.
 */
import * as tf from "@tensorflow/tfjs";
import { existsSync } from "node:fs";
import { readSafetensors, type TensorData, writeSafetensors } from "../models/safetensors.ts";

/** The state at the end of an epoch, as read back. */
export interface RestoredState<Entry> {
  /** Epochs completed. */
  epoch: number;
  /** Optimiser updates taken. */
  step: number;
  /** Per-sample weights α for the next epoch. */
  alpha: Float32Array;
  /** Weights, and AdamW's moments, by timm key (float32 tensors on the current backend; the caller frees them). */
  params: Map<string, tf.Tensor>;
  m: Map<string, tf.Tensor>;
  v: Map<string, tf.Tensor>;
  /** Identifier shared with the model file written after this state. */
  checkpointId: string;
  /** Per-epoch records so far. */
  history: Entry[];
}

/** What is saved: tensors by timm key in a fixed order, and the JSON-serialisable rest. */
export interface SavedState<Entry> {
  epoch: number;
  step: number;
  alpha: Float32Array;
  params: ReadonlyMap<string, tf.Tensor>;
  m: ReadonlyMap<string, tf.Tensor>;
  v: ReadonlyMap<string, tf.Tensor>;
  identity: unknown;
  history: Entry[];
}

async function f32(t: tf.Tensor): Promise<TensorData> {
  return { dtype: "F32", shape: [...t.shape], values: (await t.data()) as Float32Array };
}

/** Writes the state, then the model file (see the module JSDoc). `modelMeta` goes into the model's metadata. */
export async function writeCheckpoint<Entry>(
  paths: { state: string; model: string },
  saved: SavedState<Entry>,
  modelMeta: Record<string, unknown>,
): Promise<void> {
  const checkpointId = crypto.randomUUID();
  const model = new Map<string, TensorData>();
  for (const [key, t] of saved.params) model.set(key, await f32(t));
  const state = new Map<string, TensorData>([["alpha", {
    dtype: "F32",
    shape: [saved.alpha.length],
    values: saved.alpha,
  }]]);
  for (const [key, data] of model) state.set(`param.${key}`, data);
  for (const [key, t] of saved.m) state.set(`optimizer.m.${key}`, await f32(t));
  for (const [key, t] of saved.v) state.set(`optimizer.v.${key}`, await f32(t));
  const { epoch, step, identity, history } = saved;
  await writeSafetensors(paths.state, state, {
    metadata: { carrot: JSON.stringify({ epoch, step, checkpointId, identity, history }) },
  });
  await writeModel(paths.model, model, { epoch, checkpointId, ...modelMeta });
}

function writeModel(path: string, model: Map<string, TensorData>, meta: unknown): Promise<void> {
  return writeSafetensors(path, model, { metadata: { format: "pt", carrot: JSON.stringify(meta) } });
}

/** The `carrot` metadata of a checkpoint file, or undefined when the file is absent. */
async function carrotMetadata(path: string): Promise<Record<string, unknown> | undefined> {
  if (!existsSync(path)) return undefined;
  const { metadata } = await readSafetensors(path, { names: [] });
  return metadata.carrot ? JSON.parse(metadata.carrot) : undefined;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** `path=saved (now current)` for every leaf (non-object value) where `saved` and `current` differ. */
function differences(saved: unknown, current: unknown, path: string): string[] {
  if (isRecord(saved) && isRecord(current)) {
    return [...new Set([...Object.keys(saved), ...Object.keys(current)])].flatMap((key) =>
      differences(saved[key], current[key], path ? `${path}.${key}` : key)
    );
  }
  return JSON.stringify(saved) === JSON.stringify(current)
    ? []
    : [`${path}=${JSON.stringify(saved)} (now ${JSON.stringify(current)})`];
}

/**
 * Reads the state of `paths.state` for the parameter keys `keys`, after checking that it was saved with
 * `identity` (else a `RangeError` naming the differing fields and the fix); rewrites `paths.model` from it when the
 * model file is missing or belongs to another checkpoint (an interrupted write), with `modelMeta`.
 */
export async function readCheckpoint<Entry>(
  paths: { state: string; model: string },
  keys: readonly string[],
  identity: Record<string, unknown>,
  modelMeta: Record<string, unknown>,
): Promise<RestoredState<Entry>> {
  const { metadata, tensors } = await readSafetensors(paths.state);
  const meta = metadata.carrot ? JSON.parse(metadata.carrot) : undefined;
  if (!meta?.identity) {
    throw new RangeError(
      `${paths.state} is not a CARROT fine-tuning state; resume needs the folder of a run`,
    );
  }
  const differing = differences(meta.identity, identity, "");
  if (differing.length) {
    throw new RangeError(
      `Cannot resume from ${paths.state}: it was trained with ${differing.join(", ")}; ` +
        `pass the same options to resume, or another output folder to start afresh`,
    );
  }
  const take = (prefix: string) =>
    new Map(keys.map((key) => {
      const t = tensors.get(prefix + key);
      if (!t) throw new RangeError(`${paths.state}: "${prefix}${key}" is missing; the file is damaged`);
      return [key, tf.tensor(t.values as Float32Array, t.shape, "float32")];
    }));
  const params = take("param."), m = take("optimizer.m."), v = take("optimizer.v.");
  if ((await carrotMetadata(paths.model))?.checkpointId !== meta.checkpointId) {
    const model = new Map(keys.map((key) => [key, tensors.get(`param.${key}`)!]));
    await writeModel(paths.model, model, {
      epoch: meta.epoch,
      checkpointId: meta.checkpointId,
      ...modelMeta,
    });
  }
  return {
    epoch: meta.epoch,
    step: meta.step,
    alpha: tensors.get("alpha")!.values as Float32Array,
    params,
    m,
    v,
    checkpointId: meta.checkpointId,
    history: meta.history,
  };
}
