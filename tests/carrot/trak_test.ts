import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { projectionSplit, trakScores } from "../../lib/carrot/trak.ts";
import { disposeHead, fitHead } from "../../lib/carrot/head.ts";
import { choleskySolve } from "../../lib/carrot/_linalg.ts";
import { assertClose } from "../_assert.ts";
import { randomProblem } from "../_problems.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

/** Closed form ∇f_xᵀ (GᵀG + ρI)⁻¹ ∇f_i (1 − p_i(y_i)) with explicit margin gradients, in float64. */
function closedForm(
  w: Float64Array,
  train: { x: Float64Array[]; y: Int32Array },
  test: { x: Float64Array[]; y: Int32Array },
  k: number,
  ridge: number,
) {
  const width = train.x[0].length + 1, size = k * width;
  const grad = (x: Float64Array, y: number) => {
    const h = [...x, 1],
      z = Array.from({ length: k }, (_, c) => h.reduce((s, v, a) => s + w[c * width + a] * v, 0));
    const max = Math.max(...z.filter((_, c) => c !== y));
    const e = z.map((v, c) => (c === y ? 0 : Math.exp(v - max)));
    const total = e.reduce((s, v) => s + v, 0);
    const pAll = z.map((v) => Math.exp(v - Math.max(...z)));
    const pSum = pAll.reduce((s, v) => s + v, 0);
    return {
      g: Float64Array.from(
        { length: size },
        (_, q) => ((Math.floor(q / width) === y ? 1 : 0) - e[Math.floor(q / width)] / total) * h[q % width],
      ),
      p: pAll[y] / pSum,
    };
  };
  const g = train.x.map((x, i) => grad(x, train.y[i]));
  const gram = new Float64Array(size * size);
  for (const { g: gi } of g) {
    for (let a = 0; a < size; a++) for (let b = 0; b < size; b++) gram[a * size + b] += gi[a] * gi[b];
  }
  for (let a = 0; a < size; a++) gram[a * size + a] += ridge;
  const out = new Float64Array(train.x.length * test.x.length);
  test.x.forEach((x, j) => {
    const s = choleskySolve(gram, size, grad(x, test.y[j]).g);
    g.forEach(({ g: gi, p }, i) =>
      out[i * test.x.length + j] = gi.reduce((acc, v, q) => acc + v * s[q], 0) * (1 - p)
    );
  });
  return out;
}

Deno.test("trakScores() with k = K(d+1), orthogonal projections and no ensemble equals the closed form", async () => {
  const { train, alpha, problem64 } = randomProblem({
    n: 150,
    dim: 3,
    numClasses: 3,
    lambda: 0.5,
    seed: 101,
  });
  const test = randomProblem({ n: 5, dim: 3, numClasses: 3, lambda: 0.5, seed: 102 });
  const fit = await fitHead(train, { lambda: 0.5, alpha });
  assert.deepEqual(projectionSplit(12, 3, 4), [3, 4]);
  const expected = closedForm(Float64Array.from(await fit.weights.data()), problem64, test.problem64, 3, 0.1);
  const scores = await trakScores(fit, train, test.train, {
    projectionDim: 12,
    ridge: 0.1,
    projection: "orthogonal",
  });
  const scale = Math.max(...expected.map(Math.abs));
  assertClose(scores, expected, { atol: 2e-3 * scale, what: "TRAK (orthogonal, k = K(d+1)) vs closed form" });
  for (const projection of ["gaussian", "rademacher"] as const) { // not orthogonal: the ridge is not invariant
    const other = await trakScores(fit, train, test.train, {
      projectionDim: 12,
      ridge: 0.1,
      projection,
      seed: 3,
    });
    assert.ok(other.some((v, q) => Math.abs(v - expected[q]) > 1e-3 * scale), projection);
  }
  // a real projection (k < K(d+1)) approximates it: scores stay correlated but are not equal
  const projected = await trakScores(fit, train, test.train, { projectionDim: 6, seed: 3 });
  assert.ok(projected.some((v, q) => Math.abs(v - expected[q]) > 1e-3));
  disposeHead(fit);
  tf.dispose([train.features, test.train.features]);
});

Deno.test("trakScores() ensembles over subset heads deterministically by seed and leaks nothing", async () => {
  const { train, alpha } = randomProblem({ n: 80, dim: 4, numClasses: 3, lambda: 1, seed: 103 });
  const test = randomProblem({ n: 4, dim: 4, numClasses: 3, lambda: 1, seed: 104 });
  const fit = await fitHead(train, { lambda: 1, alpha });
  const before = tf.memory().numTensors;
  const a = await trakScores(fit, train, test.train, { ensemble: 3, projectionDim: 8, seed: 7 });
  const b = await trakScores(fit, train, test.train, { ensemble: 3, projectionDim: 8, seed: 7 });
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(a, b);
  const single = await trakScores(fit, train, test.train, { projectionDim: 8, seed: 7 });
  assert.ok(single.some((v, q) => Math.abs(v - a[q]) > 1e-6), "ensemble must change the scores");
  disposeHead(fit);
  tf.dispose([train.features, test.train.features]);
});
