import { tinyVit } from "./_tiny_vit.ts";
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { randomTimmWeights, resolveTimmConfig, type TimmConfigInput } from "../../lib/models/registry.ts";
import { Random } from "../../lib/random.ts";
import {
  groupLogSoftmax,
  type TrainableModel,
  weightedLossGradients,
} from "../../lib/train/weighted_loss.ts";
import { timmForward } from "../../lib/models/registry.ts";
import { assertClose } from "../_assert.ts";
import { availableBackends } from "../_problems.ts";

const tinySwin: TimmConfigInput = {
  architecture: "swin",
  imgSize: 16,
  patchSize: 2,
  embedDim: 8,
  depths: [2, 2],
  numHeads: [2, 2],
  windowSize: 4, // an 8×8 map: shifted windows with the mask, then 4×4 in one window
  numClasses: 3,
};

/** A trainable model of `input` with N(0, 0.3²)-scaled random weights (large enough for non-trivial gradients). */
function trainable(input: TimmConfigInput, numClasses = 3): TrainableModel {
  const { config } = resolveTimmConfig(input, { overrides: { numClasses } });
  const weights = randomTimmWeights(config, 7);
  const params = new Map([...weights].map(([key, t]) => {
    const scale = t.shape.length > 1 ? 15 : 1; // 0.02 → 0.3
    return [key, tf.tidy(() => tf.variable(tf.mul(tf.tensor(t.values as Float32Array, t.shape), scale)))];
  }));
  return { config, params };
}

function batchFor(model: TrainableModel): { images: tf.Tensor4D; labels: Int32Array; alpha: Float32Array } {
  const size = model.config.imgSize, rng = new Random(5);
  const values = Float32Array.from({ length: 4 * size * size * 3 }, () => rng.normal());
  return {
    images: tf.tensor4d(values, [4, size, size, 3]),
    labels: Int32Array.from([0, 2, 1, 2]),
    alpha: Float32Array.from([1.5, 0.25, 1, 2]),
  };
}

async function gradientsOn(backend: "cpu" | "wasm" | "webgpu", input: TimmConfigInput) {
  await selectBackend(backend, { threads: 1, quiet: true });
  const model = trainable(input), batch = batchFor(model);
  const { loss, gradients } = weightedLossGradients(model, batch, { labelSmoothing: 0.1 });
  const out = new Map<string, Float32Array>();
  for (const [key, g] of gradients) out.set(key, (await g.data()) as Float32Array);
  const value = (await loss.data())[0];
  tf.dispose([loss, ...gradients.values(), batch.images, ...model.params.values()]);
  return { value, gradients: out };
}

/**
 * ∂L/∂θ_i analytic and by central differences (step 1e-2) at the entry i with the largest |∂L/∂θ| (the
 * best-conditioned difference quotient); restores the variable.
 */
function centralDifference(variable: tf.Variable, gradient: tf.Tensor, lossAt: () => number) {
  const g = gradient.dataSync();
  let worst = 0;
  for (let i = 1; i < g.length; i++) if (Math.abs(g[i]) > Math.abs(g[worst])) worst = i;
  const original = variable.dataSync().slice(), h = 1e-2;
  const at = (delta: number) => {
    const shifted = original.slice();
    shifted[worst] += delta;
    tf.tidy(() => variable.assign(tf.tensor(shifted, variable.shape)));
    return lossAt();
  };
  const numeric = (at(h) - at(-h)) / (2 * h);
  tf.tidy(() => variable.assign(tf.tensor(original, variable.shape)));
  return { index: worst, analytic: g[worst], numeric };
}

for (
  const [what, input, keys] of [
    ["ViT", tinyVit, [
      "patch_embed.proj.weight",
      "pos_embed",
      "blocks.0.attn.qkv.weight",
      "blocks.1.norm2.weight",
    ]],
    [
      "Swin",
      tinySwin,
      [
        "layers.0.blocks.1.attn.relative_position_bias_table",
        "layers.1.downsample.reduction.weight",
        "norm.bias",
      ],
    ],
  ] as const
) {
  Deno.test(`weightedLossGradients() matches central finite differences on the cpu backend (${what})`, async () => {
    await selectBackend("cpu", { quiet: true });
    const model = trainable(input), batch = batchFor(model);
    const { loss, gradients } = weightedLossGradients(model, batch, { labelSmoothing: 0.1 });
    const lossAt = () =>
      tf.tidy(() => {
        const { loss, gradients } = weightedLossGradients(model, batch, { labelSmoothing: 0.1 });
        tf.dispose([...gradients.values()]);
        return loss.dataSync()[0];
      });
    for (const key of keys) {
      const d = centralDifference(model.params.get(key)!, gradients.get(key)!, lossAt);
      assertClose(d.analytic, d.numeric, { rtol: 1e-3, atol: 1e-5, what: `${what} ∂L/∂${key}[${d.index}]` });
    }
    tf.dispose([loss, ...gradients.values(), batch.images, ...model.params.values()]);
  });

  Deno.test(`weightedLossGradients() on wasm (and webgpu) equals the cpu backend (${what}), no tensor leaks`, async () => {
    const cpu = await gradientsOn("cpu", input);
    for (const backend of (await availableBackends()).filter((b) => b !== "cpu")) {
      const before = tf.memory().numTensors;
      const other = await gradientsOn(backend, input);
      assert.equal(tf.memory().numTensors, before, `${backend}: a training step frees everything it made`);
      assertClose(other.value, cpu.value, { rtol: 1e-5, what: `${backend} ${what} loss` });
      for (const [key, g] of cpu.gradients) {
        const scale = g.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        assertClose(other.gradients.get(key)!, g, {
          atol: 1e-4 * scale + 1e-9,
          what: `${backend} ${what} ∂L/∂${key}`,
        });
      }
    }
  });
}

Deno.test("weightedLossGradients() with attribute groups: Σ_g smoothed CE per group (float64 reference), exact gradient", async () => {
  await selectBackend("cpu", { quiet: true });
  const sizes = [2, 3], epsilon = 0.2; // 5 logits: attribute 0 has 2 values, attribute 1 has 3
  const model = trainable(tinyVit, 5), { images, alpha } = batchFor(model);
  const labels = Int32Array.from([0, 2, 1, 0, 1, 1, 0, 2]); // [4 images × 2 attributes]
  const options = { labelSmoothing: epsilon, groups: sizes };
  const { loss, gradients } = weightedLossGradients(model, { images, labels, alpha }, options);
  const logits = tf.tidy(() => timmForward(model.config, model.params, images).logits!)
    .arraySync() as number[][];
  let expected = 0;
  logits.forEach((z, i) => {
    let offset = 0;
    sizes.forEach((size, g) => {
      const slice = z.slice(offset, offset + size), max = Math.max(...slice);
      const logSum = max + Math.log(slice.reduce((s, v) => s + Math.exp(v - max), 0));
      slice.forEach((v, c) => {
        const target = (c === labels[2 * i + g] ? 1 - epsilon : 0) + epsilon / size;
        expected -= alpha[i] * target * (v - logSum);
      });
      offset += size;
    });
  });
  expected /= alpha.reduce((a, b) => a + b, 0);
  assertClose(loss.dataSync()[0], expected, { rtol: 1e-5, what: "grouped loss" });
  // one group of size K is the plain log-softmax
  const z = tf.tensor2d([[0.5, -1, 2]]);
  assertClose(groupLogSoftmax(z, [3]).dataSync(), tf.logSoftmax(z).dataSync(), { atol: 0 });
  // the gradient: central differences on the largest entry of the head weight
  const d = centralDifference(
    model.params.get("head.weight")!,
    gradients.get("head.weight")!,
    () =>
      tf.tidy(() => {
        const r = weightedLossGradients(model, { images, labels, alpha }, options);
        tf.dispose([...r.gradients.values()]);
        return r.loss.dataSync()[0];
      }),
  );
  assertClose(d.analytic, d.numeric, { rtol: 1e-3, atol: 1e-5, what: "∂L/∂head.weight" });
  assert.throws(
    () => weightedLossGradients(model, { images, labels: labels.subarray(0, 4), alpha }, options),
    /one label per group and image/,
  );
  assert.throws(
    () => weightedLossGradients(model, { images, labels: labels.map(() => 2), alpha }, options),
    /label 2 of group 0 is outside 0..1/,
  );
  tf.dispose([z, loss, ...gradients.values(), images, ...model.params.values()]);
});
