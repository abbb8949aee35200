/** Test helpers for the dataset loaders: miniature layouts in a temp dir, with a real 48×36 JPEG everywhere. */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fixturePath } from "../_assert.ts";

/** A real (grayscale) JPEG for every image file of a miniature tree. */
export const TINY_JPEG: Uint8Array = readFileSync(fixturePath("images/gray.jpg")!);

let base: string | undefined;

/** A fresh folder under one temp dir per test module, removed when the module's tests end. */
export function tempDir(): string {
  if (!base) {
    const created = mkdtempSync(join(tmpdir(), "carrot_data_"));
    globalThis.addEventListener("unload", () => rmSync(created, { recursive: true, force: true }));
    base = created;
  }
  return mkdtempSync(join(base, "t"));
}

/** Writes `files` (path → text or bytes) under a fresh temp folder and returns the folder. */
export function makeTree(files: Record<string, string | Uint8Array>): string {
  const root = tempDir();
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  return root;
}

/** Copies the committed MAT-file fixture `name` to `root/target`. */
export function copyMat(name: string, root: string, target: string): void {
  mkdirSync(dirname(join(root, target)), { recursive: true });
  copyFileSync(fixturePath(`mat/${name}`)!, join(root, target));
}

/** `text` lines joined with newlines, with a trailing newline. */
export function lines(...text: string[]): string {
  return text.join("\n") + "\n";
}
