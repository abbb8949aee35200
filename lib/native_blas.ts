/**
 * A native BLAS behind tfjs-wasm's matrix products: `C_b = op(A_b) · op(B_b)` (BatchMatMul, op = identity or
 * transpose, outer dimensions b broadcast as in NumPy) computed by `cblas_sgemm` of OpenBLAS (or Apple's
 * Accelerate) through Deno's FFI, reading and writing the tensors where they live in the WASM heap — no copy.
 *
 * Why: on the CPU the head's fits are GEMM-bound, and WASM SIMD128 peaks near 44 GFLOP/s on two cores where
 * OpenBLAS's AVX2/AVX-512 kernels reach about 95 (a [5994, 769]·[769, 200] product: 19 ms vs 54 ms here). Every other
 * kernel stays tfjs-wasm's. Float32 throughout, like the kernel it replaces; results differ from XNNPACK's only by
 * rounding (summation order).
 *
 * Which library: `$CARROT_BLAS` (a path; `off` disables), else `libopenblas.so.0` / `libopenblas.so` (Linux; Debian:
 * `apt install libopenblas0`), `libopenblas.dylib` or Accelerate (macOS), `libopenblas.dll` (Windows). Without one,
 * or without `--allow-ffi`, the WASM kernel stays and the status says why. OpenBLAS's run-time CPU detection falls
 * back to its slowest (Prescott, SSE3) kernels on CPUs it does not recognise, which virtual machines often report;
 * unless `$OPENBLAS_CORETYPE` is set, it is set before loading from the CPU flags in /proc/cpuinfo (AVX-512 →
 * SkylakeX, AVX2 + FMA → Haswell).
 */
import * as tf from "@tensorflow/tfjs";
import { readFileSync } from "node:fs";

/** What `enableNativeBlas` did. */
export interface NativeBlasStatus {
  /** Whether tfjs-wasm's BatchMatMul now runs on the native library. */
  active: boolean;
  /** The library loaded (path or name), when active. */
  library?: string;
  /** One line for logs: the library, its build and core, and threads; or why the WASM kernel stays. */
  description: string;
}

const symbols = {
  cblas_sgemm: {
    parameters: [
      "i32", // order (101 = row-major)
      "i32", // transA (111 = no, 112 = yes)
      "i32", // transB
      "i32", // M
      "i32", // N
      "i32", // K
      "f32", // alpha
      "pointer", // A
      "i32", // lda
      "pointer", // B
      "i32", // ldb
      "f32", // beta
      "pointer", // C
      "i32", // ldc
    ],
    result: "void",
  },
  // level 1 (the L-BFGS two-loop recursion, `nativeVectors`)
  cblas_dsdot: { parameters: ["i32", "pointer", "i32", "pointer", "i32"], result: "f64", optional: true },
  cblas_saxpy: {
    parameters: ["i32", "f32", "pointer", "i32", "pointer", "i32"],
    result: "void",
    optional: true,
  },
  cblas_sscal: { parameters: ["i32", "f32", "pointer", "i32"], result: "void", optional: true },
  cblas_scopy: { parameters: ["i32", "pointer", "i32", "pointer", "i32"], result: "void", optional: true },
  openblas_get_config: { parameters: [], result: "pointer", optional: true },
  openblas_get_corename: { parameters: [], result: "pointer", optional: true },
  openblas_set_num_threads: { parameters: ["i32"], result: "void", optional: true },
  openblas_get_num_threads: { parameters: [], result: "i32", optional: true },
} as const;

type Blas = Deno.DynamicLibrary<typeof symbols>;

interface WasmBackendInternals {
  wasm: { HEAPU8: Uint8Array };
  getMemoryOffset(dataId: unknown): number;
  makeOutput(shape: number[], dtype: "float32"): tf.TensorInfo;
}

let blas: Blas | undefined;
let loaded: string | undefined;
let status: NativeBlasStatus = { active: false, description: "not enabled" };
let original: tf.KernelConfig | undefined;
/**
 * Products below this many multiply-adds run on one OpenBLAS thread. Its worker threads compete with tfjs-wasm's
 * for the same cores: on the SynthBirds run ([20, 1200]·[1200, 128] between WASM kernels) two threads made a
 * product 2–10× slower than one; from about 10⁸ multiply-adds the second thread pays (a CUB-sized head product,
 * 9·10⁸: 35 → 18 ms).
 */
const parallelMacs = 1e8;
let parallelThreads = 1, runningThreads = 1;

/** The library names tried, in order, on this platform (after `$CARROT_BLAS`). */
export function nativeBlasCandidates(): string[] {
  switch (Deno.build.os) {
    case "darwin":
      return ["libopenblas.dylib", "/System/Library/Frameworks/Accelerate.framework/Accelerate"];
    case "windows":
      return ["libopenblas.dll"];
    default:
      return ["libopenblas.so.0", "libopenblas.so"];
  }
}

/** OPENBLAS_CORETYPE for this CPU from /proc/cpuinfo's flags, or undefined (not Linux, or no AVX2). */
function coreTypeFromCpuFlags(): string | undefined {
  let flags: Set<string>;
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8").split("\n").find((l) => l.startsWith("flags"));
    flags = new Set((line ?? "").split(":")[1]?.trim().split(/\s+/) ?? []);
  } catch {
    return undefined;
  }
  if (["avx512f", "avx512bw", "avx512dq", "avx512vl"].every((f) => flags.has(f))) return "SkylakeX";
  if (flags.has("avx2") && flags.has("fma")) return "Haswell";
  return undefined;
}

function cString(pointer: Deno.PointerValue): string {
  return pointer ? new Deno.UnsafePointerView(pointer).getCString() : "";
}

/**
 * Routes tfjs-wasm's BatchMatMul to a native `cblas_sgemm` (see the module JSDoc). `library`: a path, `"off"`, or
 * undefined for `$CARROT_BLAS` then the platform's candidates; `threads`: OpenBLAS threads (default its own
 * choice). Never throws: a library that cannot be loaded leaves the WASM kernel in place, and the status says why.
 * Calling it again re-applies the choice (after `disableNativeBlas`, or with another `threads`).
 */
export function enableNativeBlas(options: { library?: string; threads?: number } = {}): NativeBlasStatus {
  const requested = options.library ?? Deno.env.get("CARROT_BLAS");
  if (requested === "off") {
    disableNativeBlas();
    return status = { active: false, description: "native BLAS off (CARROT_BLAS=off); WASM kernels" };
  }
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return status = { active: false, description: "no native BLAS: needs --allow-ffi; WASM kernels" };
  }
  if (!blas || (requested && requested !== loaded)) {
    if (!Deno.env.get("OPENBLAS_CORETYPE")) {
      const core = coreTypeFromCpuFlags();
      if (core) Deno.env.set("OPENBLAS_CORETYPE", core);
    }
    const errors: string[] = [];
    for (const path of requested ? [requested] : nativeBlasCandidates()) {
      try {
        const next = Deno.dlopen(path, symbols);
        blas?.close();
        [blas, loaded] = [next, path];
        break;
      } catch (e) {
        errors.push(`${path}: ${(e as Error).message.split("\n")[0]}`);
      }
    }
    if (loaded !== (requested ?? loaded) || !blas) {
      disableNativeBlas();
      const hint = Deno.build.os === "linux" ? " (Debian/Ubuntu: apt install libopenblas0)" : "";
      return status = {
        active: false,
        description: `no native BLAS${hint}; WASM kernels. Tried ${errors.join("; ")}`,
      };
    }
  }
  const { openblas_set_num_threads, openblas_get_num_threads, openblas_get_config, openblas_get_corename } =
    blas.symbols;
  if (options.threads && openblas_set_num_threads) openblas_set_num_threads(options.threads);
  const build = openblas_get_config ? cString(openblas_get_config()).split(" ").slice(0, 2).join(" ") : "";
  const core = openblas_get_corename ? ` ${cString(openblas_get_corename())}` : "";
  const count = openblas_get_num_threads?.();
  parallelThreads = count ?? 1;
  runningThreads = count ?? 1;
  const threads = count === undefined
    ? ""
    : `, ${count} thread${count === 1 ? "" : "s"}${
      count > 1 ? ` from ${parallelMacs / 1e6}M multiply-adds` : ""
    }`;
  original ??= tf.getKernel(tf.BatchMatMul, "wasm");
  if (!original) {
    return status = { active: false, description: "no native BLAS: tfjs-wasm is not registered" };
  }
  tf.unregisterKernel(tf.BatchMatMul, "wasm");
  tf.registerKernel({ ...original, kernelFunc: nativeBatchMatMul as unknown as tf.KernelFunc });
  return status = {
    active: true,
    library: loaded,
    description: `matMul on ${build || loaded}${core}${threads} (FFI)`,
  };
}

/** Puts tfjs-wasm's own BatchMatMul back (the library stays loaded for a later `enableNativeBlas`). */
export function disableNativeBlas(): void {
  if (original && tf.getKernel(tf.BatchMatMul, "wasm")?.kernelFunc !== original.kernelFunc) {
    tf.unregisterKernel(tf.BatchMatMul, "wasm");
    tf.registerKernel(original);
  }
  status = { active: false, description: "native BLAS disabled; WASM kernels" };
}

/** The current status (what the last `enableNativeBlas` / `disableNativeBlas` left). */
export function nativeBlasStatus(): NativeBlasStatus {
  return status;
}

/**
 * Level-1 BLAS on float32 tensors of tfjs-wasm, in their WASM memory: each operation is one pass over the data with
 * no new tensor, where tfjs ops take two or three kernels with fresh outputs (x ⊙ y then Σ for a dot; αx then a sum
 * for an axpy). For loops of many vector updates, such as the L-BFGS two-loop recursion. `axpy` and `scale` write in
 * place, so they take only tensors made by `copy` (owned by the caller alone: no other tensor shares their data).
 */
export interface NativeVectors {
  /** A new tensor equal to x, owned by the caller. */
  copy<T extends tf.Tensor>(x: T): T;
  /** xᵀy over all elements (`cblas_dsdot`: a float64 result; how much of the sum is float64 is the kernel's choice). */
  dot(x: tf.Tensor, y: tf.Tensor): number;
  /** y ← αx + y, in place (y from `copy`). */
  axpy(alpha: number, x: tf.Tensor, y: tf.Tensor): void;
  /** x ← αx, in place (x from `copy`). */
  scale(alpha: number, x: tf.Tensor): void;
}

/**
 * The native level-1 operations, when the native BLAS is active, the backend is tfjs-wasm and the library has
 * them (any CBLAS does); else undefined, and callers use tfjs ops.
 */
export function nativeVectors(): NativeVectors | undefined {
  if (!status.active || tf.getBackend() !== "wasm") return undefined;
  const { cblas_dsdot: dsdot, cblas_saxpy: saxpy, cblas_sscal: sscal, cblas_scopy: scopy } = blas!.symbols;
  if (!dsdot || !saxpy || !sscal || !scopy) return undefined;
  const backend = tf.backend() as unknown as WasmBackendInternals;
  // the heap's base address, read per call: a non-shared WASM memory may move when it grows
  const at = (t: tf.Tensor) =>
    Deno.UnsafePointer.offset(
      Deno.UnsafePointer.of(backend.wasm.HEAPU8)!,
      backend.getMemoryOffset(t.dataId),
    )!;
  const floats = (t: tf.Tensor) => {
    if (t.dtype !== "float32") throw new Error(`nativeVectors: ${t.dtype} tensor, expected float32`);
    return t.size;
  };
  const sameSize = (x: tf.Tensor, y: tf.Tensor) => {
    if (floats(x) !== floats(y)) throw new Error(`nativeVectors: sizes ${x.size} and ${y.size} differ`);
    return x.size;
  };
  return {
    copy<T extends tf.Tensor>(x: T): T {
      const out = tf.engine().makeTensorFromTensorInfo(backend.makeOutput(x.shape, "float32")) as T;
      if (floats(x) > 0) scopy(x.size, at(x), 1, at(out), 1);
      return out;
    },
    dot: (x, y) => sameSize(x, y) > 0 ? dsdot(x.size, at(x), 1, at(y), 1) : 0,
    axpy(alpha, x, y) {
      if (sameSize(x, y) > 0) saxpy(x.size, alpha, at(x), 1, at(y), 1);
    },
    scale(alpha, x) {
      if (floats(x) > 0) sscal(x.size, alpha, at(x), 1);
    },
  };
}

/**
 * BatchMatMul on `cblas_sgemm`, one call per output matrix, row-major, pointers into the WASM heap. The outer
 * dimensions broadcast as NumPy's do (tfjs-wasm's own kernel handles only equal ones or a single matrix); an empty
 * inner dimension gives zeros. Non-float32 inputs go to the WASM kernel (which refuses them).
 */
function nativeBatchMatMul(
  args: {
    inputs: { a: tf.TensorInfo; b: tf.TensorInfo };
    backend: WasmBackendInternals;
    attrs: tf.BatchMatMulAttrs;
  },
): tf.TensorInfo {
  const { inputs: { a, b }, backend, attrs: { transposeA, transposeB } } = args;
  if (a.dtype !== "float32" || b.dtype !== "float32") {
    return (original!.kernelFunc as (x: unknown) => tf.TensorInfo)(args);
  }
  const ra = a.shape.length, rb = b.shape.length;
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  const kb = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  if (k !== kb) {
    throw new Error(`matMul: inner dimensions ${k} and ${kb} of shapes [${a.shape}] and [${b.shape}] differ`);
  }
  const outerA = a.shape.slice(0, -2), outerB = b.shape.slice(0, -2);
  const outer = tf.backend_util.assertAndGetBroadcastShape(outerA, outerB);
  const batch = tf.util.sizeFromShape(outer);
  const out = backend.makeOutput([...outer, m, n], "float32");
  if (k === 0 || m * n * batch === 0) { // an empty sum: zeros (XNNPACK refuses k = 0 and leaves the output unset)
    new Float32Array(backend.wasm.HEAPU8.buffer, backend.getMemoryOffset(out.dataId), batch * m * n).fill(0);
    return out;
  }
  // the heap's base address, read per call: a non-shared WASM memory may move when it grows
  const base = Deno.UnsafePointer.of(backend.wasm.HEAPU8)!;
  const at = (t: tf.TensorInfo) => Deno.UnsafePointer.offset(base, backend.getMemoryOffset(t.dataId))!;
  const pa = at(a), pb = at(b), pc = at(out);
  const lda = transposeA ? m : k, ldb = transposeB ? k : n;
  const threads = m * n * k >= parallelMacs ? parallelThreads : 1;
  if (threads !== runningThreads) {
    blas!.symbols.openblas_set_num_threads?.(threads);
    runningThreads = threads;
  }
  for (let t = 0; t < batch; t++) {
    blas!.symbols.cblas_sgemm(
      101,
      transposeA ? 112 : 111,
      transposeB ? 112 : 111,
      m,
      n,
      k,
      1,
      Deno.UnsafePointer.offset(pa, 4 * m * k * broadcastIndex(outer, outerA, t)),
      lda,
      Deno.UnsafePointer.offset(pb, 4 * k * n * broadcastIndex(outer, outerB, t)),
      ldb,
      0,
      Deno.UnsafePointer.offset(pc, 4 * m * n * t),
      n,
    );
  }
  return out;
}

/** The flat index, in an input with outer shape `shape`, of output batch `t` (outer shape `outer`, right-aligned). */
function broadcastIndex(outer: number[], shape: number[], t: number): number {
  let index = 0, stride = 1;
  for (let i = outer.length - 1, j = shape.length - 1; j >= 0; i--, j--) {
    const coordinate = Math.floor(t / tf.util.sizeFromShape(outer.slice(i + 1))) % outer[i];
    if (shape[j] !== 1) index += coordinate * stride;
    stride *= shape[j];
  }
  return index;
}
