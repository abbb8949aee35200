/**
 * The contract every backbone (ViT, Swin) fulfils, and the shared wrapper that implements its input checks,
 * batch splitting, head and disposal around an architecture's feature function.
 *
 * `forwardFeatures` returns the pooled pre-logits features h [B, D] (timm's `forward_head(x, pre_logits=True)`):
 * the feature cache stores them and the CARROT head replaces `forwardHead`.
 */
import * as tf from "@tensorflow/tfjs";
import { type Linear, linear } from "./_layers.ts";

/** timm's data config: what the images fed to `forwardFeatures` must have gone through. */
export interface Preprocessing {
  /** [channels, height, width]. */
  inputSize: [number, number, number];
  /** Per-channel mean subtracted after scaling pixels to [0, 1]. */
  mean: [number, number, number];
  /** Per-channel std divided by after subtracting the mean. */
  std: [number, number, number];
  /** Resize filter of the eval transform. */
  interpolation: "bicubic" | "bilinear";
  /** Eval transform: resize the shorter side to ⌊size / cropPct⌋, then centre-crop `size`. */
  cropPct: number;
}

/** What loading did to the checkpoint's keys, for provenance and debugging. */
export interface LoadReport {
  /** File read, or "(memory)" for in-memory weights. */
  source: string;
  /** [checkpoint key, model key] pairs that were renamed (old timm layouts). */
  renamed: [string, string][];
  /** Checkpoint keys dropped on purpose (buffers that are recomputed, layers this model does not have). */
  ignored: string[];
  /** Checkpoint keys the model does not know, ignored because `strict` was false. */
  unexpected: string[];
  /** Keys whose values were resampled to the configured resolution. */
  resampled: string[];
}

/** A feature extractor with an optional classifier head. Tensors returned by its methods belong to the caller. */
export interface Backbone<Config = unknown> {
  /** Registered timm name, or "custom" for an explicit config. */
  readonly name: string;
  /** The architecture config the model was built with (after overrides and defaults). */
  readonly config: Config;
  /** What images must go through before `forwardFeatures` (timm's data config). */
  readonly preprocessing: Preprocessing;
  /** Feature dimension D of `forwardFeatures`. */
  readonly numFeatures: number;
  /** Number of classes of the head; 0 when it has none. */
  readonly numClasses: number;
  /** Hex SHA-256 of the weights file (or of the in-memory tensors), for cache keys. */
  readonly weightsSha256: string;
  /** What loading did to the checkpoint's keys. */
  readonly report: LoadReport;
  /** Pooled features h = pre-logits [B, D] of NHWC images [B, H, W, C] that were normalised with `preprocessing`. */
  forwardFeatures(images: tf.Tensor4D): tf.Tensor2D;
  /** Logits z = W h + b [B, K] from pooled features [B, D]; null when the model has no head. */
  forwardHead(features: tf.Tensor2D): tf.Tensor2D | null;
  /** `forwardHead(forwardFeatures(images))`. */
  forward(images: tf.Tensor4D): tf.Tensor2D | null;
  /** Frees every weight tensor; the model cannot be used afterwards. */
  dispose(): void;
}

/** What a differentiable forward from timm-layout tensors returns (`timmForward`). */
export interface DifferentiableOutputs {
  /** Pooled features h [B, D]. */
  features: tf.Tensor2D;
  /** Logits z = W h + b [B, K], or null when the config has no head (numClasses 0). */
  logits: tf.Tensor2D | null;
}

/** Where one model tensor comes from in the checkpoint, its shape there, and a reshaping of its values. */
export interface PlannedTensor {
  /** Checkpoint key read. */
  source: string;
  /** Shape after `transform` (the checkpoint's shape when there is none). */
  shape: number[];
  /** Rewrites the values, e.g. resamples a position embedding. */
  transform?: (values: Float32Array) => Float32Array;
}

/** The result of a `filter…Checkpoint`: model key → planned tensor, plus what was renamed, dropped, resampled. */
export interface CheckpointPlan {
  /** Model key → where its values come from. */
  tensors: Map<string, PlannedTensor>;
  /** [checkpoint key, model key] pairs that were renamed. */
  renamed: [string, string][];
  /** Checkpoint keys dropped on purpose. */
  ignored: string[];
  /** Model keys whose values are resampled. */
  resampled: string[];
}

/** What an architecture hands to `makeBackbone`. */
export interface BackboneParts<Config> {
  name: string;
  config: Config;
  preprocessing: Preprocessing;
  weightsSha256: string;
  report: LoadReport;
  numFeatures: number;
  imgSize: number;
  inChans: number;
  /** Pooled features of one chunk of images. */
  features: (images: tf.Tensor4D) => tf.Tensor2D;
  head?: Linear;
  /** Bytes of the largest intermediate tensor per image, used to split batches. */
  bytesPerImage: number;
  /** Every tensor the model owns (weights and precomputed constants). */
  tensors: tf.Tensor[];
}

/**
 * Builds a `Backbone`: checks the input shape, splits the batch so that no intermediate tensor exceeds
 * `maxTensorBytes` (WebGPU silently computes garbage for bindings over 128 MiB, `../shared/STACK.md`), applies the
 * head, and frees `tensors` on `dispose`.
 */
export function makeBackbone<Config>(parts: BackboneParts<Config>, maxTensorBytes: number): Backbone<Config> {
  const chunk = Math.max(1, Math.floor(maxTensorBytes / parts.bytesPerImage));
  let disposed = false;
  const forwardFeatures = (images: tf.Tensor4D): tf.Tensor2D => {
    if (disposed) throw new Error(`${parts.name}: the model was disposed`);
    const [batch, h, w, c] = images.shape;
    if (images.rank !== 4 || h !== parts.imgSize || w !== parts.imgSize || c !== parts.inChans) {
      throw new RangeError(
        `${parts.name}: expected images [B, ${parts.imgSize}, ${parts.imgSize}, ${parts.inChans}] (NHWC, ` +
          `normalised), got [${images.shape.join(", ")}]; resize and crop as model.preprocessing says`,
      );
    }
    if (batch <= chunk) return tf.tidy(() => parts.features(images));
    return tf.tidy(() => {
      const pieces: tf.Tensor2D[] = [];
      for (let start = 0; start < batch; start += chunk) {
        const size = Math.min(chunk, batch - start);
        pieces.push(parts.features(tf.slice(images, [start, 0, 0, 0], [size, -1, -1, -1])));
      }
      return tf.concat(pieces, 0);
    });
  };
  const head = parts.head;
  const forwardHead = (features: tf.Tensor2D): tf.Tensor2D | null =>
    head ? tf.tidy(() => linear(features, head)) : null;
  return {
    name: parts.name,
    config: parts.config,
    preprocessing: parts.preprocessing,
    numFeatures: parts.numFeatures,
    numClasses: head ? head.weight.shape[1] : 0,
    weightsSha256: parts.weightsSha256,
    report: parts.report,
    forwardFeatures,
    forwardHead,
    forward: (images) => head ? tf.tidy(() => linear(forwardFeatures(images), head)) : null,
    dispose: () => {
      if (!disposed) tf.dispose(parts.tensors);
      disposed = true;
    },
  };
}
