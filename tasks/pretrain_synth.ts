/**
 * `deno task pretrain-synth`: trains `vit_tiny_synth`, the small ViT behind the embedded default, from random
 * weights (`finetune`, mode "erm") on SynthBirds' "pretrain" preset (128 classes disjoint from the default task's:
 * 8 body colours × all 16 combinations of the four small parts, each image's small parts enlarged by a factor
 * f ~ U[1, 2] so that they are seen large as well as at class size), by default with attribute supervision (one
 * softmax per part: hue, tail, beak shape, beak colour, wing bars, crown, eye ring), then measures what the
 * features are worth: a linear probe (`linearProbe`: CARROT's ERM head, λ chosen on val by NLL, top-1 on test) on
 * the default SynthBirds task, for the pretrained weights and for random weights of the same architecture. Writes
 * `<out>.safetensors` (the weights without the pretraining head, timm keys, F32; loads with
 * `loadTimmModel("vit_tiny_synth", path)`) and `<out>.json` (the card: config, data config, the exact command,
 * seed, data, training history, probe accuracies, SHA-256). The architecture is the registered `vit_tiny_synth`
 * config; checkpoints go to `--run`, so `--resume` continues an interrupted run.
 */
import * as tf from "@tensorflow/tfjs";
import { dirname } from "node:path";
import { mkdirSync, statSync } from "node:fs";
import { createHash } from "node:crypto";
import { z } from "zod";
import { releaseBackend, selectBackend } from "../lib/backend.ts";
import { writeJsonAtomic } from "../lib/_atomic.ts";
import { loadDataset } from "../lib/data/dataset.ts";
import { synthBirdsAttributes, synthBirdsClasses, synthBirdsConfig } from "../lib/data/synthbirds.ts";
import { loadTimmModel, randomTimmWeights, resolveTimmConfig } from "../lib/models/registry.ts";
import { readSafetensors, writeSafetensors } from "../lib/models/safetensors.ts";
import { log } from "../lib/progress.ts";
import { finetune } from "../lib/train/finetune.ts";
import { linearProbe, type LinearProbeResult } from "../lib/train/linear_probe.ts";
import { parseCommandLine, runTask } from "./_cli.ts";

const NAME = "vit_tiny_synth";
/** λ grid of the probes: 10^{-3} … 10^{3} in half decades, wide enough that neither probe's optimum is at an edge. */
const LAMBDA_GRID = Array.from({ length: 13 }, (_, i) => 10 ** (-3 + i / 2));
const Options = z.object({
  epochs: z.number().int().min(1).default(8).describe("training epochs"),
  batchSize: z.number().int().min(1).default(32).describe("images per update"),
  learningRate: z.number().positive().default(1e-3).describe("peak AdamW learning rate"),
  minLearningRate: z.number().min(0).default(1e-5).describe("final learning rate of the cosine schedule"),
  warmupEpochs: z.number().min(0).default(0.5).describe("linear warm-up, in epochs"),
  weightDecay: z.number().min(0).default(0.05).describe("decoupled weight decay"),
  labelSmoothing: z.number().min(0).lt(1).default(0.1).describe("label smoothing ε"),
  clipNorm: z.number().min(0).default(1).describe("global gradient-norm clip (0: off)"),
  objective: z.enum(["attributes", "classes"]).default("attributes").describe(
    "attributes: one softmax per part (hue, tail, beak shape, beak colour, wing bars, crown, eye ring); " +
      "classes: the 128 pretrain classes",
  ),
  trainPerClass: z.number().int().min(1).default(40).describe("training images per pretrain class"),
  cropScale: z.number().gt(0).max(1).default(0.8).describe(
    "smallest area fraction of the random resized crop",
  ),
  seed: z.number().int().default(0).describe("seed of the initial weights, data order and augmentation"),
  backend: z.enum(["wasm", "cpu", "webgpu", "auto"]).default("wasm").describe("tfjs backend"),
  threads: z.number().int().min(1).optional().describe("WASM threads (default: all cores)"),
  pretrainRoot: z.string().default("data/synthbirds_pretrain").describe(
    "SynthBirds pretrain preset (made if absent)",
  ),
  probeRoot: z.string().default("data/synthbirds").describe(
    "SynthBirds default task for the probe (made if absent)",
  ),
  run: z.string().default("runs/pretrain_synth").describe("run folder for checkpoints"),
  out: z.string().default(`data/weights/${NAME}`).describe("output stem: <out>.safetensors and <out>.json"),
  resume: z.boolean().default(false).describe("continue the run in --run"),
});

const options = parseCommandLine(Options, Deno.args, {
  task: "pretrain-synth",
  summary: "Pretrain vit_tiny_synth on SynthBirds' pretrain preset and linear-probe it on the default task.",
});
log(`pretrain-synth: ${JSON.stringify(options)}`);
const started = performance.now();
await runTask("pretrain-synth", async () => {
  const backend = await selectBackend(options.backend, { threads: options.threads });
  try {
    const { config, preprocessing } = resolveTimmConfig(NAME);
    const pretrainConfig = synthBirdsConfig({
      preset: "pretrain",
      perClass: { train: options.trainPerClass, val: 5, test: 5 },
    });
    const pretrain = loadDataset("synthbirds", options.pretrainRoot, { synthBirds: pretrainConfig });
    const attributes = synthBirdsAttributes(synthBirdsClasses("pretrain", pretrainConfig.numClasses));
    const probe = loadDataset("synthbirds", options.probeRoot, { synthBirds: { preset: "default" } });
    const result = await finetune({
      model: NAME,
      dataset: pretrain,
      out: options.run,
      epochs: options.epochs,
      batchSize: options.batchSize,
      learningRate: options.learningRate,
      minLearningRate: options.minLearningRate,
      warmupEpochs: options.warmupEpochs,
      weightDecay: options.weightDecay,
      labelSmoothing: options.labelSmoothing,
      clipNorm: options.clipNorm,
      augmentation: { scale: [options.cropScale, 1] },
      attributes: options.objective === "attributes" ? attributes : undefined,
      seed: options.seed,
      resume: options.resume,
      progressBar: true,
      onEpoch: (r) =>
        log(
          `epoch ${r.epoch}/${options.epochs}: train loss ${r.trainLoss.toFixed(4)}, val loss ${
            r.valLoss.toFixed(4)
          }, val top-1 ${(100 * r.valTop1).toFixed(1)}%, ${r.imagesPerSecond.toFixed(1)} img/s, ${
            r.seconds.toFixed(0)
          } s`,
        ),
    });
    const trainSeconds = (performance.now() - started) / 1000;
    log(`pretraining: test top-1 ${(100 * result.testTop1!).toFixed(1)}% on the pretrain classes`);

    const { tensors } = await readSafetensors(result.model);
    for (const key of [...tensors.keys()]) if (key.startsWith("head.")) tensors.delete(key);
    const weightsPath = `${options.out}.safetensors`;
    mkdirSync(dirname(weightsPath), { recursive: true });
    await writeSafetensors(weightsPath, tensors, { metadata: { format: "pt", model: NAME } });
    const bytes = statSync(weightsPath).size;
    if (bytes > 5 * 2 ** 20) {
      throw new RangeError(`${weightsPath} is ${(bytes / 2 ** 20).toFixed(1)} MiB, over the 5 MiB budget`);
    }
    const sha256 = createHash("sha256").update(await Deno.readFile(weightsPath)).digest("hex");

    const probeOf = async (what: string, weights: Parameters<typeof loadTimmModel>[1]) => {
      const model = await loadTimmModel(NAME, weights);
      try {
        const r = await linearProbe(model, probe, { lambdaGrid: LAMBDA_GRID });
        log(
          `linear probe (${what}): λ ${r.lambda.toPrecision(3)}, val top-1 ${
            (100 * r.val.accuracy).toFixed(1)
          }%, ` +
            `test top-1 ${(100 * r.test.accuracy).toFixed(1)}%`,
        );
        return r;
      } finally {
        model.dispose();
      }
    };
    const summary = (r: LinearProbeResult) => ({
      lambda: r.lambda,
      valAccuracy: r.val.accuracy,
      valNll: r.val.nll,
      testAccuracy: r.test.accuracy,
      testNll: r.test.nll,
    });
    const pretrained = await probeOf("pretrained", weightsPath);
    const random = await probeOf(
      `random weights, seed ${options.seed}`,
      randomTimmWeights(config, options.seed),
    );

    const card = {
      name: NAME,
      description:
        "ViT (timm layout) pretrained from scratch on SynthBirds' pretrain preset; the embedded default " +
        'backbone. Features: the class token after the final LayerNorm (timm global_pool "token"), 128-d.',
      config,
      preprocessing,
      weights: {
        file: weightsPath.split("/").pop(),
        sha256,
        bytes,
        dtype: "F32",
        parameters: [...tensors.values()].reduce((n, t) => n + t.values.length, 0),
      },
      command: ["deno", "task", "pretrain-synth", ...Deno.args].join(" "),
      seed: options.seed,
      options,
      training: {
        data: {
          dataset: "synthbirds",
          config: pretrainConfig,
          train: pretrain.items.filter((i) => i.split === "train").length,
          val: pretrain.items.filter((i) => i.split === "val").length,
          test: pretrain.items.filter((i) => i.split === "test").length,
        },
        objective: (options.objective === "attributes"
          ? `attribute supervision: Σ of one smoothed cross-entropy per attribute (${
            attributes.names.map((n, g) =>
              `${n} ${attributes.sizes[g]}`
            ).join(", ")
          } values); val/test top-1 on the classes decoded from the attributes`
          : "ERM on the 128 classes: cross-entropy with label smoothing") +
          ", AdamW, cosine schedule with warm-up, random resized crop + flip",
        history: result.history,
        testTop1: result.testTop1,
        backend: `${backend.backend} (${backend.reason})`,
        wallSeconds: Math.round(trainSeconds),
        versions: { deno: Deno.version.deno, tfjs: tf.version_core },
      },
      linearProbe: {
        data: {
          dataset: "synthbirds",
          config: synthBirdsConfig({ preset: "default" }),
          note: "train labels as observed (20% noisy), val and test clean",
        },
        method: "fitHead on frozen features (bias column, L2 λ), λ chosen on val by NLL, top-1 on test",
        lambdaGrid: LAMBDA_GRID,
        pretrained: summary(pretrained),
        random: { ...summary(random), weights: `randomTimmWeights(config, ${options.seed})` },
      },
    };
    await writeJsonAtomic(`${options.out}.json`, card);
    log(
      `wrote ${weightsPath} (${(bytes / 2 ** 20).toFixed(2)} MiB, sha256 ${sha256.slice(0, 12)}…) and ` +
        `${options.out}.json in ${((performance.now() - started) / 1000).toFixed(0)} s`,
    );
  } finally {
    releaseBackend();
  }
});
