/**
 * A reader for MATLAB MAT-file version 5 (also what `save -v7` writes): the format of the Stanford Cars devkit
 * and the Stanford Dogs lists. It covers numeric, logical, char, cell and struct arrays, compressed
 * (miCOMPRESSED, zlib) or not, little- or big-endian. Sparse arrays, objects and v7.3 (HDF5) files are refused
 * with a message that says so. Reference: MathWorks, "MAT-File Format", version 5 layout (128-byte header, then
 * tagged data elements padded to 8 bytes; a tag whose upper 16 bits are non-zero is the 4-byte small form).
 */
import { inflateSync } from "node:zlib";
import { InputError, InputTypeError } from "../errors.ts";

/** MATLAB array classes that the reader returns as numbers. */
export type MatNumericClass =
  | "double"
  | "single"
  | "int8"
  | "uint8"
  | "int16"
  | "uint16"
  | "int32"
  | "uint32"
  | "int64"
  | "uint64"
  | "logical";

/**
 * One MATLAB value. `dims` is MATLAB's size vector; `data`, `cells` and `elements` are in MATLAB's
 * column-major order. A char array holds one string per row (a 1×n char array is `rows: [s]`).
 */
export type MatValue =
  | { type: "numeric"; class: MatNumericClass; dims: number[]; data: Float64Array; imag?: Float64Array }
  | { type: "char"; dims: number[]; rows: string[] }
  | { type: "cell"; dims: number[]; cells: MatValue[] }
  | { type: "struct"; dims: number[]; fields: string[]; elements: Record<string, MatValue>[] };

/** A MAT-file that the reader cannot parse; the message names the file (when given) and the cause. */
export class MatFileError extends InputError {
  /** The file or label passed to `readMat`. */
  readonly source: string;
  /** `source`: the file name for messages. */
  constructor(source: string, message: string) {
    super(`${source}: ${message}`);
    this.name = "MatFileError";
    this.source = source;
  }
}

const MI = {
  INT8: 1,
  UINT8: 2,
  INT16: 3,
  UINT16: 4,
  INT32: 5,
  UINT32: 6,
  SINGLE: 7,
  DOUBLE: 9,
  INT64: 12,
  UINT64: 13,
  MATRIX: 14,
  COMPRESSED: 15,
  UTF8: 16,
  UTF16: 17,
  UTF32: 18,
} as const;

const NUMERIC_CLASSES: Record<number, MatNumericClass> = {
  6: "double",
  7: "single",
  8: "int8",
  9: "uint8",
  10: "int16",
  11: "uint16",
  12: "int32",
  13: "uint32",
  14: "int64",
  15: "uint64",
};
const CLASS_CELL = 1, CLASS_STRUCT = 2, CLASS_OBJECT = 3, CLASS_CHAR = 4, CLASS_SPARSE = 5;
const FLAG_COMPLEX = 0x0800, FLAG_LOGICAL = 0x0200;

interface Element {
  type: number;
  data: DataView;
}

/** Walks the tagged data elements of one buffer. */
class ElementReader {
  readonly #view: DataView;
  readonly #little: boolean;
  readonly #source: string;
  #offset: number;

  constructor(view: DataView, offset: number, little: boolean, source: string) {
    this.#view = view;
    this.#offset = offset;
    this.#little = little;
    this.#source = source;
  }

  get done(): boolean {
    return this.#offset + 8 > this.#view.byteLength;
  }

  next(): Element {
    const view = this.#view, at = this.#offset;
    if (at + 4 > view.byteLength) {
      throw new MatFileError(this.#source, `truncated data element at byte ${at}`);
    }
    const first = view.getUint32(at, this.#little);
    if (first >>> 16 !== 0) { // small data element: 2-byte type, 2-byte size, ≤ 4 bytes of data
      const type = first & 0xffff, size = first >>> 16;
      this.#offset = at + 8;
      return { type, data: new DataView(view.buffer, view.byteOffset + at + 4, size) };
    }
    const size = view.getUint32(at + 4, this.#little);
    if (at + 8 + size > view.byteLength) {
      throw new MatFileError(this.#source, `data element at byte ${at} claims ${size} bytes past the end`);
    }
    // miCOMPRESSED payloads are not padded; every other element is padded to a multiple of 8 bytes.
    this.#offset = at + 8 + (first === MI.COMPRESSED ? size : Math.ceil(size / 8) * 8);
    return { type: first, data: new DataView(view.buffer, view.byteOffset + at + 8, size) };
  }
}

/**
 * Parses a MAT-file v5 and returns its variables by name, in file order.
 * `source` (e.g. the path) only labels error messages.
 */
export function readMat(bytes: Uint8Array, source = "MAT-file"): Map<string, MatValue> {
  if (bytes.length < 128) {
    throw new MatFileError(source, `only ${bytes.length} bytes; a MAT-file v5 has ≥ 128`);
  }
  const header = new TextDecoder("latin1").decode(bytes.subarray(0, 116));
  if (header.startsWith("MATLAB 7.3")) {
    throw new MatFileError(source, "is a MAT-file v7.3 (HDF5); re-save it in MATLAB with save(file, '-v7')");
  }
  const endian = String.fromCharCode(bytes[126], bytes[127]);
  if (!header.startsWith("MATLAB") || (endian !== "IM" && endian !== "MI")) {
    throw new MatFileError(source, "is not a MAT-file v5 (no 'MATLAB 5.0' header with an IM/MI endian mark)");
  }
  const little = endian === "IM";
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const variables = new Map<string, MatValue>();
  const reader = new ElementReader(view, 128, little, source);
  while (!reader.done) {
    let element = reader.next();
    if (element.type === MI.COMPRESSED) {
      const raw = new Uint8Array(element.data.buffer, element.data.byteOffset, element.data.byteLength);
      let inflated: Uint8Array;
      try {
        inflated = inflateSync(raw);
      } catch (error) {
        throw new MatFileError(
          source,
          `a compressed variable does not inflate (${(error as Error).message})`,
        );
      }
      element = new ElementReader(
        new DataView(inflated.buffer, inflated.byteOffset, inflated.byteLength),
        0,
        little,
        source,
      ).next();
    }
    if (element.type !== MI.MATRIX) continue; // MATLAB writes nothing else at the top level
    const { name, value } = parseMatrix(element.data, little, source);
    variables.set(name, value);
  }
  return variables;
}

function parseMatrix(data: DataView, little: boolean, source: string): { name: string; value: MatValue } {
  if (data.byteLength === 0) { // an empty array is an miMATRIX with no sub-elements
    return { name: "", value: { type: "numeric", class: "double", dims: [0, 0], data: new Float64Array(0) } };
  }
  const reader = new ElementReader(data, 0, little, source);
  const flagsWord = reader.next().data.getUint32(0, little);
  const mxClass = flagsWord & 0xff;
  const dims = Array.from(numbersOf(reader.next(), little, source));
  const name = textOf(reader.next(), little);
  const count = dims.reduce((a, b) => a * b, 1);
  const where = name || "(unnamed element)";
  if (mxClass === CLASS_CHAR) {
    const text = count === 0 ? "" : textOf(reader.next(), little);
    return { name, value: { type: "char", dims, rows: charRows(text, dims) } };
  }
  if (mxClass === CLASS_CELL) {
    const cells = Array.from({ length: count }, () => parseMatrix(reader.next().data, little, source).value);
    return { name, value: { type: "cell", dims, cells } };
  }
  if (mxClass === CLASS_STRUCT) {
    const nameLength = numbersOf(reader.next(), little, source)[0];
    const packed = reader.next();
    const fields: string[] = [];
    for (let at = 0; at + nameLength <= packed.data.byteLength; at += nameLength) {
      const bytes = new Uint8Array(packed.data.buffer, packed.data.byteOffset + at, nameLength);
      const end = bytes.indexOf(0);
      fields.push(new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end)));
    }
    const elements = Array.from({ length: count }, () => {
      const record: Record<string, MatValue> = {};
      for (const field of fields) record[field] = parseMatrix(reader.next().data, little, source).value;
      return record;
    });
    return { name, value: { type: "struct", dims, fields, elements } };
  }
  const numericClass = NUMERIC_CLASSES[mxClass];
  if (!numericClass) {
    const what = mxClass === CLASS_SPARSE
      ? "a sparse array"
      : mxClass === CLASS_OBJECT
      ? "an object"
      : `class ${mxClass}`;
    throw new MatFileError(source, `variable "${where}" is ${what}, which this reader does not support`);
  }
  const real = count === 0 ? new Float64Array(0) : numbersOf(reader.next(), little, source);
  const value: MatValue = {
    type: "numeric",
    class: flagsWord & FLAG_LOGICAL ? "logical" : numericClass,
    dims,
    data: real,
  };
  if (flagsWord & FLAG_COMPLEX) value.imag = numbersOf(reader.next(), little, source);
  return { name, value };
}

/** Any numeric data element as float64 (MATLAB stores small doubles as miUINT8 etc.; the class decides). */
function numbersOf({ type, data }: Element, little: boolean, source: string): Float64Array {
  const sizes: Record<number, [number, (at: number) => number]> = {
    [MI.INT8]: [1, (at) => data.getInt8(at)],
    [MI.UINT8]: [1, (at) => data.getUint8(at)],
    [MI.INT16]: [2, (at) => data.getInt16(at, little)],
    [MI.UINT16]: [2, (at) => data.getUint16(at, little)],
    [MI.INT32]: [4, (at) => data.getInt32(at, little)],
    [MI.UINT32]: [4, (at) => data.getUint32(at, little)],
    [MI.SINGLE]: [4, (at) => data.getFloat32(at, little)],
    [MI.DOUBLE]: [8, (at) => data.getFloat64(at, little)],
    [MI.INT64]: [8, (at) => Number(data.getBigInt64(at, little))],
    [MI.UINT64]: [8, (at) => Number(data.getBigUint64(at, little))],
  };
  const entry = sizes[type];
  if (!entry) throw new MatFileError(source, `data element of type ${type} where numbers were expected`);
  const [width, get] = entry;
  const out = new Float64Array(data.byteLength / width);
  for (let i = 0; i < out.length; i++) out[i] = get(i * width);
  return out;
}

/** Character data: UTF-8 / UTF-16 / UTF-32 or code units stored as miUINT8/miUINT16/miINT8. */
function textOf({ type, data }: Element, little: boolean): string {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (type === MI.UTF8 || type === MI.INT8 || type === MI.UINT8) {
    return new TextDecoder(type === MI.UTF8 ? "utf-8" : "latin1").decode(bytes);
  }
  if (type === MI.UTF16 || type === MI.UINT16) {
    return new TextDecoder(little ? "utf-16le" : "utf-16be").decode(bytes);
  }
  let out = "";
  for (let at = 0; at + 4 <= data.byteLength; at += 4) {
    out += String.fromCodePoint(data.getUint32(at, little));
  }
  return out;
}

/** Splits column-major char data of an r×c array into its r rows. */
function charRows(text: string, dims: number[]): string[] {
  const chars = Array.from(text);
  const rows = dims[0] ?? 0, cols = chars.length / Math.max(rows, 1);
  return Array.from({ length: rows }, (_, r) => {
    let row = "";
    for (let c = 0; c < cols; c++) row += chars[c * rows + r];
    return row;
  });
}

/** The strings held by a char array (one per row) or a cell array of char arrays (one per cell). */
export function matStrings(value: MatValue, what: string): string[] {
  if (value.type === "char") return value.rows;
  if (value.type === "cell") {
    return value.cells.map((cell, i) => {
      if (cell.type !== "char" || cell.rows.length > 1) {
        throw new InputTypeError(`${what}: cell ${i + 1} is a ${cell.type} array, expected a single string`);
      }
      return cell.rows[0] ?? "";
    });
  }
  throw new InputTypeError(`${what}: is a ${value.type} array, expected strings (char or cell of char)`);
}

/** The numbers held by a numeric or logical array, in column-major order. */
export function matNumbers(value: MatValue, what: string): Float64Array {
  if (value.type !== "numeric") {
    throw new InputTypeError(`${what}: is a ${value.type} array, expected numbers`);
  }
  return value.data;
}

/** One field across every element of a struct array, e.g. `class` of each `annotations` entry. */
export function matField(value: MatValue, field: string, what: string): MatValue[] {
  if (value.type !== "struct") {
    throw new InputTypeError(`${what}: is a ${value.type} array, expected a struct`);
  }
  if (!value.fields.includes(field)) {
    throw new InputTypeError(`${what}: has no field "${field}" (fields: ${value.fields.join(", ")})`);
  }
  return value.elements.map((element) => element[field]);
}
