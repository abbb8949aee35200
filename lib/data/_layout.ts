/**
 * Checks and parsers that every dataset loader shares: locating the root and its files, reading the
 * whitespace-separated annotation files, verifying that listed images exist, and comparing counts with the
 * official ones. Private to `lib/data/`.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { BoundingBox, DatasetItem, Split } from "./dataset.ts";
import { InputError } from "../errors.ts";

/** The dataset on disk does not have the expected layout or content; the message names the file and the fix. */
export class DatasetError extends InputError {
  /** The file or folder at fault. */
  readonly path: string;
  /** `path`: the file or folder the message is about. */
  constructor(path: string, message: string) {
    super(message);
    this.name = "DatasetError";
    this.path = path;
  }
}

/** What a loader expects on disk, for error messages: a title ("CUB-200-2011") and a layout sketch. */
export interface LayoutSpec {
  title: string;
  layout: string;
}

/** Throws unless `root` is an existing folder. */
export function requireRoot(root: string, spec: LayoutSpec): void {
  if (!existsSync(root)) {
    throw new DatasetError(
      root,
      `${spec.title}: the root folder ${root} does not exist. Expected ${spec.layout}`,
    );
  }
  if (!statSync(root).isDirectory()) {
    throw new DatasetError(
      root,
      `${spec.title}: ${root} is a file; pass the folder that holds ${spec.layout}`,
    );
  }
}

/**
 * The folder that holds `marker`: `root` itself or one of `subfolders` (e.g. the `CUB_200_2011/` an archive
 * extracts to), so users may pass either.
 */
export function resolveRoot(root: string, marker: string, subfolders: string[]): string {
  for (const candidate of [root, ...subfolders.map((sub) => join(root, sub))]) {
    if (existsSync(join(candidate, marker))) return candidate;
  }
  return root;
}

/** The first of `candidates` (relative to `root`) that exists; else a DatasetError naming the file and layout. */
export function requireFile(root: string, candidates: string[], spec: LayoutSpec): string {
  for (const candidate of candidates) {
    const path = join(root, candidate);
    if (existsSync(path)) return path;
  }
  const names = candidates.join(" or ");
  throw new DatasetError(
    join(root, candidates[0]),
    `${spec.title}: required file ${names} is missing under ${root}. Expected ${spec.layout}`,
  );
}

/** One parsed line of a whitespace-separated annotation file. */
export interface Row {
  /** 1-based line number, for messages. */
  line: number;
  /** `columns − 1` whitespace-separated tokens, then the rest of the line (which may contain spaces). */
  fields: string[];
}

/**
 * Reads a whitespace-separated annotation file. The last of `columns` fields takes the rest of the line, so
 * names with spaces survive (FGVC-Aircraft's "F/A-18", NABirds' class names).
 */
export function readRows(path: string, columns: number): Row[] {
  const rows: Row[] = [];
  const lines = readFileSync(path, "utf8").split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i].trim();
    if (text === "") continue;
    const fields: string[] = [];
    let rest = text;
    while (fields.length < columns - 1) {
      const match = /^(\S+)\s+(.*)$/.exec(rest);
      if (!match) break;
      fields.push(match[1]);
      rest = match[2];
    }
    fields.push(rest);
    if (fields.length < columns) {
      throw new DatasetError(path, `${path}:${i + 1}: expected ${columns} fields, got "${text}"`);
    }
    rows.push({ line: i + 1, fields });
  }
  return rows;
}

/** `readRows` keyed by the first field; a repeated id is a DatasetError naming both lines. */
export function readIdTable(path: string, columns: number): Map<string, Row> {
  const table = new Map<string, Row>();
  for (const row of readRows(path, columns)) {
    const previous = table.get(row.fields[0]);
    if (previous) {
      throw new DatasetError(
        path,
        `${path}:${row.line}: duplicate id ${row.fields[0]} (first on line ${previous.line}); ` +
          `the file is corrupt or concatenated, re-extract it`,
      );
    }
    table.set(row.fields[0], row);
  }
  return table;
}

/** Parses an integer field, or throws naming the file and line. */
export function intField(path: string, row: Row, index: number): number {
  const value = Number(row.fields[index]);
  if (!Number.isInteger(value)) {
    throw new DatasetError(
      path,
      `${path}:${row.line}: field ${index + 1} is "${row.fields[index]}", expected an integer`,
    );
  }
  return value;
}

/** Throws unless `ids` have no repeats; `where` names the source (a file, a .mat variable). */
export function assertUniqueIds(ids: Iterable<string>, where: string, path: string): void {
  const seen = new Set<string>();
  for (const id of ids) {
    if (seen.has(id)) {
      throw new DatasetError(path, `${where}: duplicate image id ${id}; each image must be listed once`);
    }
    seen.add(id);
  }
}

/** Throws unless `label` (0-based) is in 0..numClasses−1; `where` names the file and line. */
export function assertLabel(label: number, numClasses: number, where: string, path: string): void {
  if (!Number.isInteger(label) || label < 0 || label >= numClasses) {
    throw new DatasetError(
      path,
      `${where}: label ${label + 1} is outside 1..${numClasses} (the class list has ${numClasses} entries)`,
    );
  }
}

/**
 * Throws when listed images are absent, naming how many and the first few. Reads each folder once instead of
 * stat-ing every file (iNat2017 lists 675k images in 5k folders).
 */
export function assertImagesExist(
  items: readonly DatasetItem[],
  spec: LayoutSpec & { listedIn: string },
): void {
  const listings = new Map<string, Set<string>>();
  const missing: string[] = [];
  for (const item of items) {
    const folder = dirname(item.path);
    let names = listings.get(folder);
    if (!names) {
      names = new Set(existsSync(folder) ? readdirSync(folder) : []);
      listings.set(folder, names);
    }
    if (!names.has(basename(item.path))) missing.push(item.path);
  }
  if (missing.length === 0) return;
  const shown = missing.slice(0, 5).join(", ");
  throw new DatasetError(
    missing[0],
    `${spec.title}: ${missing.length} of ${items.length} images listed in ${spec.listedIn} are missing, e.g. ${shown}. ` +
      `Re-extract the image archive so that the layout is ${spec.layout}, or pass checkImages: false to load the ` +
      `annotations alone`,
  );
}

/** Official image counts per split and the class count, for `countWarnings`. */
export interface OfficialCounts {
  classes: number;
  train: number;
  val?: number;
  test: number;
}

/** A warning for each split (and the class count) that differs from the official release. */
export function countWarnings(
  title: string,
  items: readonly DatasetItem[],
  numClasses: number,
  official: OfficialCounts,
): string[] {
  const found: Record<Split, number> = { train: 0, val: 0, test: 0 };
  for (const item of items) found[item.split]++;
  const warnings: string[] = [];
  for (const split of ["train", "val", "test"] as const) {
    const want = official[split] ?? 0;
    if (found[split] !== want) {
      warnings.push(
        `${title}: ${found[split]} ${split} images, the official release has ${
          want.toLocaleString("en-US")
        } ` +
          `(a subset, a different version, or a partial extraction)`,
      );
    }
  }
  if (numClasses !== official.classes) {
    warnings.push(`${title}: ${numClasses} classes, the official release has ${official.classes}`);
  }
  return warnings;
}

/** A box from 1-based inclusive corners (MATLAB, PASCAL VOC, FGVC-Aircraft) as 0-based x, y, width, height. */
export function boxFromCorners(xmin: number, ymin: number, xmax: number, ymax: number): BoundingBox {
  return { x: xmin - 1, y: ymin - 1, width: xmax - xmin + 1, height: ymax - ymin + 1 };
}
