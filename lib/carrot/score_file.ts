/**
 * Train × test score matrices on disk. For CUB (5994 × 5794 floats, 139 MB) and larger sets the full influence
 * matrix should not live in memory: `writeInfluenceMatrix` streams `testInfluence`'s blocks into one safetensors
 * tensor "influence" of shape [t, n] (test-major, so each block of test points is a contiguous run of rows),
 * F32, I(i, x) = ∂ℓ_x/∂α_i (negative: i helps x), written atomically with a metadata block that says so.
 */
import type { LabeledFeatures } from "./labeled_features.ts";
import type { HeadFit } from "./head.ts";
import { type TestInfluence, testInfluence, type TestInfluenceOptions } from "./influence.ts";
import { writeSafetensorsStreaming } from "../models/safetensors.ts";

/**
 * Computes `testInfluence` and streams the full score matrix to `path` ([t, n] F32, see the module JSDoc); returns
 * the per-test-point top-K as `testInfluence` does. Memory stays O(n · blockSize).
 */
export async function writeInfluenceMatrix(
  path: string,
  fit: HeadFit,
  train: LabeledFeatures,
  test: LabeledFeatures,
  options: Omit<TestInfluenceOptions, "onBlock"> = {},
): Promise<TestInfluence[]> {
  const n = train.labels.length, t = test.labels.length;
  let result: TestInfluence[] = [];
  await writeSafetensorsStreaming(
    path,
    [{ name: "influence", dtype: "F32", shape: [t, n] }],
    async (write) => {
      result = await testInfluence(fit, train, test, {
        ...options,
        onBlock: async (_start, scores, b) => {
          const rows = new Float32Array(b * n); // [n, b] → [b, n]
          for (let i = 0; i < n; i++) for (let j = 0; j < b; j++) rows[j * n + i] = scores[i * b + j];
          await write(rows);
        },
      });
    },
    {
      metadata: {
        quantity: "I(i, x) = dloss_x/dalpha_i (negative: training point i helps test point x)",
        layout: "[test, train]",
        method: options.method ?? "exact",
        lambda: String(fit.lambda),
      },
    },
  );
  return result;
}
