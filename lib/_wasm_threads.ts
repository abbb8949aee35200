/**
 * Enables multi-threaded SIMD tfjs-wasm under Deno (private to `lib/`).
 *
 * Under Deno tfjs sees `process` and takes emscripten's Node path, where (1) the thread flag is off by design,
 * (2) the pthread worker is handed a `blob:` URL that `node:worker_threads` rejects, (3) the worker's
 * `Object.assign(global, {location, ...})` throws on Deno's getter-only `location`, and (4) the C++ side caps
 * threads at `cores / 2` (1 on a 2-core machine), and (5) the running pthread workers hold the event loop, so a
 * script would never exit. This module patches each point for the duration of backend initialisation and restores
 * what other libraries read (`os.cpus`) afterwards. Measured facts: `../shared/STACK.md`.
 */
import { Worker as NodeWorker } from "node:worker_threads";
import { createRequire } from "node:module";
import os from "node:os";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);

/** Absolute path of the tfjs-wasm `wasm-out/` folder of the installed npm package. */
export function wasmOutDir(): string {
  return dirname(require.resolve("@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm.wasm"));
}

/** Writes the patched pthread worker once (fixed path beside the package, reused across runs). */
function patchedWorkerPath(out: string): string {
  const { wasmWorkerContents } = require(join(out, "tfjs-backend-wasm-threaded-simd.worker.js")) as {
    wasmWorkerContents: string;
  };
  const source = wasmWorkerContents.replace(/\n/g, "\\n").replace(
    "Object.assign(global,",
    "((t,s)=>{for(const k in s){try{Object.defineProperty(t,k,{value:s[k],writable:true,configurable:true})}catch(_e){}}})(global,",
  );
  const dir = join(out, "..", ".carrot-cache");
  const path = join(dir, "threaded-simd.worker.cjs");
  if (!existsSync(path) || readFileSync(path, "utf8") !== source) {
    mkdirSync(dir, { recursive: true });
    const tmp = `${path}.${Deno.pid}.tmp`;
    writeFileSync(tmp, source);
    Deno.renameSync(tmp, path);
  }
  return path;
}

/**
 * Runs `init` (which must call `tf.setBackend("wasm")`) with the four patches in place, so that the threaded
 * build starts `threads` real threads. `os.cpus` is restored afterwards; the URL and postMessage patches stay,
 * since emscripten spawns workers lazily, and only touch the tfjs worker blob, its `load` message and (unref)
 * the workers its `run` message starts.
 */
export async function withWasmThreads<T>(threads: number, init: () => Promise<T>): Promise<T> {
  const out = wasmOutDir();
  const workerPath = patchedWorkerPath(out);
  const originalCreate = URL.createObjectURL;
  URL.createObjectURL = (o: Blob) =>
    o instanceof Blob && o.type === "application/javascript" ? workerPath : originalCreate(o);
  const originalPost = NodeWorker.prototype.postMessage;
  NodeWorker.prototype.postMessage = function (message: unknown, transfer?: unknown) {
    const m = message as { cmd?: string; urlOrBlob?: unknown } | null;
    const patched = m?.cmd === "load" && typeof m.urlOrBlob !== "string"
      ? { ...m, urlOrBlob: join(out, "tfjs-backend-wasm-threaded-simd.js") }
      : message;
    // deno-lint-ignore no-explicit-any
    originalPost.call(this, patched, transfer as any);
    // (5) emscripten `ref()`s a worker while its pthread runs, and XNNPACK's pool threads run until the backend is
    // removed, so the process would never exit. The main thread only waits on them synchronously inside a kernel,
    // never through the event loop, so they need not hold it: unref them once started.
    if (m?.cmd === "run") this.unref();
  };
  const originalCpus = os.cpus;
  const doubled = () => {
    const c = originalCpus();
    const want = Math.max(threads, 1);
    return Array.from({ length: 2 * want }, (_, i) => c[i % c.length]);
  };
  (os as { cpus: typeof os.cpus }).cpus = doubled;
  try {
    return await init();
  } finally {
    (os as { cpus: typeof os.cpus }).cpus = originalCpus;
  }
}
