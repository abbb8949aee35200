import { tinyVit } from "./_tiny_vit.ts";
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { selectBackend } from "../../lib/backend.ts";
import { loadSynthBirds } from "../../lib/data/synthbirds.ts";
import { readImageBatch, selectImageDecoder } from "../../lib/data/images.ts";
import { evalTransform } from "../../lib/data/transforms.ts";
import { metricsFromProbabilities } from "../../lib/carrot/metrics.ts";
import { effectiveSampleSizes } from "../../lib/carrot/reweight.ts";
import { loadTimmModel, randomTimmWeights, resolveTimmConfig } from "../../lib/models/registry.ts";
import { readSafetensors, writeSafetensors } from "../../lib/models/safetensors.ts";
import { finetune, type FinetuneOptions } from "../../lib/train/finetune.ts";
import { assertClose } from "../_assert.ts";

const root = Deno.makeTempDirSync({ prefix: "carrot-finetune-test-" });
globalThis.addEventListener("unload", () => rmSync(root, { recursive: true, force: true }));
const dataset = loadSynthBirds(join(root, "birds"), {
  numClasses: 4,
  perClass: { train: 8, val: 4, test: 4 },
  imageSize: 32,
});
const base = (out: string): FinetuneOptions => ({
  model: tinyVit,
  preprocessing: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], cropPct: 1 },
  dataset,
  out: join(root, out),
  epochs: 2,
  batchSize: 8,
  accumulation: 2,
  learningRate: 1e-3,
  warmupEpochs: 0.5,
  labelSmoothing: 0.1,
  layerDecay: 0.8,
  seed: 3,
});

/** Every tensor of a state file, by name. */
async function stateTensors(path: string): Promise<Map<string, Float32Array>> {
  const { tensors } = await readSafetensors(path);
  return new Map([...tensors].map(([k, t]) => [k, t.values as Float32Array]));
}

Deno.test("finetune() in ERM mode lowers the loss, frees its tensors, and its model file reloads to the logged val metrics", async () => {
  await selectBackend("wasm", { threads: 1, quiet: true });
  const before = tf.memory().numTensors;
  const result = await finetune({ ...base("erm"), epochs: 3 });
  assert.equal(tf.memory().numTensors, before, "finetune frees every tensor it made");
  const [first, , last] = result.history;
  assert.ok(last.trainLoss < first.trainLoss, `train loss ${first.trainLoss} → ${last.trainLoss}`);
  assert.ok(result.history.every((r) => r.alpha.min === 1 && r.alpha.max === 1), "ERM keeps α ≡ 1");
  assert.equal(result.finished, true);
  assert.ok(result.testTop1 !== undefined && result.testTop1 >= 0 && result.testTop1 <= 1);

  const model = await loadTimmModel(result.config, result.model); // strict: timm keys only
  const val = dataset.items.filter((item) => item.split === "val");
  const pre = { ...result.preprocessing, size: result.preprocessing.inputSize[1] };
  const { pixels } = await readImageBatch(val.map((item) => item.path), {
    decoder: await selectImageDecoder(),
    transform: (image) => evalTransform(image, pre),
  });
  const p = tf.tidy(() => tf.softmax(model.forward(tf.tensor4d(pixels, [val.length, 32, 32, 3]))!));
  const metrics = metricsFromProbabilities(
    (await p.data()) as Float32Array,
    Int32Array.from(val, (item) => item.label),
    4,
  );
  tf.dispose(p);
  model.dispose();
  assert.equal(metrics.accuracy, last.valTop1);
  assertClose(metrics.nll, last.valLoss, { rtol: 1e-6, what: "val loss of the reloaded model" });
});

Deno.test("finetune() resumed after an interrupted epoch continues bit for bit; mismatched resumes are refused", async () => {
  await selectBackend("wasm", { threads: 1, quiet: true });
  const straight = await finetune(base("straight"));
  const controller = new AbortController();
  const stopped = await finetune({
    ...base("resumed"),
    signal: controller.signal,
    onEpoch: () => controller.abort(),
  });
  assert.equal(stopped.finished, false);
  assert.equal(stopped.history.length, 1);
  await assert.rejects(finetune(base("resumed")), /exists; pass resume: true/);
  await assert.rejects(
    finetune({ ...base("resumed"), learningRate: 2e-3, resume: true }),
    (e: Error) =>
      e instanceof RangeError && e.message.includes("trained with settings.learningRate=0.001 (now 0.002);"),
  );
  const resumed = await finetune({ ...base("resumed"), resume: true });
  assert.equal(resumed.finished, true);
  assert.deepEqual(resumed.history.map((r) => r.trainLoss), straight.history.map((r) => r.trainLoss));
  const [a, b] = [await stateTensors(straight.state), await stateTensors(resumed.state)];
  assert.deepEqual([...b.keys()], [...a.keys()]);
  for (const [key, values] of a) assert.deepEqual(b.get(key), values, `${key} differs after resume`);
  const [ma, mb] = [await stateTensors(straight.model), await stateTensors(resumed.model)];
  for (const [key, values] of ma) assert.deepEqual(mb.get(key), values, `model ${key} differs`);
});

Deno.test("finetune() in CARROT mode from pretrained weights moves α and keeps every class mass and the ESS floor", async () => {
  await selectBackend("wasm", { threads: 1, quiet: true });
  const rho = 0.6;
  const pretrained = join(root, "pretrained.safetensors"); // a 7-class head: replaced by a zero 4-class one
  await writeSafetensors(
    pretrained,
    randomTimmWeights(resolveTimmConfig(tinyVit, { overrides: { numClasses: 7 } }).config, 1),
  );
  const result = await finetune({
    ...base("carrot"),
    weights: pretrained,
    mode: "carrot",
    alphaUpdate: { every: 1, lambda: 1, stepSize: 1, rho },
  });
  const [first, second] = result.history;
  assert.ok(first.alphaUpdate && first.alphaUpdate.maxChange > 0.05, "α changed after epoch 1");
  assert.equal(second.alphaUpdate, undefined, "no α update after the last epoch");
  const labels = Int32Array.from(
    dataset.items.filter((item) => item.split === "train"),
    (item) => item.label,
  );
  const mass = new Float64Array(4), count = new Float64Array(4);
  labels.forEach((c, i) => [mass[c], count[c]] = [mass[c] + result.alpha[i], count[c] + 1]);
  assertClose(mass, count, { atol: 1e-4, what: "class masses Σ_{i∈c} α_i = n_c" });
  for (const ess of effectiveSampleSizes(result.alpha, labels, 4)) assert.ok(ess >= rho - 1e-5, `ESS ${ess}`);
  assert.ok(result.alpha.every((a) => a >= 0));
  assert.deepEqual((await stateTensors(result.state)).get("alpha"), result.alpha, "α is checkpointed");
  assertClose(first.alpha.essMin, Math.min(...effectiveSampleSizes(result.alpha, labels, 4)), { atol: 1e-6 });
  const run = JSON.parse(Deno.readTextFileSync(join(root, "carrot", "run.json")));
  assert.deepEqual(run.initialization.ignored, ["head.bias", "head.weight"], "the old head is not loaded");
});

Deno.test("finetune() with attribute targets: Σ s_g outputs, val metrics decoded to classes, bad targets refused", async () => {
  await selectBackend("wasm", { threads: 1, quiet: true });
  // 4 classes as 2 attributes with 2 and 3 values (one value of the second never used)
  const attributes = { sizes: [2, 3], values: [[0, 0], [0, 2], [1, 0], [1, 2]] };
  const before = tf.memory().numTensors;
  const result = await finetune({ ...base("attributes"), attributes });
  assert.equal(tf.memory().numTensors, before, "finetune frees every tensor it made");
  assert.equal(result.config.numClasses, 5);
  const model = await loadTimmModel(result.config, result.model);
  const val = dataset.items.filter((item) => item.split === "val");
  const pre = { ...result.preprocessing, size: result.preprocessing.inputSize[1] };
  const { pixels } = await readImageBatch(val.map((item) => item.path), {
    decoder: await selectImageDecoder(),
    transform: (image) => evalTransform(image, pre),
  });
  const logits = tf.tidy(() => model.forward(tf.tensor4d(pixels, [val.length, 32, 32, 3]))!);
  const z = (await logits.array()) as number[][];
  tf.dispose(logits);
  model.dispose();
  // float64 decoding: log p(c | x) = Σ_g log softmax(z_g)[a_g(c)], renormalised over the 4 classes
  const logSoftmax = (v: number[]) => {
    const max = Math.max(...v), sum = v.reduce((s, x) => s + Math.exp(x - max), 0);
    return v.map((x) => x - max - Math.log(sum));
  };
  const probabilities = new Float32Array(val.length * 4);
  z.forEach((row, i) => {
    const [a, b] = [logSoftmax(row.slice(0, 2)), logSoftmax(row.slice(2))];
    const scores = attributes.values.map(([u, v]) => a[u] + b[v]);
    const p = logSoftmax(scores).map(Math.exp);
    probabilities.set(p, i * 4);
  });
  const metrics = metricsFromProbabilities(probabilities, Int32Array.from(val, (item) => item.label), 4);
  const last = result.history.at(-1)!;
  assert.equal(metrics.accuracy, last.valTop1);
  assertClose(metrics.nll, last.valLoss, { rtol: 1e-5, what: "val loss decoded from attributes" });
  await assert.rejects(
    finetune({
      ...base("attributes-bad"),
      attributes: { sizes: [2, 3], values: [[0, 3], [0, 0], [1, 0], [1, 1]] },
    }),
    /one row of 2 values per class \(4 classes\), each value in 0..size − 1/,
  );
});
