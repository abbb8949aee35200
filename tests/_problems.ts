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

/**
 * A random problem with a validation split drawn from the same class means: train is the first n rows, val the next m,
 * with the float64 twin of train and the val inputs.
 */
export function problemWithVal(spec: Parameters<typeof randomProblem>[0], m: number) {
  const full = randomProblem({ ...spec, n: spec.n + m });
  const n = spec.n, dim = spec.dim;
  const train = {
    features: full.train.features.slice([0, 0], [n, dim]) as tf.Tensor2D,
    labels: full.train.labels.slice(0, n),
  };
  const val = {
    features: full.train.features.slice([n, 0], [m, dim]) as tf.Tensor2D,
    labels: full.train.labels.slice(n),
  };
  full.train.features.dispose();
  const alpha = full.alpha.slice(0, n);
  const problem64 = {
    ...full.problem64,
    x: full.problem64.x.slice(0, n),
    y: train.labels,
    alpha: Float64Array.from(alpha),
  };
  return {
    train,
    val,
    alpha,
    problem64,
    xVal: full.problem64.x.slice(n),
    dispose: () => tf.dispose([train.features, val.features]),
  };
}
