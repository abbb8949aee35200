/**
 * The safetensors format (Hugging Face): bytes 0–8 hold a little-endian u64 header length N, bytes 8..8+N a UTF-8
 * JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {str: str}}`, and the rest is
 * the data section, raw little-endian C-order tensors at `8 + N + begin .. 8 + N + end`.
 *
 * Reading streams: the header is validated first (every error names the file), then each tensor's byte range is
 * read once, in file order, straight into its typed array — a 1.2 GB ViT-L file is never held twice or read twice.
 * F16 and BF16 are widened to float32 on read. Writing is atomic (temp name, then rename) with the header padded
 * by spaces so the data section starts on an 8-byte boundary, as the reference implementation does.
 */
import { createHash } from "node:crypto";
import { writeAll, writeAtomic } from "../_atomic.ts";
import { InputTypeError } from "../errors.ts";

/** The dtypes read and written here (safetensors names). F8 formats are refused as unknown. */
export type SafetensorsDtype =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL";

/**
 * Element values of one tensor. Reading gives Float32Array for F32/F16/BF16, Float64Array for F64 and the matching
 * integer array otherwise (BigInt64Array/BigUint64Array for I64/U64, Uint8Array for BOOL). Writing takes the same
 * arrays, except that F16 and BF16 take their raw 16-bit patterns as a Uint16Array.
 */
export type TensorValues =
  | Float64Array
  | Float32Array
  | BigInt64Array
  | BigUint64Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Uint16Array
  | Int8Array
  | Uint8Array;

/** One tensor: dtype, shape (row-major) and values. */
export interface TensorData {
  /** Storage dtype (in the file, or to write). */
  dtype: SafetensorsDtype;
  /** Dimensions, outermost first; [] for a scalar. */
  shape: number[];
  /** Row-major values (see `TensorValues` for the array type of each dtype). */
  values: TensorValues;
}

/** A header entry: dtype, shape and byte range relative to the start of the data section. */
export interface SafetensorsEntry {
  /** Storage dtype. */
  dtype: SafetensorsDtype;
  /** Dimensions, outermost first. */
  shape: number[];
  /** First byte, relative to the data section. */
  begin: number;
  /** One past the last byte, relative to the data section. */
  end: number;
}

/** A validated header. `entries` is in file (offset) order. */
export interface SafetensorsHeader {
  /** The file read. */
  path: string;
  /** `__metadata__`, or {} when absent. */
  metadata: Record<string, string>;
  /** Tensor name → entry, in file order. */
  entries: Map<string, SafetensorsEntry>;
  /** Byte position of the data section (8 + header length). */
  dataStart: number;
  /** Size of the file in bytes. */
  fileSize: number;
}

type ArrayMaker = new (length: number) => TensorValues;

/** bytes per element; the array type that reading returns; the array type that writing takes. */
const DTYPES: Record<SafetensorsDtype, { bytes: number; read: ArrayMaker; write: ArrayMaker }> = {
  F64: { bytes: 8, read: Float64Array, write: Float64Array },
  F32: { bytes: 4, read: Float32Array, write: Float32Array },
  F16: { bytes: 2, read: Float32Array, write: Uint16Array },
  BF16: { bytes: 2, read: Float32Array, write: Uint16Array },
  I64: { bytes: 8, read: BigInt64Array, write: BigInt64Array },
  I32: { bytes: 4, read: Int32Array, write: Int32Array },
  I16: { bytes: 2, read: Int16Array, write: Int16Array },
  I8: { bytes: 1, read: Int8Array, write: Int8Array },
  U64: { bytes: 8, read: BigUint64Array, write: BigUint64Array },
  U32: { bytes: 4, read: Uint32Array, write: Uint32Array },
  U16: { bytes: 2, read: Uint16Array, write: Uint16Array },
  U8: { bytes: 1, read: Uint8Array, write: Uint8Array },
  BOOL: { bytes: 1, read: Uint8Array, write: Uint8Array },
};

/** The reference implementation refuses headers over 100 MB; so do we, before allocating them. */
const MAX_HEADER_BYTES = 100_000_000;

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error("safetensors.ts assumes a little-endian platform");
}

function isDtype(x: unknown): x is SafetensorsDtype {
  return typeof x === "string" && Object.hasOwn(DTYPES, x);
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function bytesOf(values: TensorValues): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

async function readExactly(file: Deno.FsFile, into: Uint8Array, path: string, what: string): Promise<void> {
  for (let done = 0; done < into.length;) {
    const n = await file.read(into.subarray(done));
    if (n === null) throw new RangeError(`${path}: truncated while reading ${what}`);
    done += n;
  }
}

/** Validates one header entry and returns it typed; `name` and `path` go into every message. */
function parseEntry(path: string, name: string, raw: unknown, dataBytes: number): SafetensorsEntry {
  const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof raw !== "object" || raw === null) {
    throw new InputTypeError(`${path}: header entry "${name}" is not an object`);
  }
  if (!isDtype(e.dtype)) {
    throw new InputTypeError(
      `${path}: tensor "${name}" has unknown dtype ${JSON.stringify(e.dtype)}; ` +
        `supported: ${Object.keys(DTYPES).join(", ")}`,
    );
  }
  const shape = e.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new InputTypeError(`${path}: tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`);
  }
  const offsets = e.data_offsets;
  if (
    !Array.isArray(offsets) || offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]
  ) {
    throw new RangeError(`${path}: tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataBytes) {
    throw new RangeError(
      `${path}: tensor "${name}" data_offsets [${begin}, ${end}] are out of range: the data section has ` +
        `${dataBytes} bytes (truncated file?)`,
    );
  }
  const expected = numel(shape) * DTYPES[e.dtype].bytes;
  if (end - begin !== expected) {
    throw new RangeError(
      `${path}: tensor "${name}" ${e.dtype} [${shape.join(", ")}] needs ${expected} bytes but data_offsets ` +
        `[${begin}, ${end}] span ${end - begin}`,
    );
  }
  return { dtype: e.dtype, shape: shape.slice(), begin, end };
}

/**
 * Reads and validates the header of `path` without touching the data section. Throws a `RangeError` for a
 * truncated file, offsets out of range, overlapping or leaving gaps, or a byte count that does not match
 * dtype × shape; a `TypeError` for a header that is not JSON, an unknown dtype or a malformed entry.
 */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const file = await Deno.open(path, { read: true });
  try {
    return await readHeader(file, path);
  } finally {
    file.close();
  }
}

async function readHeader(file: Deno.FsFile, path: string): Promise<SafetensorsHeader> {
  const fileSize = (await file.stat()).size;
  if (fileSize < 8) {
    throw new RangeError(`${path}: truncated: ${fileSize} bytes, fewer than the 8-byte header length`);
  }
  const lengthBytes = new Uint8Array(8);
  await readExactly(file, lengthBytes, path, "the header length");
  const headerLength = new DataView(lengthBytes.buffer).getBigUint64(0, true);
  if (headerLength > BigInt(Math.min(MAX_HEADER_BYTES, fileSize - 8))) {
    throw new RangeError(
      `${path}: truncated or not safetensors: the header length says ${headerLength} bytes but ` +
        `${fileSize - 8} follow (limit ${MAX_HEADER_BYTES})`,
    );
  }
  const headerBytes = new Uint8Array(Number(headerLength));
  await readExactly(file, headerBytes, path, "the header");
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw new InputTypeError(`${path}: the header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new InputTypeError(`${path}: the header is not a JSON object`);
  }
  const dataStart = 8 + headerBytes.length;
  const dataBytes = fileSize - dataStart;
  let metadata: Record<string, string> = {};
  const parsed: [string, SafetensorsEntry][] = [];
  for (const [name, raw] of Object.entries(json)) {
    if (name === "__metadata__") {
      if (
        typeof raw !== "object" || raw === null ||
        !Object.values(raw).every((v) => typeof v === "string")
      ) {
        throw new InputTypeError(`${path}: __metadata__ must map strings to strings`);
      }
      metadata = raw as Record<string, string>;
    } else {
      parsed.push([name, parseEntry(path, name, raw, dataBytes)]);
    }
  }
  parsed.sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end);
  let position = 0, previous = "the start of the data section";
  for (const [name, e] of parsed) {
    if (e.begin < position) {
      throw new RangeError(
        `${path}: tensor "${name}" [${e.begin}, ${e.end}] overlaps ${previous} (which ends at ${position})`,
      );
    }
    if (e.begin > position) {
      throw new RangeError(
        `${path}: ${e.begin - position} unreferenced bytes between ${previous} and "${name}"`,
      );
    }
    position = e.end;
    previous = `"${name}"`;
  }
  if (position !== dataBytes) {
    throw new RangeError(
      `${path}: the tensors cover ${position} bytes but the data section has ${dataBytes} (trailing bytes)`,
    );
  }
  return { path, metadata, entries: new Map(parsed), dataStart, fileSize };
}

let halfTable: Float32Array | undefined;

/** IEEE binary16 bit pattern → float32, for all 65,536 patterns (subnormals, ±Inf and NaN included). */
function float16Table(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1, exponent = (h >> 10) & 31, mantissa = h & 1023;
      halfTable[h] = exponent === 0
        ? sign * mantissa * 2 ** -24
        : exponent === 31
        ? (mantissa ? NaN : sign * Infinity)
        : sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
    }
  }
  return halfTable;
}

/** Decodes raw little-endian bytes of `entry` into the array type reading returns (widening F16/BF16). */
function decode(entry: SafetensorsEntry, raw: Uint8Array): TensorValues {
  if (entry.dtype === "F16" || entry.dtype === "BF16") {
    const bits = new Uint16Array(raw.buffer, raw.byteOffset, raw.length / 2);
    const out = new Float32Array(bits.length);
    if (entry.dtype === "F16") {
      const table = float16Table();
      for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
    } else {
      const out32 = new Uint32Array(out.buffer);
      for (let i = 0; i < bits.length; i++) out32[i] = bits[i] << 16;
    }
    return out;
  }
  const Maker = DTYPES[entry.dtype].read;
  const values = new Maker(numel(entry.shape));
  bytesOf(values).set(raw);
  return values;
}

/** Options of `streamSafetensors`. */
export interface StreamSafetensorsOptions {
  /**
   * Called once with the validated header, before any data is read; returns the names to decode (default: all).
   * Throw here to abort without reading the data section.
   */
  select?: (header: SafetensorsHeader) => Iterable<string> | Promise<Iterable<string>>;
  /** Receives each selected tensor as soon as its bytes are read, in file order. */
  onTensor: (name: string, tensor: TensorData) => void | Promise<void>;
  /** Also compute the SHA-256 of the whole file (then every byte is read, selected or not). Default false. */
  sha256?: boolean;
}

/**
 * Streams the tensors of `path` to `onTensor` in file order, reading each byte range once; returns the header and,
 * with `sha256: true`, the hex SHA-256 of the file computed in the same pass. Errors as `readSafetensorsHeader`,
 * plus a `RangeError` when `select` names a tensor the file lacks.
 */
export async function streamSafetensors(
  path: string,
  options: StreamSafetensorsOptions,
): Promise<{ header: SafetensorsHeader; sha256?: string }> {
  const file = await Deno.open(path, { read: true });
  try {
    const header = await readHeader(file, path);
    const wanted = new Set(options.select ? await options.select(header) : header.entries.keys());
    for (const name of wanted) {
      if (!header.entries.has(name)) throw new RangeError(`${path}: no tensor "${name}" in the file`);
    }
    const hash = options.sha256 ? createHash("sha256") : undefined;
    if (hash) {
      const prefix = new Uint8Array(header.dataStart);
      await file.seek(0, Deno.SeekMode.Start);
      await readExactly(file, prefix, path, "the header");
      hash.update(prefix);
    }
    for (const [name, entry] of header.entries) {
      const selected = wanted.has(name);
      if (!selected && !hash) continue;
      await file.seek(header.dataStart + entry.begin, Deno.SeekMode.Start);
      const size = entry.end - entry.begin;
      // F32/F64/int tensors are read straight into the array that is handed over; F16/BF16 into a scratch buffer
      const direct = selected && entry.dtype !== "F16" && entry.dtype !== "BF16";
      const values = direct ? new DTYPES[entry.dtype].read(numel(entry.shape)) : undefined;
      const raw = values ? bytesOf(values) : new Uint8Array(size);
      await readExactly(file, raw, path, `tensor "${name}"`);
      hash?.update(raw);
      if (selected) {
        await options.onTensor(name, {
          dtype: entry.dtype,
          shape: entry.shape,
          values: values ?? decode(entry, raw),
        });
      }
    }
    return { header, sha256: hash?.digest("hex") };
  } finally {
    file.close();
  }
}

/**
 * Reads `path` (all tensors, or the `names` given) into memory: metadata and a name → tensor map in file order.
 * For files larger than memory use `streamSafetensors`.
 */
export async function readSafetensors(
  path: string,
  options: { names?: Iterable<string> } = {},
): Promise<{ metadata: Record<string, string>; tensors: Map<string, TensorData> }> {
  const tensors = new Map<string, TensorData>();
  const { header } = await streamSafetensors(path, {
    select: options.names ? () => options.names! : undefined,
    onTensor: (name, tensor) => void tensors.set(name, tensor),
  });
  return { metadata: header.metadata, tensors };
}

/** A tensor to be written without its values in memory: name, dtype and shape. */
export interface TensorSpec {
  /** Tensor name (not "__metadata__"). */
  name: string;
  /** Storage dtype. */
  dtype: SafetensorsDtype;
  /** Dimensions, outermost first. */
  shape: number[];
}

/** The 8-byte length prefix and the space-padded JSON header for `specs` in the given order. */
function encodeHeader(path: string, specs: TensorSpec[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const { name, dtype, shape } of specs) {
    if (name === "__metadata__") {
      throw new InputTypeError(`${path}: "__metadata__" is reserved and cannot name a tensor`);
    }
    const spec = DTYPES[dtype];
    if (!spec) {
      throw new InputTypeError(`${path}: tensor "${name}" has unknown dtype ${JSON.stringify(dtype)}`);
    }
    const bytes = numel(shape) * spec.bytes;
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + ((8 - (json.length % 8)) % 8)).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(out.length - 8), true);
  out.set(json, 8);
  return out;
}

/**
 * Writes `tensors` to `path` atomically (temporary file in the same folder, then rename), sorted by name, with
 * optional string `metadata`. The JSON header is padded with spaces so that 8 + N is a multiple of 8. Throws a
 * `TypeError` when a tensor's array type does not match its dtype (F16/BF16 take raw bits as Uint16Array) and a
 * `RangeError` when its length is not the product of its shape.
 */
export async function writeSafetensors(
  path: string,
  tensors: ReadonlyMap<string, TensorData> | Record<string, TensorData>,
  options: { metadata?: Record<string, string> } = {},
): Promise<void> {
  const list = (tensors instanceof Map ? [...tensors] : Object.entries(tensors)) as [string, TensorData][];
  list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (const [name, t] of list) {
    const spec = DTYPES[t.dtype];
    if (spec && !(t.values instanceof spec.write)) {
      throw new InputTypeError(
        `${path}: tensor "${name}" is ${t.dtype}, which takes a ${spec.write.name}, got ${t.values.constructor.name}`,
      );
    }
    if (t.values.length !== numel(t.shape)) {
      throw new RangeError(
        `${path}: tensor "${name}" has ${t.values.length} values for shape [${t.shape.join(", ")}]`,
      );
    }
  }
  const header = encodeHeader(
    path,
    list.map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape })),
    options.metadata,
  );
  await writeAtomic(path, async (file) => {
    await writeAll(file, header);
    for (const [, t] of list) await writeAll(file, bytesOf(t.values));
  });
}

/**
 * Writes a safetensors file whose tensor values arrive in pieces, so that a matrix larger than memory (e.g. a
 * train × test score matrix) streams to disk: the header for `specs` (in this order) goes first, then `fill`
 * receives a `write` that appends raw little-endian bytes, which must add up to exactly the declared sizes, in
 * order. Atomic like `writeSafetensors`; throws a `RangeError` naming the file when the byte count is off.
 */
export async function writeSafetensorsStreaming(
  path: string,
  specs: TensorSpec[],
  fill: (write: (values: TensorValues) => Promise<void>) => Promise<void>,
  options: { metadata?: Record<string, string> } = {},
): Promise<void> {
  const header = encodeHeader(path, specs, options.metadata);
  const expected = specs.reduce((s, t) => s + numel(t.shape) * DTYPES[t.dtype].bytes, 0);
  await writeAtomic(path, async (file) => {
    await writeAll(file, header);
    let written = 0;
    await fill(async (values) => {
      const bytes = bytesOf(values);
      if (written + bytes.length > expected) {
        throw new RangeError(`${path}: more data than the ${expected} bytes the header declares`);
      }
      written += bytes.length;
      await writeAll(file, bytes);
    });
    if (written !== expected) {
      throw new RangeError(`${path}: wrote ${written} of the ${expected} declared bytes`);
    }
  });
}
