/**
 * Image decoding to 8-bit RGB, as PIL's `Image.open(path).convert("RGB")` gives it to timm: JPEG (baseline,
 * progressive, grayscale, CMYK) and PNG, alpha dropped (not composited), embedded ICC profiles and EXIF
 * orientation ignored. Two decoders, chosen by measurement (shared/STACK.md §4): `sharp` (libvips, native; 4.6 ms
 * per 500×375 JPEG decode+resize) first, and the pure-WASM `@jsquash/jpeg` + `@jsquash/png` (5.3 ms) where the
 * native binary cannot load. Both give PIL's pixels exactly on the test images; the WASM decoder cannot convert
 * CMYK JPEGs and says so.
 */
import { readFile } from "node:fs/promises";
import { cropImage } from "./transforms.ts";
import { InputError } from "../errors.ts";

/** An 8-bit RGB image, rows top to bottom: `data` is [height, width, 3] (HWC). */
export interface RgbImage {
  /** Columns. */
  width: number;
  /** Rows. */
  height: number;
  /** width × height × 3 bytes, R, G, B per pixel. */
  data: Uint8Array;
}

/** The available decoders. */
export type DecoderName = "sharp" | "wasm";

/** A decoder, with the reason it was chosen (fallbacks say why). */
export interface ImageDecoder {
  /** "sharp" (native libvips) or "wasm" (@jsquash codecs). */
  readonly name: DecoderName;
  /** Why this decoder: "requested", or the reason for a fallback. */
  readonly reason: string;
  /** Decodes JPEG or PNG bytes (sharp: also WebP, GIF, TIFF) to RGB. */
  decode(bytes: Uint8Array): Promise<RgbImage>;
}

/** An image file that cannot be read or decoded; `path` names it. */
export class ImageDecodeError extends InputError {
  /** The file that failed. */
  readonly path: string;
  /** `path`: the image file; `message`: why it failed. */
  constructor(path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = "ImageDecodeError";
    this.path = path;
  }
}

interface Sniffed {
  format: "jpeg" | "png" | "other";
  /** JPEG colour components in the frame header (4 = CMYK or YCCK). */
  components?: number;
}

/** The format from the magic bytes and, for JPEG, the component count of the first SOF marker. */
function sniff(bytes: Uint8Array): Sniffed {
  if (bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) {
    return { format: "png" };
  }
  if (bytes[0] !== 0xff || bytes[1] !== 0xd8) return { format: "other" };
  let at = 2;
  while (at + 9 < bytes.length) {
    if (bytes[at] !== 0xff) return { format: "jpeg" };
    const marker = bytes[at + 1];
    if (marker === 0xff) { // fill byte
      at++;
      continue;
    }
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof) return { format: "jpeg", components: bytes[at + 9] };
    if (marker === 0xda) return { format: "jpeg" }; // start of scan: no frame header seen
    at += (marker >= 0xd0 && marker <= 0xd9) || marker === 0x01
      ? 2
      : 2 + (bytes[at + 2] << 8 | bytes[at + 3]);
  }
  return { format: "jpeg" };
}

/** PIL's CMYK → RGB (`Convert.c` cmyk2rgb): R = (255 − K) − C·(255 − K)/255, rounded as PIL's MULDIV255. */
function cmykToRgb(cmyk: Uint8Array, width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    const nk = 255 - cmyk[p * 4 + 3];
    for (let c = 0; c < 3; c++) {
      const t = cmyk[p * 4 + c] * nk + 128;
      data[p * 3 + c] = Math.max(0, nk - (((t >> 8) + t) >> 8));
    }
  }
  return { width, height, data };
}

function dropAlpha(rgba: ArrayLike<number>, width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    data[p * 3] = rgba[p * 4];
    data[p * 3 + 1] = rgba[p * 4 + 1];
    data[p * 3 + 2] = rgba[p * 4 + 2];
  }
  return { width, height, data };
}

async function sharpDecoder(reason: string): Promise<ImageDecoder> {
  const { default: sharp } = await import("sharp");
  return {
    name: "sharp",
    reason,
    async decode(bytes) {
      // ignoreIcc and no autoOrient: PIL's convert("RGB") applies neither.
      const input = sharp(bytes, { ignoreIcc: true });
      if (sniff(bytes).components === 4) { // take the raw CMYK and convert it as PIL does, not via a profile
        const { data, info } = await input.pipelineColourspace("cmyk").toColourspace("cmyk").raw()
          .toBuffer({ resolveWithObject: true });
        return cmykToRgb(data, info.width, info.height);
      }
      const { data, info } = await input.removeAlpha().toColourspace("srgb").raw({ depth: "uchar" })
        .toBuffer({ resolveWithObject: true });
      if (info.channels !== 3) throw new Error(`sharp returned ${info.channels} channels, expected 3`);
      return {
        width: info.width,
        height: info.height,
        data: new Uint8Array(data.buffer, data.byteOffset, data.length),
      };
    },
  };
}

/**
 * A codec's `.wasm` file (`file` relative to the package's `entry`) compiled from its bytes. The codecs would
 * otherwise compile it with `WebAssembly.instantiateStreaming(fetch(…))`, and Deno's streaming compilation can
 * abort the whole process (a V8 "Check failed: validate_functions_job_handle_" panic seen in `deno test
 * --parallel`); compiling a buffer takes the same time here and has no such path.
 */
async function compileCodec(entry: string, file: string): Promise<WebAssembly.Module> {
  return await WebAssembly.compile(await Deno.readFile(new URL(file, import.meta.resolve(entry))));
}

/** The WASM codecs, loaded once: every decoder object shares them, so libjpeg's messages have one destination. */
let wasmCodecs: Promise<ImageDecoder["decode"]> | undefined;

function loadWasmCodecs(): Promise<ImageDecoder["decode"]> {
  wasmCodecs ??= (async () => {
    const [{ default: decodeJpeg, init: initJpeg }, { decode: decodePng, init: initPng }, jpegWasm, pngWasm] =
      await Promise.all([
        import("@jsquash/jpeg/decode.js"),
        import("@jsquash/png/decode.js"),
        compileCodec("@jsquash/jpeg/decode.js", "codec/dec/mozjpeg_dec.wasm"),
        compileCodec("@jsquash/png/decode.js", "codec/pkg/squoosh_png_bg.wasm"),
      ]);
    await initPng(pngWasm);
    // libjpeg's messages go into the error instead of the console (lib/ never prints). The message buffer is
    // shared by every decode, so JPEG decodes run one at a time (the WASM codec is single-threaded anyway):
    // concurrent decodes could otherwise clear or mix each other's messages.
    let libjpegSays = "";
    const capture = (message: string) =>
      void (libjpegSays = libjpegSays ? `${libjpegSays}; ${message}` : message);
    // decode.js takes (module, options); its .d.ts still declares only (options).
    const initJpegWith = initJpeg as (
      module: WebAssembly.Module,
      options: Parameters<typeof initJpeg>[0],
    ) => Promise<void>;
    await initJpegWith(jpegWasm, { print: capture, printErr: capture });
    let previous: Promise<unknown> = Promise.resolve();
    const decodeJpegAlone = (buffer: ArrayBuffer) => {
      const run = previous.then(async () => {
        libjpegSays = "";
        try {
          return await decodeJpeg(buffer);
        } catch (error) {
          throw new Error(libjpegSays ? `${libjpegSays} (libjpeg)` : (error as Error).message);
        }
      });
      previous = run.catch(() => undefined);
      return run;
    };
    return async (bytes: Uint8Array) => {
      const { format, components } = sniff(bytes);
      if (format === "other") throw new Error("not a JPEG or PNG file (the WASM decoder reads only these)");
      if (components === 4) {
        throw new Error(
          "CMYK JPEG, which the WASM decoder cannot convert; use the sharp decoder or save it as RGB",
        );
      }
      const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
      const image = format === "png" ? await decodePng(buffer) : await decodeJpegAlone(buffer);
      return dropAlpha(image.data, image.width, image.height);
    };
  })();
  return wasmCodecs;
}

async function wasmDecoder(reason: string): Promise<ImageDecoder> {
  return { name: "wasm", reason, decode: await loadWasmCodecs() };
}

const chosen = new Map<string, Promise<ImageDecoder>>();

/**
 * The decoder to use, loaded once per preference: "auto" (default) is sharp when its native binary loads, else
 * the WASM codecs, with `reason` saying why; "sharp" throws if it cannot load; "wasm" forces the fallback.
 */
export function selectImageDecoder(preference: "auto" | DecoderName = "auto"): Promise<ImageDecoder> {
  let decoder = chosen.get(preference);
  if (!decoder) {
    decoder = preference === "wasm" ? wasmDecoder("requested") : sharpDecoder(
      preference === "sharp" ? "requested" : "native libvips loads (fastest measured)",
    ).catch((error) => {
      if (preference === "sharp") {
        throw new Error(`selectImageDecoder: sharp cannot load (${(error as Error).message}); use "wasm"`);
      }
      return wasmDecoder(`sharp cannot load (${(error as Error).message.split("\n")[0]})`);
    });
    chosen.set(preference, decoder);
  }
  return decoder;
}

/** Reads and decodes one image file; `bannerHeight` bottom rows are cropped (FGVC-Aircraft's banner). */
export async function readImage(
  path: string,
  decoder: ImageDecoder,
  { bannerHeight = 0 }: { bannerHeight?: number } = {},
): Promise<RgbImage> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new ImageDecodeError(path, `cannot read the file (${(error as Error).message})`);
  }
  let image: RgbImage;
  try {
    image = await decoder.decode(bytes);
  } catch (error) {
    throw new ImageDecodeError(path, `cannot decode with ${decoder.name}: ${(error as Error).message}`);
  }
  if (bannerHeight === 0) return image;
  if (image.height <= bannerHeight) {
    throw new ImageDecodeError(
      path,
      `is ${image.height} pixels high, no taller than the ${bannerHeight}-pixel banner`,
    );
  }
  return cropImage(image, { x: 0, y: 0, width: image.width, height: image.height - bannerHeight });
}

/** An image that `readImageBatch` skipped, and why. */
export interface BadImage {
  /** The image file. */
  path: string;
  /** The `ImageDecodeError` message. */
  reason: string;
}

/** Options of `readImageBatch`. */
export interface ReadImageBatchOptions {
  /** From `selectImageDecoder`. */
  decoder: ImageDecoder;
  /** Image → Float32Array of one fixed length, e.g. `(img) => evalTransform(img, pre)`. */
  transform: (image: RgbImage, index: number) => Float32Array;
  /** Skip unreadable images (listed in `skipped` and `warnings`) instead of throwing. Default false. */
  skipBadImages?: boolean;
  /** Rows to crop at the bottom of every image (`Dataset.bannerHeight`). Default 0. */
  bannerHeight?: number;
  /** Images decoded at once (sharp decodes on libuv's thread pool). Default 4. */
  concurrency?: number;
}

/** The decoded, transformed images stacked in `pixels`, in the order of `loaded` (indices into the paths). */
export interface ImageBatch {
  /** [loaded.length, ...one transform output], row-major. */
  pixels: Float32Array;
  /** Indices into the input paths of the rows of `pixels`. */
  loaded: number[];
  /** The images left out (only with `skipBadImages`), sorted by path. */
  skipped: BadImage[];
  /** "skipped N unreadable images: …" when any were skipped. */
  warnings: string[];
}

/**
 * Decodes and transforms `paths` into one array. By default the first unreadable image throws
 * `ImageDecodeError` with its path; with `skipBadImages` it is left out and reported.
 */
export async function readImageBatch(
  paths: readonly string[],
  options: ReadImageBatchOptions,
): Promise<ImageBatch> {
  const outputs: (Float32Array | undefined)[] = new Array(paths.length);
  const skipped: BadImage[] = [];
  let next = 0;
  const worker = async () => {
    while (next < paths.length) {
      const i = next++;
      try {
        const image = await readImage(paths[i], options.decoder, { bannerHeight: options.bannerHeight });
        outputs[i] = options.transform(image, i);
      } catch (error) {
        if (!(options.skipBadImages && error instanceof ImageDecodeError)) throw error;
        skipped.push({ path: paths[i], reason: error.message });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 4) }, worker));
  const loaded = outputs.flatMap((output, i) => (output ? [i] : []));
  const length = loaded.length > 0 ? outputs[loaded[0]]!.length : 0;
  const pixels = new Float32Array(loaded.length * length);
  loaded.forEach((i, row) => {
    if (outputs[i]!.length !== length) {
      throw new RangeError(
        `readImageBatch: transform gave ${outputs[i]!.length} values for ${paths[i]}, ${length} before`,
      );
    }
    pixels.set(outputs[i]!, row * length);
  });
  skipped.sort((a, b) => a.path.localeCompare(b.path));
  const warnings = skipped.length === 0 ? [] : [
    `skipped ${skipped.length} unreadable image${skipped.length > 1 ? "s" : ""}: ` +
    skipped.slice(0, 10).map((bad) => bad.path).join(", ") + (skipped.length > 10 ? ", …" : ""),
  ];
  return { pixels, loaded, skipped, warnings };
}
