/**
 * Picks the tfjs backend once per process and says which one it chose and why.
 *
 * `auto` takes WebGPU only on a real GPU (`requestAdapter()` returns an adapter whose `isFallbackAdapter` is
 * false), else multi-threaded SIMD WASM (through the Deno shim in `_wasm_threads.ts`), else single-threaded
 * WASM, else the pure-JS CPU backend. On the CPU-only machines we measured, WASM is 4–8× faster than WebGPU on
 * Mesa llvmpipe, which is why a fallback adapter is never chosen automatically (`../shared/STACK.md`). On WASM the
 * matrix products go to a native BLAS (OpenBLAS) through FFI where one is installed (`native_blas.ts`).
 */
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import "@tensorflow/tfjs-backend-webgpu";
import { getThreadsCount, setThreadsCount } from "@tensorflow/tfjs-backend-wasm";
import { withWasmThreads } from "./_wasm_threads.ts";
import { log } from "./progress.ts";
import { InputError } from "./errors.ts";
import { enableNativeBlas } from "./native_blas.ts";
import { mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** What the caller asks for. */
export type BackendPreference = "auto" | "webgpu" | "wasm" | "cpu";

/** The backend in use, and the reason it was taken. */
export interface BackendChoice {
  /** The tfjs backend now active. */
  backend: "webgpu" | "wasm" | "cpu";
  /** Why it was chosen (and why the others were not), as logged. */
  reason: string;
  /** WASM threads actually running (1 for single-threaded WASM, 0 for other backends). */
  threads: number;
  /** Adapter description when a WebGPU adapter was found (real or fallback). */
  adapter?: string;
  /** WASM: whether matrix products run on a native BLAS (`native_blas.ts`). */
  nativeBlas?: boolean;
}

/** Options of `selectBackend`. */
export interface SelectBackendOptions {
  /** WASM threads to request (default: `navigator.hardwareConcurrency`, at most 8). 1 disables the shim. */
  threads?: number;
  /** Do not log the choice (default false). */
  quiet?: boolean;
  /**
   * WASM only: the native BLAS for matrix products (`native_blas.ts`): a library path, `"off"`, or undefined for
   * `$CARROT_BLAS`, then OpenBLAS where installed.
   */
  blas?: string;
}

let current: BackendChoice | undefined;
let currentPreference: BackendPreference | undefined;
let wasmChoice: BackendChoice | undefined;

interface AdapterInfo {
  real: boolean;
  description: string;
}

/**
 * Mesa's Vulkan driver prints `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` twice when the
 * adapter is probed without that variable (containers, CI, ssh without a login session). Give the process a private
 * runtime folder instead — `$TMPDIR/carrot-runtime-<uid>`, mode 0700, reused across runs, or a fresh temporary one
 * when that path is not ours — before the driver reads the variable.
 */
function ensureRuntimeDir(): void {
  if (Deno.env.get("XDG_RUNTIME_DIR")) return;
  let dir = join(tmpdir(), `carrot-runtime-${Deno.uid() ?? "user"}`);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (_exists) {
    const stat = Deno.statSync(dir);
    if (!stat.isDirectory || stat.uid !== Deno.uid() || ((stat.mode ?? 0) & 0o077) !== 0) {
      dir = Deno.makeTempDirSync({ prefix: "carrot-runtime-" });
    }
  }
  Deno.env.set("XDG_RUNTIME_DIR", dir);
}

async function probeAdapter(): Promise<AdapterInfo | undefined> {
  const gpu = (navigator as { gpu?: GPU }).gpu;
  if (!gpu) return undefined;
  ensureRuntimeDir();
  const adapter = await gpu.requestAdapter();
  if (!adapter) return undefined;
  // The flag moved from GPUAdapter to GPUAdapterInfo in newer WebGPU drafts (Deno 2.9 has it on `info`);
  // software rasterisers are treated as fallback adapters whatever the flag says.
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const description = info?.description || info?.device || info?.vendor || "unknown adapter";
  const flagged = (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? info?.isFallbackAdapter ??
    false;
  const software = /llvmpipe|lavapipe|swiftshader|software/i.test(description);
  return { real: !flagged && !software, description };
}

/** WASM with its matrix products on a native BLAS where one loads (`native_blas.ts`), said in `reason`. */
async function useWasm(
  threads: number,
  blas: SelectBackendOptions["blas"],
): Promise<BackendChoice | undefined> {
  const wasm = await startWasm(threads);
  if (!wasm) return undefined;
  const status = enableNativeBlas({ library: blas, threads: wasm.threads });
  return { ...wasm, reason: `${wasm.reason}; ${status.description}`, nativeBlas: status.active };
}

async function startWasm(threads: number): Promise<BackendChoice | undefined> {
  if (wasmChoice) return (await tf.setBackend("wasm")) ? wasmChoice : undefined; // initialised once per process
  if (threads > 1) {
    try {
      tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true);
      setThreadsCount(threads);
      if (await withWasmThreads(threads, () => tf.setBackend("wasm"))) {
        const running = getThreadsCount();
        wasmChoice = {
          backend: "wasm",
          reason: `multi-threaded SIMD WASM (${running} threads)`,
          threads: running,
        };
        return wasmChoice;
      }
    } catch (_e) {
      // fall through to single-threaded SIMD below, which says that the shim failed
    }
    tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false); // the wasm factory re-reads the flag on retry
  }
  if (await tf.setBackend("wasm")) {
    const simd = await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT");
    const note = threads > 1 ? " (thread shim failed)" : "";
    wasmChoice = {
      backend: "wasm",
      reason: `${simd ? "SIMD" : "plain"} WASM, single-threaded${note}`,
      threads: 1,
    };
    return wasmChoice;
  }
  return undefined;
}

/**
 * Selects and initialises the tfjs backend: `auto` = WebGPU on a real GPU adapter, else WASM (threaded if the
 * shim works), else CPU; an explicit preference is honoured or throws with the reason. Idempotent: a second call
 * with the same preference returns the first choice. Logs the choice unless `quiet`.
 */
export async function selectBackend(
  preference: BackendPreference = "auto",
  options: SelectBackendOptions = {},
): Promise<BackendChoice> {
  if (current && currentPreference === preference && tf.getBackend() === current.backend) return current;
  tf.enableProdMode();
  const threads = Math.max(1, Math.min(options.threads ?? navigator.hardwareConcurrency ?? 1, 8));
  let choice: BackendChoice | undefined;
  if (preference === "cpu") {
    await tf.setBackend("cpu");
    choice = { backend: "cpu", reason: "requested", threads: 0 };
  } else if (preference === "wasm") {
    choice = await useWasm(threads, options.blas);
    if (!choice) throw new Error("selectBackend: the tfjs WASM backend failed to initialise");
  } else if (preference === "webgpu") {
    const adapter = await probeAdapter();
    if (!adapter) {
      throw new InputError(
        "selectBackend: WebGPU requested but navigator.gpu.requestAdapter() returned no adapter",
        { hint: "install Vulkan drivers (e.g. `apt-get install mesa-vulkan-drivers`) or use --backend wasm" },
      );
    }
    if (!(await tf.setBackend("webgpu"))) {
      throw new Error("selectBackend: the tfjs WebGPU backend failed to start");
    }
    choice = {
      backend: "webgpu",
      reason: adapter.real ? "requested, real GPU" : "requested; fallback adapter (CPU emulation, slow)",
      threads: 0,
      adapter: adapter.description,
    };
  } else {
    const adapter = await probeAdapter();
    if (adapter?.real && await tf.setBackend("webgpu")) {
      choice = { backend: "webgpu", reason: "real GPU adapter", threads: 0, adapter: adapter.description };
    } else {
      const why = adapter ? `only a fallback adapter (${adapter.description})` : "no WebGPU adapter";
      const wasm = await useWasm(threads, options.blas);
      if (wasm) {
        choice = { ...wasm, reason: `${why}; ${wasm.reason}`, adapter: adapter?.description };
      } else {
        await tf.setBackend("cpu");
        choice = { backend: "cpu", reason: `${why}; WASM failed to initialise`, threads: 0 };
      }
    }
  }
  current = choice;
  currentPreference = preference;
  if (!options.quiet) log(`backend: ${choice.backend} (${choice.reason})`);
  return choice;
}

/**
 * Terminates the WASM pthread workers and forgets the choice, so that a later `selectBackend` starts the backend
 * afresh (tests switch thread counts this way). A script need not call it to exit: the workers do not hold the
 * event loop (`_wasm_threads.ts`, point 5); tasks still call it before exit to end them early. Safe to call more
 * than once.
 */
export function releaseBackend(): void {
  if (wasmChoice && wasmChoice.threads > 1) {
    const factory = tf.findBackendFactory("wasm");
    if (tf.getBackend() === "wasm") tf.setBackend("cpu");
    tf.removeBackend("wasm"); // terminates the pthread workers
    if (factory) tf.registerBackend("wasm", factory, 2); // so that a later selectBackend can start it again
    wasmChoice = undefined;
  }
  current = undefined;
  currentPreference = undefined;
}
