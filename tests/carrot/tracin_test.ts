import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import {
  disposeCheckpoints,
  tracInMatrix,
  tracInValidation,
  trainTracInCheckpoints,
} from "../../lib/carrot/tracin.ts";
import { disposeHead, fitHead } from "../../lib/carrot/head.ts";
import { assertClose } from "../_assert.ts";
import { objective64, probabilities64 } from "../_reference_head.ts";
import { randomProblem } from "../_problems.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

Deno.test("tracInMatrix() factorised equals explicit per-sample gradient dot products", async () => {
  const { train, alpha, problem64 } = randomProblem({ n: 60, dim: 4, numClasses: 3, lambda: 0.5, seed: 91 });
  const test = randomProblem({ n: 7, dim: 4, numClasses: 3, lambda: 0.5, seed: 92 });
  const c = await trainTracInCheckpoints(train, { lambda: 0.5, alpha, epochs: 4, batchSize: 16, seed: 1 });
  assert.equal(c.checkpoints.length, 4);
  const matrix = await tracInMatrix(c, train, test.train);
  const expected = new Float64Array(60 * 7);
  for (const { weights, learningRate } of c.checkpoints) {
    const w = Float64Array.from(await weights.data());
    const grad = (x: Float64Array, y: number) => { // explicit vec((p − e_y) hᵀ), length K(d+1)
      const h = Float64Array.from([...x, 1]), p = probabilities64(w, h, 3);
      return Float64Array.from(
        { length: 15 },
        (_, q) => (p[Math.floor(q / 5)] - (Math.floor(q / 5) === y ? 1 : 0)) * h[q % 5],
      );
    };
    for (let i = 0; i < 60; i++) {
      const gi = grad(problem64.x[i], problem64.y[i]);
      for (let j = 0; j < 7; j++) {
        const gx = grad(test.problem64.x[j], test.problem64.y[j]);
        expected[i * 7 + j] += learningRate * alpha[i] * gi.reduce((s, v, q) => s + v * gx[q], 0);
      }
    }
  }
  assertClose(matrix, expected, { atol: 1e-5, rtol: 1e-4, what: "TracIn" });
  const last = await tracInMatrix(c, train, test.train, { last: true });
  assert.ok(last.some((v, q) => Math.abs(v - matrix[q]) > 1e-4), "TracIn-last must differ from TracIn-CP");
  // TracIn on L_val is the mean of the pairwise column scores
  const onVal = await tracInValidation(c, train, test.train);
  assertClose(
    onVal,
    Array.from({ length: 60 }, (_, i) => expected.slice(i * 7, i * 7 + 7).reduce((s, v) => s + v, 0) / 7),
    {
      atol: 1e-6,
      rtol: 1e-4,
      what: "TracIn on L_val",
    },
  );
  disposeCheckpoints(c);
  tf.dispose([train.features, test.train.features]);
});

Deno.test("trainTracInCheckpoints() SGD approaches the stationary head and is seeded", async () => {
  const { train, alpha, problem64 } = randomProblem({ n: 200, dim: 6, numClasses: 4, lambda: 1, seed: 93 });
  const a = await trainTracInCheckpoints(train, { lambda: 1, alpha, epochs: 30, seed: 5 });
  const b = await trainTracInCheckpoints(train, { lambda: 1, alpha, epochs: 30, seed: 5 });
  assert.deepEqual(await a.checkpoints[29].weights.data(), await b.checkpoints[29].weights.data());
  const fit = await fitHead(train, { lambda: 1, alpha });
  const gap = async (w: tf.Tensor) =>
    objective64(problem64, Float64Array.from(await w.data())).value - fit.loss;
  const start = objective64(problem64, new Float64Array(4 * 7)).value - fit.loss; // J(0) − J*
  const early = await gap(a.checkpoints[0].weights), late = await gap(a.checkpoints[29].weights);
  assert.ok(
    late < early && late < 0.2 * start,
    `SGD does not approach J*: gaps ${start} → ${early} → ${late}`,
  );
  [a, b].forEach(disposeCheckpoints);
  disposeHead(fit);
  train.features.dispose();
});
