/**
 * The entry point of the GPU bench kit (`deno task gpu-kit` bundles it into `gpu_kit.bundle.js`; the kit's `run.sh`
 * runs that bundle on a machine with an NVIDIA GPU and no network). It prints, in this order, each under a
 * `== name ==` header:
 *
 * - `adapter`: the WebGPU adapter (description, fallback flag, features, limits), the tfjs backend chosen and the
 *   latency of one GPU→CPU read (`await t.data()` of a one-element tensor; about 13 ms in Deno's WebGPU, STACK.md §8);
 * - `backbone`: forward images/s of ViT-B/16 and Swin-T with random timm-layout weights at batch 32 and 128;
 * - `torch reference`: the same weights and images through timm in PyTorch (fp32, TF32 off) when
 *   `python3 -c "import torch, timm"` works, the largest feature difference, and PyTorch's images/s side by side;
 *   otherwise why it was skipped;
 * - `head`: fitHead, validationAlphaGradient (CG), explain (top-10), EK-FAC influence (testInfluence top-10 on 500
 *   test points, and ∂L_val/∂α by EK-FAC), 20 RRO steps and CARROT's default (`carrotReweight`, with ERM's and its
 *   test top-1) on the CUB-sized synthetic preset, each with its wall time and GPU→CPU reads (`readCount()` of
 *   `lib/carrot/_reads.ts`, and every backend read as the kit counts them);
 * - `summary`.
 *
 * Every stage runs within `--budget` seconds: a stage (or a batch size, or an RRO step) that would not fit is skipped
 * with a note, and the results JSON (`--json`) is rewritten after every stage, so a run killed from outside still
 * leaves what it measured. In the bundle the tfjs WASM binaries are read from `./wasm/` beside it.
 */
import * as tf from "@tensorflow/tfjs";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { parseCommandLine, runTask, UsageError } from "../tasks/_cli.ts";
import { type BackendChoice, releaseBackend, selectBackend } from "../lib/backend.ts";
import { loadTimmModel, randomTimmWeights, TIMM_MODELS } from "../lib/models/registry.ts";
import { writeSafetensors } from "../lib/models/safetensors.ts";
import {
  cubSizedPreset,
  type FineGrainedOptions,
  makeFineGrainedFeatures,
} from "../lib/data/synthetic_features.ts";
import { disposeHead, fitHead, type HeadFit } from "../lib/carrot/head.ts";
import { testInfluence, validationAlphaGradient } from "../lib/carrot/influence.ts";
import { explain } from "../lib/carrot/representer.ts";
import { reweight } from "../lib/carrot/reweight.ts";
import { carrotOutcome, carrotReweight, describeCandidate } from "../lib/carrot/carrot.ts";
import { evaluateHead } from "../lib/carrot/metrics.ts";
import { setLogSink } from "../lib/progress.ts";
import { readCount } from "../lib/carrot/_reads.ts";

/** The stages `--stages` can name, in the order they run. */
const GPU_KIT_STAGES = ["backbone", "torch", "head"] as const;

/** The file name of the PyTorch reference script, beside this entry (source) or the bundle (kit). */
const TORCH_SCRIPT = "gpu_kit_torch.py";

const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);

const Options = z.object({
  backend: z.enum(["auto", "webgpu", "wasm", "cpu"]).default("webgpu").describe(
    "tfjs backend (webgpu takes a fallback adapter such as llvmpipe too, and says so)",
  ),
  threads: z.number().int().min(1).default(1).describe("WASM threads (the bundle has no thread shim files)"),
  quick: z.boolean().default(false).describe(
    "short version: batch 2, one timed pass, a small head problem (d 256, K 50; influence on 100 test points), 3 RRO steps",
  ),
  budget: z.number().positive().default(540).describe(
    "seconds for all stages; what would not fit is skipped",
  ),
  json: z.string().optional().describe("write the results here (rewritten after every stage)"),
  models: z.string().default("vit_base_patch16_224,swin_tiny_patch4_window7_224").describe(
    "backbones (comma-separated registered timm names)",
  ),
  batches: z.string().regex(/^\d+(,\d+)*$/, "expected e.g. 32,128").optional().describe(
    "batch sizes (default 32,128; --quick: 2)",
  ),
  passes: z.number().int().min(1).optional().describe("timed passes per batch (default 3; --quick: 1)"),
  stages: z.string().default(GPU_KIT_STAGES.join(",")).describe(
    `stages to run (comma-separated: ${GPU_KIT_STAGES.join(", ")})`,
  ),
  python: z.string().default("python3").describe("the Python with torch and timm, for the reference"),
  torchImages: z.number().int().min(1).default(4).describe("images compared with PyTorch per model"),
  rroSteps: z.number().int().min(1).optional().describe("RRO outer steps (default 20; --quick: 3)"),
});

/** A result line of the backbone stage. */
interface BackboneRow {
  model: string;
  batch: number;
  imagesPerSecond?: number;
  passSeconds?: number[];
  warmupSeconds?: number;
  loadSeconds?: number;
  reads?: number;
  skipped?: string;
  error?: string;
}

/** A result line of the head stage. */
interface HeadRow {
  stage: string;
  seconds?: number;
  reads?: number;
  detail?: string;
  skipped?: string;
  error?: string;
}

/** A GPU→CPU read counter: where it comes from and its running total. */
interface ReadCounter {
  source: string;
  count: () => number;
}

/**
 * The library's GPU→CPU read counter: `readCount()` of `lib/carrot/_reads.ts`, the running total of the reads that
 * `lib/carrot` makes through `readValues`/`readScalar`/`readPacked`. A solver not yet moved onto those reads
 * uncounted there; the kit's own count (`wrapBackendReads`: every `backend.read`/`readSync` call, reads of data
 * that never left the CPU included) is printed beside it, so the two can be compared.
 * HOOK: this function is the one place to change if that counter moves; returning undefined prints
 * `reads: not counted`.
 */
function libraryReadCounter(): ReadCounter | undefined {
  return { source: "lib/carrot/_reads.ts readCount()", count: readCount };
}

/** Counts every `read`/`readSync` call on the active tfjs backend instance (the kit's own, coarser count). */
function wrapBackendReads(): ReadCounter {
  let reads = 0;
  const backend = tf.backend() as unknown as Record<string, unknown>;
  for (const method of ["read", "readSync"]) {
    const original = backend[method];
    if (typeof original !== "function") continue;
    backend[method] = function (this: unknown, ...args: unknown[]) {
      reads++;
      return original.apply(this, args);
    };
  }
  return { source: `${tf.getBackend()} backend.read/readSync calls (kit's own count)`, count: () => reads };
}

/** Thrown from RRO's `onStep` to stop the run when the next step would overrun the budget. */
class BudgetExhausted extends Error {
  /** The last completed step. */
  readonly step: number;
  constructor(step: number) {
    super(`time budget exhausted after RRO step ${step}`);
    this.step = step;
  }
}

/** Deadline arithmetic for `--budget`. */
class Budget {
  readonly #deadline: number;
  constructor(seconds: number) {
    this.#deadline = performance.now() + seconds * 1000;
  }
  /** Seconds left. */
  left(): number {
    return (this.#deadline - performance.now()) / 1000;
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const seconds = (start: number) => (performance.now() - start) / 1000;
const fmt = (x: number, digits = 2) => x.toFixed(digits);
/** Images/s with 3 significant digits below 100 (llvmpipe gives 0.03), whole numbers above. */
const rate = (x: number) => x >= 100 ? x.toFixed(0) : x.toPrecision(3);

async function describeAdapter(): Promise<Record<string, unknown>> {
  const gpu = (navigator as { gpu?: GPU }).gpu;
  if (!gpu) return { found: false, why: "navigator.gpu is undefined" };
  if (!Deno.env.get("XDG_RUNTIME_DIR")) {
    const dir = Deno.makeTempDirSync({ prefix: "gpu-kit-runtime-" });
    Deno.env.set("XDG_RUNTIME_DIR", dir);
  }
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) return { found: false, why: "navigator.gpu.requestAdapter() returned null" };
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const limits: Record<string, number> = {};
  for (
    const key of [
      "maxBufferSize",
      "maxStorageBufferBindingSize",
      "maxComputeWorkgroupStorageSize",
      "maxComputeInvocationsPerWorkgroup",
      "maxComputeWorkgroupSizeX",
      "maxStorageBuffersPerShaderStage",
    ]
  ) limits[key] = (adapter.limits as unknown as Record<string, number>)[key];
  return {
    found: true,
    description: info?.description ?? "",
    vendor: info?.vendor ?? "",
    architecture: info?.architecture ?? "",
    device: info?.device ?? "",
    isFallbackAdapter: (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter ??
      info?.isFallbackAdapter ?? null,
    features: [...adapter.features].sort(),
    limits,
  };
}

/**
 * Median wall time of `count` GPU→CPU reads of a one-element tensor that a kernel just wrote (the sum of 4096
 * elements: large enough that WebGPU does not forward the op to the CPU, as it does for tiny tensors).
 */
async function readLatency(count: number): Promise<number> {
  const x = tf.ones([4096]);
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const y = tf.tidy(() => tf.sum(tf.add(x, i)));
    const start = performance.now();
    await y.data();
    times.push(performance.now() - start);
    y.dispose();
  }
  x.dispose();
  return median(times);
}

/**
 * The graphics libraries this process has mapped (the Vulkan loader, libglvnd, the driver), from its
 * /proc/<pid>/maps, read through `cat`: Deno lets only a fully permitted process read /proc/self, and run.sh runs
 * the bundle with `--deny-net`.
 */
function mappedGraphicsLibraries(): string[] {
  try {
    const out = new Deno.Command("cat", { args: [`/proc/${Deno.pid}/maps`], stdout: "piped", stderr: "null" })
      .outputSync();
    const maps = new TextDecoder().decode(out.stdout);
    const paths = maps.split("\n").map((l) => l.split(/\s+/).slice(5).join(" ")).filter((p) =>
      /lib(vulkan|GLdispatch|GLX|EGL|nvidia|vulkan_lvp|gallium)/i.test(p)
    );
    return [...new Set(paths)].sort();
  } catch (_noProc) {
    return [];
  }
}

/** Runs `python -c "import torch, timm"` (60 s cap): versions and CUDA, or why it failed. */
async function probeTorch(python: string): Promise<{ ok: boolean; detail: string }> {
  const code = "import torch, timm; print(torch.__version__, timm.__version__, torch.cuda.is_available(), " +
    "torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')";
  try {
    const out = await new Deno.Command(python, {
      args: ["-c", code],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    }).output();
    if (out.signal) return { ok: false, detail: `\`${python} -c "import torch, timm"\` took over 60 s` };
    const text = new TextDecoder().decode(out.success ? out.stdout : out.stderr).trim();
    const last = text.split("\n").filter(Boolean).pop() ?? "";
    return {
      ok: out.success,
      detail: out.success ? last : `\`${python} -c "import torch, timm"\` failed: ${last}`,
    };
  } catch (error) {
    return { ok: false, detail: `${python} could not be run: ${(error as Error).message}` };
  }
}

/** Resolves a file beside this module (the bundle in the kit, `bench/` in the source tree). */
function besideMe(name: string): string {
  return join(dirname(fileURLToPath(import.meta.url)), name);
}

/** The CUB-sized preset, or a small one for `--quick`. */
function headProblem(quick: boolean): FineGrainedOptions {
  return quick
    ? {
      ...cubSizedPreset,
      numClasses: 50,
      groups: 10,
      dim: 256,
      splitSizes: { train: 1000, val: 300, test: 600 },
      seed: 0,
    }
    : { preset: "cub", seed: 0 };
}

const values = parseCommandLine(Options, Deno.args, {
  task: "gpu-kit-entry",
  summary:
    "Options of the GPU bench kit's run.sh (passed on to its bundled entry, bench/gpu_kit_entry.ts): adapter, " +
    "backbone img/s, features vs PyTorch, head stages.",
});

await runTask("gpu-kit-entry", async () => {
  const started = performance.now();
  const budget = new Budget(values.budget);
  const stages = new Set(list(values.stages));
  for (const s of stages) {
    if (!(GPU_KIT_STAGES as readonly string[]).includes(s)) {
      throw new UsageError(`--stages: unknown stage "${s}" (known: ${GPU_KIT_STAGES.join(", ")})`);
    }
  }
  const models = list(values.models);
  for (const m of models) {
    if (!TIMM_MODELS[m]) throw new UsageError(`--models: "${m}" is not a registered timm name`);
  }
  const batches = list(values.batches ?? (values.quick ? "2" : "32,128")).map(Number);
  const passes = values.passes ?? (values.quick ? 1 : 3);
  const rroSteps = values.rroSteps ?? (values.quick ? 3 : 20);
  const notes: string[] = [];
  const results: Record<string, unknown> = {
    kit: "carrot gpu-kit",
    startedAt: new Date().toISOString(),
    options: { ...values, batches, passes, rroSteps },
    deno: Deno.version,
    tfjs: tf.version,
    notes,
  };
  const save = () => {
    results.elapsedSeconds = seconds(started);
    if (!values.json) return;
    mkdirSync(dirname(values.json), { recursive: true });
    writeFileSync(values.json, JSON.stringify(results, null, 2) + "\n");
  };
  const say = (line: string) => console.log(line);
  const note = (line: string) => {
    notes.push(line);
    say(`note: ${line}`);
  };
  setLogSink((line) => console.log(`  [lib] ${line}`));

  // -- adapter ---------------------------------------------------------------------------------------------------
  say("== adapter ==");
  const env: Record<string, string> = {};
  for (
    const k of ["VK_DRIVER_FILES", "VK_ICD_FILENAMES", "__EGL_VENDOR_LIBRARY_FILENAMES", "LD_LIBRARY_PATH"]
  ) {
    const v = Deno.env.get(k);
    if (v) env[k] = v;
  }
  const adapter = await describeAdapter();
  results.adapter = { ...adapter, env };
  if (adapter.found) {
    const limits = adapter.limits as Record<string, number>;
    say(
      `adapter: ${adapter.description || adapter.device || adapter.vendor} (vendor ${adapter.vendor}, ` +
        `architecture "${adapter.architecture}", fallback ${adapter.isFallbackAdapter})`,
    );
    say(`features: ${(adapter.features as string[]).join(" ")}`);
    say(`limits: ${Object.entries(limits).map(([k, v]) => `${k} ${v}`).join(", ")}`);
  } else {
    say(`adapter: none (${adapter.why})`);
  }
  for (const [k, v] of Object.entries(env)) say(`env ${k}=${v}`);
  const mapped = mappedGraphicsLibraries();
  say(`mapped libraries: ${mapped.length ? mapped.join(", ") : "none"}`);
  (results.adapter as Record<string, unknown>).mappedLibraries = mapped;
  const wasmDir = besideMe("wasm");
  if (existsSync(join(wasmDir, "tfjs-backend-wasm.wasm"))) {
    setWasmPaths(wasmDir + "/");
    // emscripten's Node path (tfjs takes it under Deno) reads `__dirname`, which an ES-module bundle lacks
    (globalThis as { __dirname?: string }).__dirname ??= wasmDir;
  }
  let choice: BackendChoice;
  try {
    choice = await selectBackend(values.backend, { threads: values.threads, quiet: true });
  } catch (error) {
    note(`--backend ${values.backend} failed (${(error as Error).message}); falling back to auto`);
    choice = await selectBackend("auto", { threads: values.threads, quiet: true });
  }
  if (tf.getBackend() !== choice.backend) {
    note(`tf.getBackend() is ${tf.getBackend()}, not ${choice.backend}`);
  }
  say(`backend: ${tf.getBackend()} (${choice.reason})`);
  const latency = await readLatency(values.quick ? 10 : 30);
  say(`read latency: ${fmt(latency)} ms median per \`await t.data()\` of one element`);
  const library = libraryReadCounter();
  const own = wrapBackendReads();
  say(library ? `reads: counted by ${library.source}` : "reads: not counted (no library read counter)");
  say(`kit's own read count: ${own.source}`);
  results.backend = { ...choice, active: tf.getBackend(), readLatencyMs: latency };
  results.reads = { library: library?.source ?? null, own: own.source };
  save();

  const torchPlanned = stages.has("torch");
  const torch = torchPlanned ? await probeTorch(values.python) : { ok: false, detail: "not in --stages" };
  const tmp = Deno.makeTempDirSync({ prefix: "gpu-kit-" });
  const reference: { model: string; weights: string; images: string; features: Float32Array }[] = [];

  // -- backbone --------------------------------------------------------------------------------------------------
  say("== backbone ==");
  const rows: BackboneRow[] = [];
  results.backbone = rows;
  // Leave time for the later stages: the torch reference (when it can run) and the head stages.
  const reserve = (torch.ok ? 90 : 0) + (stages.has("head") ? (values.quick ? 30 : 0.4 * values.budget) : 0);
  if (!stages.has("backbone")) say("skipped (not in --stages)");
  else {
    for (const name of models) {
      if (budget.left() - reserve < 10) {
        for (const batch of batches) rows.push({ model: name, batch, skipped: "time budget" });
        note(`${name}: skipped (time budget)`);
        continue;
      }
      let model: Awaited<ReturnType<typeof loadTimmModel>> | undefined;
      try {
        const loadStart = performance.now();
        const weights = randomTimmWeights(TIMM_MODELS[name].config, 0);
        const loaded = await loadTimmModel(name, weights);
        model = loaded;
        const loadSeconds = seconds(loadStart);
        say(`${name}: random timm weights, loaded in ${fmt(loadSeconds, 1)} s, D = ${loaded.numFeatures}`);
        if (torch.ok) {
          const images = tf.randomNormal(
            [values.torchImages, 224, 224, 3],
            0,
            1,
            "float32",
            1,
          ) as tf.Tensor4D;
          const features = loaded.forwardFeatures(images);
          const nchw = tf.transpose(images, [0, 3, 1, 2]);
          const entry = {
            model: name,
            weights: join(tmp, `${name}.safetensors`),
            images: join(tmp, `${name}_images_nchw_f32.bin`),
            features: (await features.data()) as Float32Array,
          };
          writeFileSync(entry.images, new Uint8Array(((await nchw.data()) as Float32Array).buffer));
          await writeSafetensors(entry.weights, weights);
          reference.push(entry);
          tf.dispose([images, features, nchw]);
        }
        weights.clear();
        let perImage = 0; // seconds per image of the last measured pass, to predict the next batch
        for (const batch of batches) {
          const predicted = perImage * batch * (passes + 1);
          if (budget.left() - reserve < Math.max(5, predicted)) {
            rows.push({ model: name, batch, skipped: "time budget" });
            note(`${name} batch ${batch}: skipped (time budget; predicted ${fmt(predicted, 0)} s)`);
            continue;
          }
          let images: tf.Tensor4D | undefined;
          try {
            const input = tf.randomNormal([batch, 224, 224, 3], 0, 1, "float32", 0) as tf.Tensor4D;
            images = input;
            const pass = async () => {
              const start = performance.now();
              const features = loaded.forwardFeatures(input);
              await features.data(); // waits for the device
              features.dispose();
              return seconds(start);
            };
            const readsBefore = own.count();
            const warm = await pass();
            const times: number[] = [];
            for (let r = 0; r < passes; r++) {
              if (r > 0 && budget.left() - reserve < 2 * times[times.length - 1]) break;
              times.push(await pass());
            }
            const t = median(times);
            perImage = t / batch;
            const row = {
              model: name,
              batch,
              imagesPerSecond: batch / t,
              passSeconds: times,
              warmupSeconds: warm,
              loadSeconds,
              reads: own.count() - readsBefore,
            };
            rows.push(row);
            say(
              `${name} batch ${batch}: ${rate(row.imagesPerSecond)} img/s (median of ${times.length}: ` +
                `${times.map((s) => fmt(s)).join(", ")} s; warm-up ${fmt(warm, 1)} s)`,
            );
            save();
          } catch (error) {
            const message = (error as Error).message?.split("\n")[0] ?? String(error);
            rows.push({ model: name, batch, error: message });
            say(`${name} batch ${batch}: FAILED: ${message}`);
            notes.push(`${name} batch ${batch}: failed (${message})`);
            save();
          } finally {
            images?.dispose();
          }
        }
      } catch (error) {
        const message = (error as Error).message?.split("\n")[0] ?? String(error);
        rows.push({ model: name, batch: 0, error: message });
        say(`${name}: FAILED: ${message}`);
        notes.push(`${name}: failed (${message})`);
      } finally {
        model?.dispose();
        save();
      }
    }
  }
  save();

  // -- torch reference -------------------------------------------------------------------------------------------
  say("== torch reference ==");
  const torchResult: Record<string, unknown> = { available: torch.ok, detail: torch.detail, models: [] };
  results.torch = torchResult;
  if (!torchPlanned) say("skipped (not in --stages)");
  else if (!torch.ok) say(`skipped: ${torch.detail}`);
  else if (!reference.length) say("skipped: no backbone was run (see the backbone section)");
  else {
    say(`torch ${torch.detail}`);
    const script = besideMe(TORCH_SCRIPT);
    for (const entry of reference) {
      if (budget.left() - (stages.has("head") ? (values.quick ? 30 : 0.3 * values.budget) : 0) < 20) {
        (torchResult.models as unknown[]).push({ model: entry.model, skipped: "time budget" });
        note(`torch reference ${entry.model}: skipped (time budget)`);
        continue;
      }
      const featuresPath = join(tmp, `${entry.model}_torch_features_f32.bin`);
      const args = [
        script,
        ...["--model", entry.model, "--weights", entry.weights, "--images", entry.images],
        ...["--count", String(values.torchImages), "--out", featuresPath],
        ...["--bench", batches.join(","), "--passes", values.quick ? "2" : "10"],
      ];
      const headReserve = stages.has("head") ? (values.quick ? 30 : 0.3 * values.budget) : 0;
      const limit = Math.max(20, Math.min(240, budget.left() - headReserve));
      let out: Deno.CommandOutput;
      try {
        out = await new Deno.Command(values.python, {
          args,
          stdout: "piped",
          stderr: "piped",
          signal: AbortSignal.timeout(limit * 1000),
        }).output();
      } catch (error) {
        const why = `${values.python} could not be run: ${(error as Error).message}`;
        (torchResult.models as unknown[]).push({ model: entry.model, error: why });
        say(`${entry.model}: the PyTorch reference failed: ${why}`);
        continue;
      }
      if (out.signal) {
        const why = `stopped after ${fmt(limit, 0)} s (time budget)`;
        (torchResult.models as unknown[]).push({ model: entry.model, error: why });
        say(`${entry.model}: the PyTorch reference ${why}`);
        continue;
      }
      const stdout = new TextDecoder().decode(out.stdout), stderr = new TextDecoder().decode(out.stderr);
      const json = stdout.split("\n").filter((l) => l.startsWith("{")).pop();
      if (!out.success || !json) {
        const why = (stderr.trim().split("\n").pop() ?? "") || `exit code ${out.code}`;
        (torchResult.models as unknown[]).push({ model: entry.model, error: why });
        say(`${entry.model}: the PyTorch reference failed: ${why}`);
        continue;
      }
      const report = JSON.parse(json) as Record<string, unknown>;
      const theirs = new Float32Array((await Deno.readFile(featuresPath)).slice().buffer);
      let maxDiff = 0, maxRef = 0;
      for (let i = 0; i < theirs.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(theirs[i] - entry.features[i]));
        maxRef = Math.max(maxRef, Math.abs(theirs[i]));
      }
      const sameLength = theirs.length === entry.features.length;
      const row = { model: entry.model, maxAbsDiff: maxDiff, maxAbsRef: maxRef, sameLength, ...report };
      (torchResult.models as unknown[]).push(row);
      say(
        `${entry.model}: features max|ours − torch| ${maxDiff.toExponential(2)} (max|torch| ${
          fmt(maxRef, 3)
        }, ` +
          `${values.torchImages} images${
            sameLength ? "" : `; LENGTH MISMATCH ${entry.features.length} vs ${theirs.length}`
          })`,
      );
      const bench = (report.imagesPerSecond ?? {}) as Record<string, number>;
      for (const [batch, ips] of Object.entries(bench)) {
        const ours = rows.find((r) => r.model === entry.model && r.batch === Number(batch))?.imagesPerSecond;
        say(
          `  PyTorch fp32 (${report.device}) batch ${batch}: ${rate(ips)} img/s` +
            (ours ? `; ours / PyTorch = ${fmt(ours / ips, 3)}` : ""),
        );
      }
      if (report.missingKeys || report.unexpectedKeys) {
        say(
          `  state_dict: missing ${JSON.stringify(report.missingKeys)}, unexpected ${
            JSON.stringify(report.unexpectedKeys)
          }`,
        );
      }
      save();
    }
  }
  Deno.removeSync(tmp, { recursive: true });
  save();

  // -- head ------------------------------------------------------------------------------------------------------
  say("== head ==");
  const headRows: HeadRow[] = [];
  results.head = headRows;
  if (!stages.has("head")) say("skipped (not in --stages)");
  else if (budget.left() < 10) {
    say("skipped (time budget)");
    note("head: skipped (time budget)");
  } else {
    const problem = headProblem(values.quick);
    const data = makeFineGrainedFeatures(problem);
    const { train, val, test } = data;
    const c = data.config;
    const lambda = 30;
    say(
      `${
        values.quick ? "small (--quick)" : "CUB-sized"
      } preset: n ${c.splitSizes.train}, val ${c.splitSizes.val}, ` +
        `test ${c.splitSizes.test}, d ${c.dim}, K ${c.numClasses}, λ ${lambda}`,
    );
    const counters = [library, own].filter((x): x is ReadCounter => !!x);
    const stage = async <T>(
      name: string,
      minSeconds: number,
      work: () => Promise<T>,
      detail: (r: T) => string,
    ) => {
      if (budget.left() < minSeconds) {
        headRows.push({ stage: name, skipped: "time budget" });
        note(`${name}: skipped (time budget)`);
        return undefined;
      }
      const before = counters.map((r) => r.count());
      const start = performance.now();
      let result: T;
      try {
        result = await work();
      } catch (error) {
        const message = (error as Error).message?.split("\n")[0] ?? String(error);
        headRows.push({ stage: name, seconds: seconds(start), error: message });
        say(`${name}: FAILED after ${fmt(seconds(start))} s: ${message}`);
        notes.push(`${name}: failed (${message})`);
        save();
        return undefined;
      }
      const row: HeadRow = { stage: name, seconds: seconds(start), detail: detail(result) };
      const counts = counters.map((r, i) => r.count() - before[i]);
      if (library) row.reads = counts[0];
      headRows.push({ ...row, ownReads: counts[counters.length - 1] } as HeadRow);
      const readText = library ? `reads ${counts[0]}` : "reads: not counted";
      say(
        `${name}: ${fmt(row.seconds!)} s; ${readText} (backend reads ${
          counts[counters.length - 1]
        }); ${row.detail}`,
      );
      save();
      return result;
    };
    const fit = await stage(
      "fitHead",
      5,
      () => fitHead(train, { lambda }),
      (f) =>
        `${f.iterations} iterations, ${f.evaluations} evaluations, relative ‖∇J‖ ` +
        `${f.relativeGradNorm.toExponential(2)} (${f.stopReason})`,
    );
    // a later stage starts only when at least one fitHead's time is left (RRO: two; step 0 is an ERM fit)
    const scale = Math.max(5, headRows[0]?.seconds ?? 5);
    if (fit) {
      await stage(
        "validationAlphaGradient (CG)",
        scale,
        () => validationAlphaGradient(fit, train, val, { tol: 1e-6 }),
        (g) => `${g.cgIterations} CG iterations, residual ${g.cgResidual.toExponential(1)}`,
      );
      await stage(
        "explain top-10",
        scale,
        () => explain(fit, train, test.features, { topK: 10 }),
        (e) => `${e.explanations.length} test points, residual ${e.residual.toExponential(2)}`,
      );
      const influencePoints = Math.min(values.quick ? 100 : 500, test.labels.length);
      const subset = {
        features: test.features.slice([0, 0], [influencePoints, -1]) as tf.Tensor2D,
        labels: test.labels.slice(0, influencePoints),
      };
      await stage(
        "EK-FAC testInfluence top-10",
        scale,
        () => testInfluence(fit, train, subset, { topK: 10, method: "ekfac" }),
        (r) => `${r.length} test points`,
      );
      subset.features.dispose();
      await stage(
        "EK-FAC validationAlphaGradient",
        scale,
        () => validationAlphaGradient(fit, train, val, { solver: "ekfac" }),
        (g) => `L_val ${g.valLoss.toFixed(4)}`,
      );
    }
    // the ERM head's test top-1, for the CARROT stage's comparison (not timed)
    const ermMetrics = fit && await evaluateHead(fit, test);
    if (fit) disposeHead(fit);
    const stepTimes: number[] = [];
    let last = performance.now();
    const rro = await stage(
      `RRO ${rroSteps} steps`,
      2 * scale,
      async () => {
        try {
          return await reweight(train, val, {
            lambda,
            outerSteps: rroSteps,
            onStep: (e) => {
              const now = performance.now();
              stepTimes.push((now - last) / 1000);
              last = now;
              // stop when the next step (as long as the slowest so far) would not fit
              if (e.step < rroSteps && budget.left() < 1.2 * Math.max(...stepTimes) + 3) {
                throw new BudgetExhausted(e.step);
              }
            },
          });
        } catch (error) {
          if (error instanceof BudgetExhausted) return error;
          throw error;
        }
      },
      (r) =>
        r instanceof BudgetExhausted
          ? `stopped after step ${r.step} of ${rroSteps} (time budget); step times ${
            stepTimes.map((s) => fmt(s, 1)).join(", ")
          } s`
          : `${r.trajectory.length - 1} steps (${r.stopReason}), val top-1 ` +
            `${fmt(100 * r.trajectory[r.trajectory.length - 1].valAccuracy, 1)}%; s/step ${
              fmt(median(stepTimes.slice(1)) || 0)
            } (step 0 = ERM fit ${fmt(stepTimes[0] ?? 0)} s)`,
    );
    if (rro && !(rro instanceof BudgetExhausted)) {
      const metrics = await evaluateHead(rro.fit, test);
      say(`  RRO test top-1 ${fmt(100 * metrics.accuracy, 1)}%`);
      disposeHead(rro.fit as HeadFit);
    }
    let carrotSteps = 0;
    const carrot = await stage(
      "CARROT default (carrotReweight)",
      // it cannot stop part-way: on 2 CPU cores it took 78 fitHeads' time on this preset, on llvmpipe 46
      Math.max(3 * scale, 60 * (headRows[0]?.seconds ?? 5)),
      () =>
        carrotReweight(train, val, {
          lambda,
          onStep: () => void carrotSteps++,
        }),
      (r) =>
        `${carrotSteps} cross-fitted steps over ${r.trajectories.length} paths; ${
          r.selection.fallback ? "fallback: α ≡ 1" : `chose ${describeCandidate(carrotOutcome(r).chosen)}`
        }, T ${fmt(r.temperature)}`,
    );
    if (carrot) {
      const carrotMetrics = await evaluateHead(carrot.fit, test);
      const erm = ermMetrics ? `ERM ${fmt(100 * ermMetrics.accuracy, 1)}% → ` : "";
      say(`  test top-1 ${erm}CARROT ${fmt(100 * carrotMetrics.accuracy, 1)}%`);
      results.carrot = { ermTop1: ermMetrics?.accuracy, carrotTop1: carrotMetrics.accuracy };
      disposeHead(carrot.fit);
    }
    tf.dispose([train.features, val.features, test.features]);
  }
  save();

  // -- summary ---------------------------------------------------------------------------------------------------
  say("== summary ==");
  say(
    `adapter: ${adapter.found ? adapter.description || adapter.device : "none"}; backend ${tf.getBackend()}`,
  );
  for (const r of rows) {
    say(
      `${r.model} batch ${r.batch}: ${
        r.skipped
          ? `skipped (${r.skipped})`
          : r.error
          ? `FAILED (${r.error})`
          : `${rate(r.imagesPerSecond!)} img/s`
      }`,
    );
  }
  say(
    `torch reference: ${
      torch.ok ? `${(torchResult.models as unknown[]).length} models compared` : `skipped (${torch.detail})`
    }`,
  );
  for (const r of headRows) {
    say(
      `${r.stage}: ${
        r.skipped ? `skipped (${r.skipped})` : r.error ? `FAILED (${r.error})` : `${fmt(r.seconds!)} s`
      }`,
    );
  }
  say(library ? "reads: counted" : "reads: not counted");
  say(`notes: ${notes.length ? notes.join("; ") : "none"}`);
  say(`total ${fmt(seconds(started), 1)} s of a ${values.budget} s budget`);
  results.finishedAt = new Date().toISOString();
  save();
  if (values.json) say(`results: ${values.json}`);
  releaseBackend();
});
