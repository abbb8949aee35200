/** Atomic file writes for caches and weights: write a temporary name in the same folder, then rename. */
import { basename, dirname, join } from "node:path";

/**
 * Runs `write` on a fresh temporary file next to `path`, flushes it, then renames it over `path`. A crash (even
 * `kill -9`) leaves either the old file or the complete new one, never a truncated `path`; on an exception the
 * temporary file is removed and the exception rethrown.
 */
export async function writeAtomic(path: string, write: (file: Deno.FsFile) => Promise<void>): Promise<void> {
  const temp = join(
    dirname(path),
    `.${basename(path)}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`,
  );
  const file = await Deno.open(temp, { write: true, createNew: true });
  try {
    await write(file);
    await file.syncData();
    file.close();
    await Deno.rename(temp, path);
  } catch (e) {
    try {
      file.close();
    } catch (_closed) {
      // already closed before the rename failed
    }
    await Deno.remove(temp).catch(() => {});
    throw e;
  }
}

/** Writes every byte of `bytes` (`FsFile.write` may write fewer than asked). */
export async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
}

/** `writeAtomic` for a JSON document (two-space indented, trailing newline). */
export function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const bytes = new TextEncoder().encode(JSON.stringify(value, null, 2) + "\n");
  return writeAtomic(path, (file) => writeAll(file, bytes));
}
