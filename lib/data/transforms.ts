/**
 * timm's image transforms on 8-bit RGB images, reproducing PIL so that features match PyTorch's:
 * - `resizeImage` is Pillow's separable resampler (`libImaging/Resample.c`): the filter widens by the scale
 *   factor when shrinking (antialiasing), coefficients in 22-bit fixed point, one rounded 8-bit pass per axis.
 * - `evalTransform` is timm's eval transform (`transforms_imagenet_eval`, crop_mode "center"): resize the shorter
 *   side to ⌊size / crop_pct⌋, center-crop `size` (offsets rounded half-to-even, as Python's `round`), scale to
 *   [0, 1] and normalise by mean/std in float32 → Float32Array [size, size, 3] (HWC).
 * - `trainTransform` is torchvision's RandomResizedCrop (timm's defaults scale (0.08, 1), ratio (3/4, 4/3)) and a
 *   horizontal flip, drawn from a seeded `Random`. timm's colour jitter and RandAugment are not included.
 */
import type { Random } from "../random.ts";
import type { BoundingBox } from "./dataset.ts";
import type { RgbImage } from "./images.ts";

/** Resampling filters, as PIL names them. */
export type Interpolation = "bicubic" | "bilinear";

/** A model's input preprocessing (timm's pretrained_cfg: input size, crop_pct, mean, std, interpolation). */
export interface TransformConfig {
  /** Square output side in pixels, e.g. 224. */
  size: number;
  /** Fraction of the resized image kept by the center crop, in (0, 1]; timm's default is 0.875. */
  cropPct: number;
  /** Per-channel mean subtracted after scaling to [0, 1]. */
  mean: readonly [number, number, number];
  /** Per-channel standard deviation divided by after subtracting the mean. */
  std: readonly [number, number, number];
  /** Resize filter; timm's ViT and Swin use bicubic. */
  interpolation: Interpolation;
}

const FILTERS: Record<Interpolation, { support: number; weight: (x: number) => number }> = {
  bicubic: {
    support: 2,
    weight: (x) => { // Keys' cubic convolution with a = −0.5, as PIL
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  },
  bilinear: { support: 1, weight: (x) => Math.max(0, 1 - Math.abs(x)) },
};
const PRECISION_BITS = 32 - 8 - 2;

/** Per output pixel: first input index, tap count and fixed-point weights (PIL's precompute_coeffs). */
function coefficients(inSize: number, outSize: number, interpolation: Interpolation) {
  const filter = FILTERS[interpolation];
  const scale = inSize / outSize, filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize), count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const n = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let total = 0;
    for (let x = 0; x < n; x++) total += k[x] = filter.weight((x + xmin - center + 0.5) / filterScale);
    for (let x = 0; x < n; x++) {
      const w = total !== 0 ? k[x] / total : k[x];
      weights[xx * ksize + x] = Math.trunc(
        w < 0 ? w * (1 << PRECISION_BITS) - 0.5 : w * (1 << PRECISION_BITS) + 0.5,
      );
    }
    first[xx] = xmin;
    count[xx] = n;
  }
  return { first, count, weights, ksize };
}

function clip8(sum: number): number {
  const v = sum >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/**
 * One resampling pass producing outputs [from, from + n) along x (`horizontal`) or y, rounded to 8 bits as PIL
 * does between passes. `image` holds the source lines from `offset` on (PIL's ybox_first trick).
 */
function resamplePass(
  image: RgbImage,
  c: ReturnType<typeof coefficients>,
  horizontal: boolean,
  from: number,
  n: number,
  offset: number,
): RgbImage {
  const { width, height, data } = image;
  const outW = horizontal ? n : width, outH = horizontal ? height : n;
  const out = new Uint8Array(outW * outH * 3);
  const tapStride = horizontal ? 3 : width * 3; // bytes between consecutive taps
  const lines = horizontal ? height : width;
  const rounding = 1 << (PRECISION_BITS - 1);
  for (let i = 0; i < n; i++) {
    const o = from + i, taps = c.count[o], w0 = o * c.ksize, start = c.first[o] - offset;
    for (let line = 0; line < lines; line++) {
      let src = horizontal ? (line * width + start) * 3 : (start * width + line) * 3;
      let r = rounding, g = rounding, b = rounding;
      for (let t = 0; t < taps; t++, src += tapStride) {
        const w = c.weights[w0 + t];
        r += data[src] * w;
        g += data[src + 1] * w;
        b += data[src + 2] * w;
      }
      const dst = horizontal ? (line * outW + i) * 3 : (i * outW + line) * 3;
      out[dst] = clip8(r);
      out[dst + 1] = clip8(g);
      out[dst + 2] = clip8(b);
    }
  }
  return { width: outW, height: outH, data: out };
}

/**
 * Resizes to `width`×`height` with PIL's resampler (horizontal pass first, a pass skipped when its size is
 * unchanged) and returns the `window` of the result (default: all of it). Computing only the window gives the
 * same bytes as resizing and then cropping, at the cost of the window alone.
 */
export function resizeImage(
  image: RgbImage,
  width: number,
  height: number,
  interpolation: Interpolation = "bicubic",
  window: BoundingBox = { x: 0, y: 0, width, height },
): RgbImage {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
    throw new RangeError(`resizeImage: target size must be positive integers, got ${width}×${height}`);
  }
  const { x, y, width: w, height: h } = window;
  if (
    ![x, y, w, h].every(Number.isInteger) || x < 0 || y < 0 || w < 1 || h < 1 || x + w > width ||
    y + h > height
  ) {
    throw new RangeError(
      `resizeImage: window ${JSON.stringify(window)} is not inside the ${width}×${height} output`,
    );
  }
  const horizontal = width !== image.width ? coefficients(image.width, width, interpolation) : undefined;
  const vertical = height !== image.height ? coefficients(image.height, height, interpolation) : undefined;
  let rowStart = y, rowEnd = y + h; // the source rows that the kept output rows read
  if (vertical) {
    rowStart = vertical.first[y];
    rowEnd = 0;
    for (let o = y; o < y + h; o++) rowEnd = Math.max(rowEnd, vertical.first[o] + vertical.count[o]);
  }
  let out = cropImage(image, {
    x: horizontal ? 0 : x,
    y: rowStart,
    width: horizontal ? image.width : w,
    height: rowEnd - rowStart,
  });
  if (horizontal) out = resamplePass(out, horizontal, true, x, w, 0);
  if (vertical) out = resamplePass(out, vertical, false, y, h, rowStart);
  return out;
}

/** The pixels inside `box` (integer coordinates, inside the image); the image itself when the box covers it. */
export function cropImage(image: RgbImage, box: BoundingBox): RgbImage {
  const { x, y, width, height } = box;
  if (
    ![x, y, width, height].every(Number.isInteger) || x < 0 || y < 0 || width < 1 || height < 1 ||
    x + width > image.width || y + height > image.height
  ) {
    throw new RangeError(
      `cropImage: box ${
        JSON.stringify(box)
      } is not an integer box inside the ${image.width}×${image.height} image`,
    );
  }
  if (x === 0 && y === 0 && width === image.width && height === image.height) return image;
  const data = new Uint8Array(width * height * 3);
  for (let row = 0; row < height; row++) {
    const start = ((y + row) * image.width + x) * 3;
    data.set(image.data.subarray(start, start + width * 3), row * width * 3);
  }
  return { width, height, data };
}

/** The image mirrored left–right. */
export function flipHorizontal(image: RgbImage): RgbImage {
  const { width, height, data } = image;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const src = (y * width + x) * 3, dst = (y * width + width - 1 - x) * 3;
      out[dst] = data[src];
      out[dst + 1] = data[src + 1];
      out[dst + 2] = data[src + 2];
    }
  }
  return { width, height, data: out };
}

/**
 * (v / 255 − mean_c) / std_c for every byte, in float32 step by step as torchvision's ToTensor + Normalize compute
 * it → Float32Array HWC. A 256-entry table per channel makes it exact and cheap.
 */
export function normalizeImage(
  image: RgbImage,
  mean: readonly number[],
  std: readonly number[],
): Float32Array {
  const f = Math.fround;
  const tables = [0, 1, 2].map((c) =>
    Float32Array.from({ length: 256 }, (_, v) => f(f(f(v / 255) - f(mean[c])) / f(std[c])))
  );
  const out = new Float32Array(image.data.length);
  for (let i = 0; i < out.length; i += 3) {
    out[i] = tables[0][image.data[i]];
    out[i + 1] = tables[1][image.data[i + 1]];
    out[i + 2] = tables[2][image.data[i + 2]];
  }
  return out;
}

/** Python's round(): half to even. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function checkPreprocessing(pre: TransformConfig, what: string): void {
  if (!(Number.isInteger(pre.size) && pre.size > 0)) {
    throw new RangeError(`${what}: size must be a positive integer`);
  }
  if (!(pre.cropPct > 0 && pre.cropPct <= 1)) {
    throw new RangeError(`${what}: cropPct must lie in (0, 1], got ${pre.cropPct} (timm's default is 0.875)`);
  }
}

/** timm's eval transform: shorter side to ⌊size / cropPct⌋, center crop, normalise → Float32Array [size, size, 3]. */
export function evalTransform(image: RgbImage, pre: TransformConfig): Float32Array {
  checkPreprocessing(pre, "evalTransform");
  const short = Math.floor(pre.size / pre.cropPct);
  const { width: w, height: h } = image;
  const [outW, outH] = w <= h ? [short, Math.trunc(short * h / w)] : [Math.trunc(short * w / h), short];
  const left = roundHalfEven((outW - pre.size) / 2), top = roundHalfEven((outH - pre.size) / 2);
  const window = { x: left, y: top, width: pre.size, height: pre.size };
  return normalizeImage(resizeImage(image, outW, outH, pre.interpolation, window), pre.mean, pre.std);
}

/** Options of `trainTransform`; the defaults are timm's. */
export interface TrainTransformOptions {
  /** Range of the crop's area as a fraction of the image. Default [0.08, 1]. */
  scale?: readonly [number, number];
  /** Range of the crop's aspect ratio (width / height). Default [3/4, 4/3]. */
  ratio?: readonly [number, number];
  /** Probability of a horizontal flip. Default 0.5. */
  flip?: number;
}

/** torchvision's RandomResizedCrop.get_params: ten tries at a random area and log-uniform ratio, then a center crop. */
export function randomResizedCropBox(
  width: number,
  height: number,
  random: Random,
  { scale = [0.08, 1], ratio = [3 / 4, 4 / 3] }: TrainTransformOptions = {},
): BoundingBox {
  const area = width * height;
  const [logLo, logHi] = [Math.log(ratio[0]), Math.log(ratio[1])];
  const between = (lo: number, hi: number) => lo + (hi - lo) * random.uniform();
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * between(scale[0], scale[1]);
    const aspect = Math.exp(between(logLo, logHi));
    const w = roundHalfEven(Math.sqrt(target * aspect)), h = roundHalfEven(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      return { x: random.int(width - w + 1), y: random.int(height - h + 1), width: w, height: h };
    }
  }
  const inRatio = width / height;
  let w = width, h = height;
  if (inRatio < Math.min(...ratio)) h = roundHalfEven(w / Math.min(...ratio));
  else if (inRatio > Math.max(...ratio)) w = roundHalfEven(h * Math.max(...ratio));
  return { x: Math.floor((width - w) / 2), y: Math.floor((height - h) / 2), width: w, height: h };
}

/** Training augmentation: random resized crop to `size`², a random horizontal flip, normalise → [size, size, 3]. */
export function trainTransform(
  image: RgbImage,
  pre: TransformConfig,
  random: Random,
  options: TrainTransformOptions = {},
): Float32Array {
  checkPreprocessing(pre, "trainTransform");
  const box = randomResizedCropBox(image.width, image.height, random, options);
  let out = resizeImage(cropImage(image, box), pre.size, pre.size, pre.interpolation);
  if (random.uniform() < (options.flip ?? 0.5)) out = flipHorizontal(out);
  return normalizeImage(out, pre.mean, pre.std);
}
