/** Random head problems for tests: the same data as tfjs tensors and as a float64 reference problem. */
import * as tf from "@tensorflow/tfjs";
import { Random } from "../lib/random.ts";
import type { LabeledFeatures } from "../lib/carrot/labeled_features.ts";
import type { Problem64 } from "./_reference_head.ts";

/** Class means N(0, separation²) plus N(0, 1) noise, balanced labels; α ~ U[0.5, 1.5] unless `uniform`. */
export interface ProblemSpec {
  n: number;
  dim: number;
  numClasses: number;
  lambda: number;
  seed: number;
  separation?: number;
  uniform?: boolean;
}

/** The problem as `LabeledFeatures` (caller disposes `features`), its α, and the float64 twin. */
export function randomProblem(spec: ProblemSpec): {
  train: LabeledFeatures;
  alpha: Float32Array;
  problem64: Problem64;
  rows: Float32Array;
} {
  const rng = new Random(spec.seed);
  const { n, dim, numClasses } = spec;
  const means = Array.from(
    { length: numClasses },
    () => Array.from({ length: dim }, () => (spec.separation ?? 1) * rng.normal()),
  );
  const labels = Int32Array.from({ length: n }, (_, i) => i % numClasses);
  const rows = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) rows[i * dim + j] = means[labels[i]][j] + rng.normal();
  }
  const alpha = Float32Array.from({ length: n }, () => spec.uniform ? 1 : 0.5 + rng.uniform());
  return {
    train: { features: tf.tensor2d(rows, [n, dim]), labels },
    alpha,
    rows,
    problem64: {
      x: Array.from({ length: n }, (_, i) => Float64Array.from(rows.subarray(i * dim, (i + 1) * dim))),
      y: labels,
      alpha: Float64Array.from(alpha),
      lambda: spec.lambda,
      numClasses,
    },
  };
}

/** The backends every numerical test runs on: cpu and wasm always, webgpu where an adapter exists. */
export async function availableBackends(): Promise<("cpu" | "wasm" | "webgpu")[]> {
  const gpu = (navigator as { gpu?: GPU }).gpu;
  const adapter = gpu ? await gpu.requestAdapter() : null;
  return adapter ? ["cpu", "wasm", "webgpu"] : ["cpu", "wasm"];
}
