/**
 * `deno task finetune`: fine-tunes a ViT/Swin backbone end to end on a dataset (lib/train/finetune.ts), in ERM
 * mode (α ≡ 1) or CARROT mode (α-weighted loss with α updated every `--alphaEvery` epochs from head-level
 * influence on the current features). Writes `<out>/model.safetensors` (timm keys: loads with `loadTimmModel` and in
 * timm), `<out>/state.safetensors` (optimizer state and α, for `--resume`), `<out>/run.json` (per-epoch log) and
 * `<out>/options.json` (these options and the command line). Prints one line per epoch: train loss, val top-1 and
 * α statistics. WebGPU is used where a real GPU adapter exists (`--backend auto`), else multi-threaded WASM.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { writeJsonAtomic } from "../lib/_atomic.ts";
import { releaseBackend, selectBackend } from "../lib/backend.ts";
import { DATASET_NAMES, type DatasetName, loadDataset, splitValidation } from "../lib/data/dataset.ts";
import type { TimmConfigInput } from "../lib/models/registry.ts";
import { log } from "../lib/progress.ts";
import { finetune } from "../lib/train/finetune.ts";
import { parseCommandLine, runTask } from "./_cli.ts";

const Options = z.object({
  model: z.string().default("vit_tiny_synth").describe(
    "registered model name, or a .json file with a timm config (or a weights card with a 'config' field)",
  ),
  weights: z.string().default("data/weights/vit_tiny_synth.safetensors").describe(
    "initial timm safetensors weights (the classifier head is replaced); 'random' for random weights",
  ),
  dataset: z.enum(DATASET_NAMES as unknown as [DatasetName, ...DatasetName[]]).default("synthbirds")
    .describe("dataset layout"),
  dataRoot: z.string().default("data/synthbirds").describe("dataset root (SynthBirds is materialised there)"),
  valFraction: z.number().gt(0).lt(1).default(0.1).describe(
    "val share carved from train when there is no val split",
  ),
  out: z.string().default("runs/finetune").describe("run folder"),
  epochs: z.number().int().min(1).default(10).describe("epochs"),
  batchSize: z.number().int().min(1).default(32).describe("images per optimiser update"),
  accumulation: z.number().int().min(1).default(1).describe(
    "micro-batches per update (gradient accumulation)",
  ),
  learningRate: z.number().positive().default(1e-4).describe("peak AdamW learning rate"),
  minLearningRate: z.number().min(0).default(1e-6).describe("final learning rate of the cosine schedule"),
  warmupEpochs: z.number().min(0).default(1).describe("linear warm-up, in epochs"),
  weightDecay: z.number().min(0).default(0.05).describe("decoupled weight decay"),
  layerDecay: z.number().gt(0).max(1).default(1).describe("layer-wise learning-rate decay (1: off)"),
  clipNorm: z.number().min(0).default(1).describe("global gradient-norm clip (0: off)"),
  labelSmoothing: z.number().min(0).lt(1).default(0.1).describe("label smoothing ε"),
  cropScale: z.number().gt(0).max(1).default(0.08).describe(
    "smallest area fraction of the random resized crop",
  ),
  mode: z.enum(["erm", "carrot"]).default("erm").describe("erm: α ≡ 1; carrot: alternating α updates"),
  alphaEvery: z.number().int().min(1).default(1).describe("CARROT: update α after every N epochs"),
  lambda: z.number().positive().default(1).describe("CARROT: λ of the head fitted on the current features"),
  alphaStep: z.number().positive().default(1).describe("CARROT: step η_α (largest log-change of any α_i)"),
  rho: z.number().min(0).max(1).default(0.5).describe("CARROT: ESS floor ρ"),
  seed: z.number().int().default(0).describe("seed of data order, augmentation and val carving"),
  evalBatchSize: z.number().int().min(1).default(64).describe("images per forward pass when evaluating"),
  backend: z.enum(["auto", "webgpu", "wasm", "cpu"]).default("auto").describe("tfjs backend"),
  threads: z.number().int().min(1).optional().describe("WASM threads (default: all cores)"),
  resume: z.boolean().default(false).describe("continue the run in --out from its last epoch"),
});

const options = parseCommandLine(Options, Deno.args, {
  task: "finetune",
  summary: "Fine-tune a ViT/Swin backbone with the α-weighted loss (ERM or CARROT's alternating α updates).",
});
log(`finetune: ${JSON.stringify(options)}`);

/** A registered name as it is, or the timm config in a .json file (a bare config or a card's `config`). */
function modelOf(model: string): string | TimmConfigInput {
  if (!model.endsWith(".json")) return model;
  if (!existsSync(model)) throw new RangeError(`--model ${model}: no such file`);
  const json = JSON.parse(readFileSync(model, "utf8"));
  return (json.config ?? json) as TimmConfigInput;
}

await runTask("finetune", async () => {
  await selectBackend(options.backend, { threads: options.threads });
  try {
    let dataset = loadDataset(options.dataset, options.dataRoot);
    if (!dataset.items.some((item) => item.split === "val")) {
      dataset = splitValidation(dataset, { fraction: options.valFraction, seed: options.seed });
      log(`carved a ${options.valFraction} val split from train (seed ${options.seed})`);
    }
    const percent = (v: number) => `${(100 * v).toFixed(1)}%`;
    const result = await finetune({
      model: modelOf(options.model),
      weights: options.weights === "random" ? undefined : options.weights,
      dataset,
      out: options.out,
      epochs: options.epochs,
      batchSize: options.batchSize,
      accumulation: options.accumulation,
      learningRate: options.learningRate,
      minLearningRate: options.minLearningRate,
      warmupEpochs: options.warmupEpochs,
      weightDecay: options.weightDecay,
      layerDecay: options.layerDecay,
      clipNorm: options.clipNorm,
      labelSmoothing: options.labelSmoothing,
      augmentation: { scale: [options.cropScale, 1] },
      mode: options.mode,
      alphaUpdate: {
        every: options.alphaEvery,
        lambda: options.lambda,
        stepSize: options.alphaStep,
        rho: options.rho,
      },
      seed: options.seed,
      evalBatchSize: options.evalBatchSize,
      resume: options.resume,
      progressBar: true,
      onEpoch: async (r) => {
        // the run folder exists once the data and weights were read: nothing is written before
        await writeJsonAtomic(join(options.out, "options.json"), {
          options,
          command: ["deno", "task", "finetune", ...Deno.args].join(" "),
        });
        const a = r.alpha, u = r.alphaUpdate;
        log(
          `epoch ${r.epoch}/${options.epochs}: train loss ${r.trainLoss.toFixed(4)}, val loss ${
            r.valLoss.toFixed(4)
          }, ` +
            `val top-1 ${percent(r.valTop1)}, α min ${a.min.toFixed(3)} max ${a.max.toFixed(3)} ESS min ${
              a.essMin.toFixed(3)
            }` +
            (u
              ? `, α step: head val top-1 ${percent(u.headValTop1)}, max |Δα| ${u.maxChange.toFixed(3)}`
              : "") +
            `, ${r.imagesPerSecond.toFixed(1)} img/s, ${r.seconds.toFixed(0)} s`,
        );
      },
    });
    log(
      `finetune: ${result.finished ? "done" : "stopped"} after ${result.history.length} epochs` +
        (result.testTop1 !== undefined ? `, test top-1 ${percent(result.testTop1)}` : "") +
        `; model ${result.model}`,
    );
  } finally {
    releaseBackend();
  }
});
