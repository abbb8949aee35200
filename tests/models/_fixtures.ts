/** Backbone fixtures of `../shared/fixtures` (README §2): configs from their manifests, raw arrays, backends. */
import * as tf from "@tensorflow/tfjs";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type BackendPreference, selectBackend } from "../../lib/backend.ts";
import type { TimmConfigInput } from "../../lib/models/registry.ts";
import { fixturePath } from "../_assert.ts";
import { availableBackends } from "../_problems.ts";

/** One backbone fixture: its folder, weights file, timm kwargs as a config, and array shapes. */
export interface BackboneFixture {
  dir: string;
  weights: string;
  config: TimmConfigInput;
  inputShape: [number, number, number, number];
  /** Name of the pooled-features array: `pre_logits` (ViT) or `pooled` (Swin). */
  pooled: string;
}

/** The fixture `name` (vit, vit_avgpool, swin), or undefined when `../shared/fixtures` is absent. */
export function backboneFixture(name: "vit" | "vit_avgpool" | "swin"): BackboneFixture | undefined {
  const dir = fixturePath(name);
  if (!dir) return undefined;
  const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
  const swin = name === "swin";
  const kwargs: Record<string, unknown> = manifest.timm_equivalent.kwargs; // timm's own, in snake_case
  return {
    dir,
    weights: join(dir, swin ? "swin_timm.safetensors" : "vit_timm.safetensors"),
    config: { ...kwargs, architecture: swin ? "swin" : "vit" } as TimmConfigInput,
    inputShape: manifest.arrays.inputs_nhwc.shape,
    pooled: swin ? "pooled" : "pre_logits",
  };
}

/** A raw little-endian array `<name>.bin` of a fixture folder as float64 values. */
export function readArray(dir: string, file: string): Float64Array {
  const bytes = readFileSync(join(dir, file));
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  if (file.endsWith("_f64.bin")) return new Float64Array(buffer);
  if (file.endsWith("_i32.bin")) return Float64Array.from(new Int32Array(buffer));
  return Float64Array.from(new Float32Array(buffer));
}

/** The fixture's NHWC inputs as a tensor. */
export function fixtureInputs(f: BackboneFixture): tf.Tensor4D {
  return tf.tensor4d(Float32Array.from(readArray(f.dir, "inputs_nhwc_f32.bin")), f.inputShape);
}

/**
 * Runs `body` once per available backend (cpu, wasm, webgpu where an adapter exists), each selected with one WASM
 * thread, and restores the backend that was active before (other test files share this process).
 */
export async function forEachBackend(body: (backend: BackendPreference) => Promise<void>): Promise<void> {
  const previous = tf.engine().backendName;
  try {
    for (const backend of await availableBackends()) {
      await selectBackend(backend, { threads: 1, quiet: true });
      await body(backend);
    }
  } finally {
    if (previous) await tf.setBackend(previous);
  }
}
