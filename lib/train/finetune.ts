/**
 * Fine-tuning a ViT or Swin backbone end to end with CARROT's α-weighted loss and alternating α updates.
 *
 * Each optimiser update takes an effective batch B of b training images, split into `accumulation` micro-batches,
 * and minimises
 *   L(θ) = Σ_{i∈B} α_i CE_ε(f_θ(x̃_i), y_i) / Σ_{i∈B} α_i,   CE_ε(z, y) = −Σ_k [(1 − ε) 1{k = y} + ε/K] log softmax(z)_k,
 * with x̃_i a seeded random resized crop + horizontal flip of x_i (`trainTransform`) and ε the label smoothing.
 * Every micro-batch divides by the α-mass of the whole batch, so the accumulated gradient is exactly ∇L. The
 * gradient's global norm is clipped to c (g ← g · min(1, c / (‖g‖₂ + 1e-6)), PyTorch's `clip_grad_norm_`), then
 * AdamW (`_adamw.ts`) steps with the cosine schedule with linear warm-up (`_schedule.ts`) times the layer-wise
 * decay factor of each parameter (`_param_groups.ts`).
 *
 * ERM mode keeps α ≡ 1. CARROT mode alternates: after every E-th epoch (except the last) the current backbone
 * embeds the train and validation images (eval transform), the head W*(α) = argmin Σ α_i CE(W h_i, y_i) + (λ/2)‖W‖²
 * is fitted to stationarity (`fitHead`), g = ∂L_val/∂α is computed by Theorem B (`validationAlphaGradient`), and
 * α ← `constrainedStep`(α, g, y, K, η_α, ρ) — class masses Σ_{i∈c} α_i = n_c kept, ESS_c(α) ≥ ρ n_c — is used for
 * the following epochs. Theorem B holds for the head at that point, not for the backbone: α follows the head-level
 * attribution of the current features.
 *
 * A fresh run starts from `weights` with the classifier replaced by a zero-initialised K-class head (as the ViT
 * paper fine-tunes), or from random weights (`randomTimmWeights`, for pretraining). Data order and augmentation are
 * drawn from `seed` and the epoch number only, so that a run resumed from its checkpoint continues bit for bit on
 * the same backend.
 *
 * Checkpoints, rewritten atomically after every epoch in `out`: `model.safetensors` holds the weights alone under
 * timm's key names (`loadTimmModel(config, path)` loads it with `strict: true`, timm's `load_state_dict` too), and
 * the sidecar `state.safetensors` holds everything a resume needs in one file — `param.<key>` (the weights again),
 * `optimizer.m.<key>`, `optimizer.v.<key>` (AdamW's moments), `alpha`, and the epoch, update count, options and
 * history as metadata. The state is written first and a resume reads only it, so an interrupted write can never
 * pair the weights of one epoch with the moments of another. `run.json` mirrors the options and history.
 */
import * as tf from "@tensorflow/tfjs";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { writeJsonAtomic } from "../_atomic.ts";
import { metricsFromProbabilities } from "../carrot/metrics.ts";
import { effectiveSampleSizes } from "../carrot/reweight.ts";
import type { Dataset, DatasetItem } from "../data/dataset.ts";
import { type ImageDecoder, readImageBatch, selectImageDecoder } from "../data/images.ts";
import { trainTransform, type TrainTransformOptions, type TransformConfig } from "../data/transforms.ts";
import type { Preprocessing } from "../models/backbone.ts";
import {
  loadTimmParameters,
  randomTimmWeights,
  resolveTimmConfig,
  timmActivationBytes,
  type TimmConfig,
  type TimmConfigInput,
  timmForward,
  timmParameterShapes,
} from "../models/registry.ts";
import { Progress } from "../progress.ts";
import { Random } from "../random.ts";
import { AdamW } from "./_adamw.ts";
import { readCheckpoint, writeCheckpoint } from "./_checkpoint.ts";
import { parameterGroups } from "./_param_groups.ts";
import { cosineLearningRate } from "./_schedule.ts";
import { forwardSplit, type SplitReader } from "./_forward_split.ts";
import { alphaStep } from "./_alpha_step.ts";
import { groupLogSoftmax, type TrainableModel, weightedLossGradients } from "./weighted_loss.ts";

/** CARROT mode's α updates; every field has a default. */
export interface AlphaUpdateOptions {
  /** Update α after every E-th epoch (default 1). */
  every?: number;
  /** λ of the head fitted on the current features (default 1). */
  lambda?: number;
  /** η_α of `constrainedStep`: the largest log-change of any α_i per update (default 1). */
  stepSize?: number;
  /** ESS floor ρ ∈ [0, 1] (default 0.5). */
  rho?: number;
}

/**
 * Attribute supervision: every class is a vector of attribute values (e.g. SynthBirds' body hue, tail, beak shape and
 * four small parts; CUB's annotated attributes). The head then has Σ_g s_g outputs, attribute g owning s_g
 * consecutive logits with their own softmax, and the loss of image i is Σ_g CE_ε(z_g, a_g(y_i)). Evaluation stays
 * on classes: log p(c | x) = Σ_g log softmax(z_g)[a_g(c)] + const, renormalised over the K classes.
 */
export interface AttributeTargets {
  /** s_g: the number of values of each attribute. */
  sizes: number[];
  /** a_g(c): `values[c][g]` ∈ 0..s_g − 1, one row per class. */
  values: number[][];
}

/** Options of `finetune`. Defaults follow common ViT fine-tuning recipes, scaled to small batches. */
export interface FinetuneOptions {
  /** Registered model name or config; numClasses is set to the dataset's K. */
  model: string | TimmConfigInput;
  /** Initial weights (a timm safetensors file; its head is replaced); absent: random weights from `seed`. */
  weights?: string;
  /** Changes to the data config (mean, std, cropPct, interpolation). */
  preprocessing?: Partial<Omit<Preprocessing, "inputSize">>;
  /** Items of splits "train" and "val" (required) and "test" (evaluated once at the end); labels in 0..K−1. */
  dataset: Dataset;
  /** Run folder: `state.safetensors`, `model.safetensors`, `run.json`. */
  out: string;
  /** Epochs of the schedule. */
  epochs: number;
  /** Images per optimiser update b (default 32). */
  batchSize?: number;
  /** Micro-batches per update (default 1); each holds ⌈b / accumulation⌉ images. */
  accumulation?: number;
  /** Peak learning rate η (default 1e-4). */
  learningRate?: number;
  /** Final learning rate of the cosine schedule (default 1e-6). */
  minLearningRate?: number;
  /** Warm-up length in epochs, may be fractional (default 0). */
  warmupEpochs?: number;
  /** Decoupled weight decay w (default 0.05). */
  weightDecay?: number;
  /** Layer-wise learning-rate decay in (0, 1] (default 1: off). */
  layerDecay?: number;
  /** Global gradient-norm clip c; 0 disables (default 1). */
  clipNorm?: number;
  /** Label smoothing ε ∈ [0, 1) (default 0; per attribute with `attributes`). */
  labelSmoothing?: number;
  /** Train the head on attributes of the classes instead of the classes themselves (default: classes). */
  attributes?: AttributeTargets;
  /** Training augmentation (default timm's random resized crop scale (0.08, 1) and flip 0.5). */
  augmentation?: TrainTransformOptions;
  /** "erm" (α ≡ 1, default) or "carrot" (alternating α updates). */
  mode?: "erm" | "carrot";
  /** CARROT mode's α updates. */
  alphaUpdate?: AlphaUpdateOptions;
  /** Seed of the data order, the augmentation and random initial weights (default 0). */
  seed?: number;
  /** Images per forward pass when evaluating (default 64). */
  evalBatchSize?: number;
  /** Continue from the checkpoint in `out` (default false: `out` must not hold one). */
  resume?: boolean;
  /** Image decoder (default `selectImageDecoder("auto")`). */
  decoder?: ImageDecoder;
  /** Checked after every epoch's checkpoint: when aborted, the run stops there (resumable). */
  signal?: AbortSignal;
  /** Called after every epoch with its record. */
  onEpoch?: (record: EpochRecord) => void | Promise<void>;
  /** Show a progress bar per epoch on stderr (default false). */
  progressBar?: boolean;
}

/** Summary of α over the training set. */
export interface AlphaStats {
  /** min_i α_i. */
  min: number;
  /** max_i α_i. */
  max: number;
  /** min_c ESS_c(α)/n_c with ESS_c = (Σ_{i∈c} α_i)² / Σ_{i∈c} α_i². */
  essMin: number;
}

/** What one CARROT α update did. */
export interface AlphaStepRecord {
  /** L_val of the head fitted on the current features (Theorem B's objective). */
  headValLoss: number;
  /** Validation top-1 of that head. */
  headValTop1: number;
  /** Whether the head reached fitHead's tolerance. */
  headConverged: boolean;
  /** CG iterations of Theorem B's solve. */
  cgIterations: number;
  /** max_i |α_i^new − α_i^old|. */
  maxChange: number;
}

/** One epoch's log entry. */
export interface EpochRecord {
  /** Epochs completed, 1-based. */
  epoch: number;
  /** α-weighted mean training loss Σ α_i CE_ε / Σ α_i over the epoch's (augmented) images. */
  trainLoss: number;
  /** Mean cross-entropy of the model's own head on val (eval transform). */
  valLoss: number;
  /** Top-1 accuracy of the model's own head on val. */
  valTop1: number;
  /** Learning rate η_t of the epoch's last update (before layer decay). */
  learningRate: number;
  /** Statistics of the α the next epoch trains with. */
  alpha: AlphaStats;
  /** CARROT's α update after this epoch, when one was made. */
  alphaUpdate?: AlphaStepRecord;
  /** Wall time of the epoch (training, evaluation, α update; not the checkpoint write). */
  seconds: number;
  /** Training images per second (updates only). */
  imagesPerSecond: number;
}

/** What `finetune` returns. */
export interface FinetuneResult {
  /** One record per completed epoch, resumed ones included. */
  history: EpochRecord[];
  /** α after the last completed epoch. */
  alpha: Float32Array;
  /** The timm-layout model file (`loadTimmModel(config, model)`). */
  model: string;
  /** The resume state file. */
  state: string;
  /** The architecture config trained (numClasses = K). */
  config: TimmConfig;
  /** The data config used (eval transform; training crops to the same size and normalisation). */
  preprocessing: Preprocessing;
  /** Top-1 on the test split after the last epoch, when the dataset has one and the run finished. */
  testTop1?: number;
  /** False when `signal` stopped the run early. */
  finished: boolean;
}

interface Settings {
  batchSize: number;
  accumulation: number;
  learningRate: number;
  minLearningRate: number;
  warmupEpochs: number;
  weightDecay: number;
  layerDecay: number;
  clipNorm: number;
  labelSmoothing: number;
  augmentation: TrainTransformOptions;
  mode: "erm" | "carrot";
  alphaUpdate: Required<AlphaUpdateOptions>;
  seed: number;
  epochs: number;
}

function settingsOf(o: FinetuneOptions): Settings {
  const s: Settings = {
    epochs: o.epochs,
    batchSize: o.batchSize ?? 32,
    accumulation: o.accumulation ?? 1,
    learningRate: o.learningRate ?? 1e-4,
    minLearningRate: o.minLearningRate ?? 1e-6,
    warmupEpochs: o.warmupEpochs ?? 0,
    weightDecay: o.weightDecay ?? 0.05,
    layerDecay: o.layerDecay ?? 1,
    clipNorm: o.clipNorm ?? 1,
    labelSmoothing: o.labelSmoothing ?? 0,
    augmentation: o.augmentation ?? {},
    mode: o.mode ?? "erm",
    alphaUpdate: { every: 1, lambda: 1, stepSize: 1, rho: 0.5, ...o.alphaUpdate },
    seed: o.seed ?? 0,
  };
  const integer = (v: number, lo: number) => Number.isInteger(v) && v >= lo;
  const checks: [boolean, string][] = [
    [integer(s.epochs, 1), `epochs must be an integer ≥ 1, got ${s.epochs}`],
    [integer(s.batchSize, 1), `batchSize must be an integer ≥ 1, got ${s.batchSize}`],
    [
      integer(s.accumulation, 1) && s.accumulation <= s.batchSize,
      `accumulation must be an integer in 1..batchSize, got ${s.accumulation}`,
    ],
    [s.learningRate > 0 && s.minLearningRate >= 0, "learningRate must be > 0 and minLearningRate ≥ 0"],
    [s.warmupEpochs >= 0 && s.warmupEpochs <= s.epochs, `warmupEpochs must lie in [0, epochs]`],
    [s.weightDecay >= 0, `weightDecay must be ≥ 0, got ${s.weightDecay}`],
    [s.layerDecay > 0 && s.layerDecay <= 1, `layerDecay must lie in (0, 1], got ${s.layerDecay}`],
    [s.clipNorm >= 0, `clipNorm must be ≥ 0 (0 disables clipping), got ${s.clipNorm}`],
    [s.labelSmoothing >= 0 && s.labelSmoothing < 1, `labelSmoothing must lie in [0, 1)`],
    [s.mode === "erm" || s.mode === "carrot", `mode must be "erm" or "carrot", got "${s.mode}"`],
    [integer(s.alphaUpdate.every, 1), `alphaUpdate.every must be an integer ≥ 1`],
    [s.alphaUpdate.lambda > 0 && s.alphaUpdate.stepSize > 0, "alphaUpdate.lambda and .stepSize must be > 0"],
    [s.alphaUpdate.rho >= 0 && s.alphaUpdate.rho <= 1, `alphaUpdate.rho must lie in [0, 1]`],
    [Number.isInteger(s.seed), `seed must be an integer, got ${s.seed}`],
  ];
  for (const [ok, message] of checks) if (!ok) throw new RangeError(`finetune: ${message}`);
  return s;
}

/** The items of one split with their labels, in dataset order. */
interface SplitItems {
  items: DatasetItem[];
  labels: Int32Array;
}

function splitOf(dataset: Dataset, split: "train" | "val" | "test"): SplitItems {
  const items = dataset.items.filter((item) => item.split === split);
  return { items, labels: Int32Array.from(items, (item) => item.label) };
}

function idsHash(split: SplitItems): string {
  const hash = createHash("sha256");
  split.items.forEach((item, i) => hash.update(`${item.id}\0${split.labels[i]}\n`));
  return hash.digest("hex");
}

function alphaStats(alpha: Float32Array, labels: Int32Array, numClasses: number): AlphaStats {
  let min = Infinity, max = -Infinity;
  for (const a of alpha) [min, max] = [Math.min(min, a), Math.max(max, a)];
  const ess = [...effectiveSampleSizes(alpha, labels, numClasses)].filter((v) => !Number.isNaN(v));
  return { min, max, essMin: Math.min(...ess) };
}

/** The permutation of epoch `epoch` and one augmentation seed per position, from `seed` and `epoch` alone. */
function epochPlan(seed: number, epoch: number, n: number): { order: Int32Array; seeds: Uint32Array } {
  const random = new Random(seed ^ Math.imul(epoch + 1, 0x9e3779b1));
  const order = random.permutation(n);
  return { order, seeds: Uint32Array.from(order, () => random.int(2 ** 32)) };
}

const readScalar = async (t: tf.Tensor) => {
  const v = (await t.data())[0];
  t.dispose();
  return v;
};

/** Everything one run holds while it trains. */
interface Run {
  model: TrainableModel;
  optimizer: AdamW;
  alpha: Float32Array;
  epoch: number;
  history: EpochRecord[];
}

/**
 * Fine-tunes `options.model` on the train split of `options.dataset` (see the module JSDoc for the objective,
 * the α updates and the checkpoints), checkpointing into `options.out` after every epoch, and returns the per-epoch
 * records. Throws a `RangeError` for invalid options, a dataset without train or val items, an `out` that holds a
 * checkpoint without `resume` (or none with it), and a resume with options that differ from the saved ones.
 */
export async function finetune(options: FinetuneOptions): Promise<FinetuneResult> {
  const s = settingsOf(options);
  const train = splitOf(options.dataset, "train"), val = splitOf(options.dataset, "val");
  const test = splitOf(options.dataset, "test");
  const numClasses = options.dataset.classNames.length;
  const attributes = options.attributes && checkedAttributes(options.attributes, numClasses);
  if (train.items.length === 0 || val.items.length === 0) {
    throw new RangeError(
      `finetune: ${options.dataset.name} has ${train.items.length} train and ${val.items.length} val items; ` +
        `both are needed (carve val from train with splitValidation)`,
    );
  }
  const { name, config, preprocessing } = resolveTimmConfig(options.model, {
    overrides: { numClasses: attributes ? attributes.sizes.reduce((a, b) => a + b, 0) : numClasses },
    preprocessing: options.preprocessing,
  });
  const micro = Math.ceil(s.batchSize / s.accumulation);
  if (tf.getBackend() === "webgpu" && micro * timmActivationBytes(config) > 128 * 2 ** 20) {
    throw new RangeError(
      `finetune: micro-batches of ${micro} images need tensors of ${
        (micro * timmActivationBytes(config) / 2 ** 20).toFixed(0)
      } MiB, over WebGPU's 128 MiB binding limit (results would be silently wrong); raise accumulation`,
    );
  }
  const paths = {
    state: join(options.out, "state.safetensors"),
    model: join(options.out, "model.safetensors"),
    run: join(options.out, "run.json"),
  };
  const identity = {
    model: name,
    config,
    preprocessing,
    weights: options.weights ?? null,
    dataset: options.dataset.name,
    train: idsHash(train),
    val: idsHash(val),
    settings: s,
    ...(attributes ? { attributes } : {}),
  };
  const modelMeta = { config, preprocessing };
  const decoder = options.decoder ?? await selectImageDecoder("auto");
  const transform: TransformConfig = { ...preprocessing, size: preprocessing.inputSize[1] };
  const shapes = timmParameterShapes(config);
  const groups = parameterGroups(config, shapes, s.layerDecay);
  const adamSettings = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };

  let run: Run;
  let initialization: Record<string, unknown>;
  if (options.resume) {
    if (!existsSync(paths.state)) {
      throw new RangeError(`finetune: resume asked, but ${paths.state} does not exist; run without resume`);
    }
    const restored = await readCheckpoint<EpochRecord>(paths, [...shapes.keys()], identity, modelMeta);
    const params = toVariables(restored.params);
    run = {
      model: { config, params },
      optimizer: new AdamW(params, adamSettings, restored),
      alpha: restored.alpha,
      epoch: restored.epoch,
      history: restored.history,
    };
    initialization = { resumedAtEpoch: restored.epoch };
  } else {
    if (existsSync(paths.state)) {
      throw new RangeError(
        `finetune: ${paths.state} exists; pass resume: true (--resume) to continue that run, or another out`,
      );
    }
    const { tensors, weightsSha256, ignored } = await initialParameters(options, config, s.seed);
    mkdirSync(options.out, { recursive: true }); // only once the weights have been read
    const params = toVariables(tensors);
    run = {
      model: { config, params },
      optimizer: new AdamW(params, adamSettings),
      alpha: new Float32Array(train.items.length).fill(1),
      epoch: 0,
      history: [],
    };
    initialization = { weights: options.weights ?? `random (seed ${s.seed})`, weightsSha256, ignored };
  }

  const stepsPerEpoch = Math.ceil(train.items.length / s.batchSize);
  const schedule = {
    base: s.learningRate,
    min: s.minLearningRate,
    warmup: Math.round(s.warmupEpochs * stepsPerEpoch),
    total: s.epochs * stepsPerEpoch,
  };
  const reader: SplitReader = {
    decoder,
    transform,
    channels: config.inChans,
    bannerHeight: options.dataset.bannerHeight,
    batchSize: options.evalBatchSize ?? 64,
  };
  // class log-likelihoods from attribute log-probabilities: log p(c | x) = Σ_g log p_g(a_g(c) | x) = logp · M
  const decode = attributes && tf.tensor2d(attributeDecoder(attributes), [config.numClasses, numClasses]);
  /** Class probabilities [n, K] and features [n, D] of a split under the eval transform. */
  const evaluate = async (split: SplitItems) => {
    const [probabilities, features] = await forwardSplit(split.items, reader, (images) => {
      const out = timmForward(config, run.model.params, images);
      const logits: tf.Tensor2D = decode
        ? tf.matMul(groupLogSoftmax(out.logits!, attributes!.sizes), decode)
        : out.logits!;
      return [tf.softmax(logits) as tf.Tensor2D, out.features];
    });
    return { probabilities, features };
  };

  /** Update t on train rows `positions` (augmentation seeds `seeds`); returns Σ α_i CE_i, Σ α_i and η_t. */
  const update = async (positions: Int32Array, seeds: Uint32Array, t: number) => {
    const eta = cosineLearningRate(t, schedule);
    const items = Array.from(positions, (i) => train.items[i]);
    const { pixels } = await readImageBatch(items.map((item) => item.path), {
      decoder,
      transform: (image, i) => trainTransform(image, transform, new Random(seeds[i]), s.augmentation),
      bannerHeight: options.dataset.bannerHeight,
    });
    const alpha = Float32Array.from(positions, (i) => run.alpha[i]);
    const normalizer = alpha.reduce((a, b) => a + b, 0);
    if (!(normalizer > 0)) return { weighted: 0, mass: 0, eta }; // zero-weight points only: nothing to learn
    const perImage = pixels.length / items.length;
    let sum: Map<string, tf.Tensor> | undefined, loss = 0;
    for (let start = 0; start < items.length; start += micro) {
      const end = Math.min(items.length, start + micro);
      const images = tf.tensor4d(pixels.subarray(start * perImage, end * perImage), [
        end - start,
        transform.size,
        transform.size,
        config.inChans,
      ]);
      const result = weightedLossGradients(run.model, {
        images,
        labels: Int32Array.from(
          [...positions.subarray(start, end)].flatMap((i) =>
            attributes ? attributes.values[train.labels[i]] : [train.labels[i]]
          ),
        ),
        alpha: alpha.subarray(start, end),
      }, { labelSmoothing: s.labelSmoothing, normalizer, groups: attributes?.sizes });
      images.dispose();
      loss += await readScalar(result.loss);
      if (!sum) {
        sum = result.gradients;
      } else {
        for (const [key, g] of result.gradients) {
          const total = tf.add(sum.get(key)!, g);
          tf.dispose([sum.get(key)!, g]);
          sum.set(key, total);
        }
      }
    }
    const gradients = sum!;
    if (s.clipNorm > 0) {
      const norm = Math.sqrt(
        await readScalar(tf.tidy(() => tf.addN([...gradients.values()].map((g) => tf.sum(tf.square(g)))))),
      );
      const factor = Math.min(1, s.clipNorm / (norm + 1e-6));
      if (factor < 1) {
        for (const [key, g] of gradients) {
          gradients.set(key, tf.mul(g, factor));
          g.dispose();
        }
      }
    }
    run.optimizer.update(run.model.params, gradients, (key) => {
      const group = groups.get(key)!;
      return { learningRate: eta * group.lrScale, weightDecay: group.weightDecay ? s.weightDecay : 0 };
    });
    tf.dispose([...gradients.values()]);
    return { weighted: loss * normalizer, mass: normalizer, eta };
  };

  try {
    let stopped = false;
    while (run.epoch < s.epochs && !stopped) {
      const started = performance.now();
      const { order, seeds } = epochPlan(s.seed, run.epoch, train.items.length);
      const bar = options.progressBar
        ? new Progress(`epoch ${run.epoch + 1}/${s.epochs}`, train.items.length, "img")
        : undefined;
      let weighted = 0, mass = 0, eta = 0;
      for (let b = 0; b < stepsPerEpoch; b++) {
        const start = b * s.batchSize, end = Math.min(order.length, start + s.batchSize);
        const result = await update(
          order.subarray(start, end),
          seeds.subarray(start, end),
          run.epoch * stepsPerEpoch + b,
        );
        [weighted, mass, eta] = [weighted + result.weighted, mass + result.mass, result.eta];
        if (end < order.length) bar?.update(end); // finish() prints the final line
      }
      bar?.finish();
      const trainSeconds = (performance.now() - started) / 1000;
      const carrotEpoch = s.mode === "carrot" && (run.epoch + 1) % s.alphaUpdate.every === 0 &&
        run.epoch + 1 < s.epochs;
      const { probabilities, features } = await evaluate(val);
      const metrics = metricsFromProbabilities(probabilities, val.labels, numClasses);
      let alphaRecord: EpochRecord["alphaUpdate"];
      if (carrotEpoch) {
        const trainFeatures = (await evaluate(train)).features;
        const step = await alphaStep(
          { features: trainFeatures, labels: train.labels, alpha: run.alpha },
          { features, labels: val.labels },
          { ...s.alphaUpdate, numClasses },
        );
        [run.alpha, alphaRecord] = [step.alpha, step.record];
      }
      run.epoch++;
      const record: EpochRecord = {
        epoch: run.epoch,
        trainLoss: weighted / mass,
        valLoss: metrics.nll,
        valTop1: metrics.accuracy,
        learningRate: eta,
        alpha: alphaStats(run.alpha, train.labels, numClasses),
        ...(alphaRecord ? { alphaUpdate: alphaRecord } : {}),
        seconds: (performance.now() - started) / 1000,
        imagesPerSecond: train.items.length / trainSeconds,
      };
      run.history.push(record);
      await writeCheckpoint(paths, {
        epoch: run.epoch,
        step: run.optimizer.step,
        alpha: run.alpha,
        params: run.model.params,
        m: run.optimizer.m,
        v: run.optimizer.v,
        identity,
        history: run.history,
      }, modelMeta);
      await writeJsonAtomic(paths.run, {
        format: "carrot-finetune-run",
        version: 1,
        identity,
        initialization,
        backend: tf.getBackend(),
        history: run.history,
      });
      await options.onEpoch?.(record);
      stopped = options.signal?.aborted ?? false;
    }
    const finished = run.epoch >= s.epochs;
    let testTop1: number | undefined;
    if (finished && test.items.length > 0) {
      testTop1 = metricsFromProbabilities((await evaluate(test)).probabilities, test.labels, numClasses)
        .accuracy;
    }
    return {
      history: run.history,
      alpha: run.alpha,
      model: paths.model,
      state: paths.state,
      config,
      preprocessing,
      testTop1,
      finished,
    };
  } finally {
    decode?.dispose();
    run.optimizer.dispose();
    tf.dispose([...run.model.params.values()]);
  }
}

/** Validates attribute targets against K classes; returns them. */
function checkedAttributes(attributes: AttributeTargets, numClasses: number): AttributeTargets {
  const { sizes, values } = attributes;
  const ok = sizes.length >= 1 && sizes.every((v) => Number.isInteger(v) && v >= 1) &&
    values.length === numClasses &&
    values.every((row) =>
      row.length === sizes.length && row.every((v, g) => Number.isInteger(v) && v >= 0 && v < sizes[g])
    );
  if (!ok) {
    throw new RangeError(
      `finetune: attributes need sizes ≥ 1 and one row of ${sizes.length} values per class (${numClasses} ` +
        `classes), each value in 0..size − 1`,
    );
  }
  return attributes;
}

/** M [Σ s_g, K] with M[offset_g + a_g(c), c] = 1: class scores = attribute log-probabilities · M. */
function attributeDecoder({ sizes, values }: AttributeTargets): Float32Array {
  const k = values.length, m = new Float32Array(sizes.reduce((a, b) => a + b, 0) * k);
  values.forEach((row, c) => {
    let offset = 0;
    row.forEach((v, g) => {
      m[(offset + v) * k + c] = 1;
      offset += sizes[g];
    });
  });
  return m;
}

function toVariables(tensors: Map<string, tf.Tensor>): Map<string, tf.Variable> {
  return new Map([...tensors].map(([key, t]) => {
    const variable = tf.variable(t, true);
    t.dispose(); // the variable holds its own reference to the data
    return [key, variable];
  }));
}

/** The starting weights: `weights` with a zero K-class head, or random weights from `seed`. */
async function initialParameters(
  options: FinetuneOptions,
  config: TimmConfig,
  seed: number,
): Promise<{ tensors: Map<string, tf.Tensor>; weightsSha256: string; ignored: string[] }> {
  const shapes = timmParameterShapes(config);
  if (!options.weights) {
    const random = randomTimmWeights(config, seed);
    const tensors = new Map(
      [...shapes.keys()].map((
        key,
      ) => [key, tf.tensor(random.get(key)!.values as Float32Array, shapes.get(key))]),
    );
    return { tensors, weightsSha256: `random:${seed}`, ignored: [] };
  }
  const loaded = await loadTimmParameters({ ...config, numClasses: 0 }, options.weights, { strict: false });
  const tensors = new Map<string, tf.Tensor>();
  for (const [key, shape] of shapes) tensors.set(key, loaded.tensors.get(key) ?? tf.zeros(shape));
  return { tensors, weightsSha256: loaded.weightsSha256, ignored: loaded.report.unexpected };
}
