import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import {
  consistencyFromKernel,
  consistencyKernel,
  type ConsistencyOptions,
  consistencyRegularizer,
} from "../../lib/carrot/consistency.ts";
import { disposeHead, fitHead } from "../../lib/carrot/head.ts";
import { makeFineGrainedFeatures } from "../../lib/data/synthetic_features.ts";
import { Random } from "../../lib/random.ts";
import { assertClose } from "../_assert.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

const forms = ["pairwise", "pairwise-cosine", "own-class"] as const;

const small = (seed: number) =>
  makeFineGrainedFeatures({
    numClasses: 8,
    groups: 2,
    dim: 16,
    perClass: { train: 12, val: 4, test: 1 },
    labelNoise: { rate: 0.3 },
    seed,
  });

/** Brute-force float64 R(α) of the module JSDoc, over explicit pairs (j, l), from a kernel read back as numbers. */
function referenceR(
  kernel: Float64Array,
  alpha: ArrayLike<number>,
  trainLabels: Int32Array,
  valLabels: Int32Array,
  numClasses: number,
  form: (typeof forms)[number],
): number {
  const n = alpha.length, m = valLabels.length;
  if (form === "own-class") {
    let sum = 0, kept = 0;
    for (let j = 0; j < m; j++) {
      const t = new Float64Array(numClasses);
      for (let i = 0; i < n; i++) t[trainLabels[i]] += alpha[i] * kernel[i * m + j];
      const total = t.reduce((s, x) => s + Math.max(x, 0), 0);
      if (total > 0) [sum, kept] = [sum + 1 - Math.max(t[valLabels[j]], 0) / total, kept + 1];
    }
    return sum / kept;
  }
  const supports = Array.from({ length: m }, (_, j) => {
    const u = Float64Array.from({ length: n }, (_, i) => alpha[i] * Math.max(kernel[i * m + j], 0));
    const norm = form === "pairwise" ? u.reduce((s, x) => s + x, 0) : Math.hypot(...u);
    return norm > 0 ? u.map((x) => x / norm) : u;
  });
  let cross = 0, within = 0, nCross = 0, nWithin = 0;
  for (let j = 0; j < m; j++) {
    for (let l = 0; l < m; l++) {
      if (j === l) continue;
      const a = supports[j].reduce((s, x, i) => s + x * supports[l][i], 0);
      if (valLabels[j] === valLabels[l]) [within, nWithin] = [within + a, nWithin + 1];
      else [cross, nCross] = [cross + a, nCross + 1];
    }
  }
  return cross / nCross - within / nWithin;
}

Deno.test("consistencyFromKernel() matches a brute-force float64 R(α) and its central differences, every form", async () => {
  const data = small(4);
  const fit = await fitHead(data.train, { lambda: 2 });
  const rng = new Random(3);
  const n = data.train.labels.length;
  const alpha = Float32Array.from({ length: n }, () => 0.5 + rng.uniform());
  for (const form of forms) {
    const options: ConsistencyOptions = { form, trainLabels: data.train.labels };
    const b = consistencyKernel(fit, data.train, data.val, options);
    const kernel = Float64Array.from(await b.data());
    const r = (a: ArrayLike<number>) => referenceR(kernel, a, data.train.labels, data.val.labels, 8, form);
    const base = await consistencyFromKernel(b, alpha, data.val.labels, 8, options);
    assertClose(base.value, r(alpha), { rtol: 1e-4, atol: 1e-6, what: `${form}: R` });
    // float64 central differences of the reference, every coordinate
    const h = 1e-4, scale = Math.max(...base.gradient.map(Math.abs));
    const fd = Float64Array.from({ length: n }, (_, i) => {
      const up = Float64Array.from(alpha), down = Float64Array.from(alpha);
      up[i] += h;
      down[i] -= h;
      return (r(up) - r(down)) / (2 * h);
    });
    assertClose(base.gradient, fd, { rtol: 1e-3, atol: 1e-3 * scale, what: `${form}: ∂R/∂α vs float64 FD` });
    // and the library's own float32 R, at a few coordinates
    for (const i of [0, 17, 41, 90]) {
      const step = 1e-2, up = alpha.slice(), down = alpha.slice();
      up[i] += step;
      down[i] -= step;
      const own = ((await consistencyFromKernel(b, up, data.val.labels, 8, options)).value -
        (await consistencyFromKernel(b, down, data.val.labels, 8, options)).value) / (2 * step);
      assertClose(base.gradient[i], own, { rtol: 2e-2, atol: 2e-2 * scale, what: `${form}: ∂R/∂α_${i}` });
    }
    b.dispose();
  }
  disposeHead(fit);
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});

Deno.test("consistencyRegularizer() defaults to the pairwise form and leaks no tensors", async () => {
  const data = small(5);
  const fit = await fitHead(data.train, { lambda: 1 });
  const before = tf.memory().numTensors;
  const plain = await consistencyRegularizer(fit, data.train, data.val);
  const pairwise = await consistencyRegularizer(fit, data.train, data.val, { form: "pairwise" });
  assert.equal(plain.value, pairwise.value);
  assert.deepEqual(plain.gradient, pairwise.gradient);
  for (const form of forms) {
    const r = await consistencyRegularizer(fit, data.train, data.val, { form });
    assert.ok(Number.isFinite(r.value) && r.gradient.every(Number.isFinite), form);
    const kept = tf.tidy(() => consistencyKernel(fit, data.train, data.val, { form }));
    kept.dispose();
  }
  assert.equal(tf.memory().numTensors, before);
  disposeHead(fit);
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});

Deno.test("consistency options are validated with the fix in the message", async () => {
  const data = small(6);
  const fit = await fitHead(data.train, { lambda: 1 });
  assert.throws(
    () => consistencyKernel(fit, data.train, data.val, { form: "cosine" as never }),
    /unknown form "cosine"; use "pairwise", "pairwise-cosine" or "own-class"/,
  );
  const b = consistencyKernel(fit, data.train, data.val, { form: "own-class" });
  await assert.rejects(
    consistencyFromKernel(b, fit.alpha, data.val.labels, 8, { form: "own-class" }),
    /needs options.trainLabels/,
  );
  await assert.rejects(consistencyFromKernel(b, fit.alpha.slice(1), data.val.labels, 8), /must match/);
  b.dispose();
  disposeHead(fit);
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});

Deno.test("issue 13: pairwise R pushes mislabelled points up, own-class R pushes them down", async () => {
  const data = makeFineGrainedFeatures({ seed: 0, labelNoise: { rate: 0.2 } });
  const fit = await fitHead(data.train, { lambda: 10 });
  const meanOn = (g: Float32Array, flag: number) => {
    let s = 0, c = 0;
    data.train.mislabeled.forEach((f, i) => f === flag && (s += g[i], c++));
    return s / c;
  };
  const pairwise = await consistencyRegularizer(fit, data.train, data.val);
  const ownClass = await consistencyRegularizer(fit, data.train, data.val, { form: "own-class" });
  assert.ok(
    meanOn(pairwise.gradient, 1) < meanOn(pairwise.gradient, 0),
    "pairwise: ∂R/∂α lower on mislabelled",
  );
  assert.ok(
    meanOn(ownClass.gradient, 1) > meanOn(ownClass.gradient, 0),
    "own-class: ∂R/∂α higher on mislabelled",
  );
  disposeHead(fit);
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});
