/**
 * `deno task gpu-kit`: builds the GPU bench kit, a self-contained folder (≤ `--maxMiB`, default 60 MiB) that runs on
 * a machine with an NVIDIA GPU and no registry or network access (the device machine of `../shared/STACK.md` §8):
 *
 * ```
 * <out>/run.sh               bench/gpu_kit_run.sh: loaders, env (§8), deno, then the bundle within a time budget
 * <out>/kit.env              run.sh's defaults (budget seconds, default entry arguments such as --quick)
 * <out>/gpu_kit.bundle.js    `deno bundle --platform deno` of bench/gpu_kit_entry.ts (tfjs, webgpu, wasm, zod, lib/)
 * <out>/wasm/*.wasm          tfjs-backend-wasm's binaries (a bundle does not carry them)
 * <out>/gpu_kit_torch.py     the PyTorch/timm reference, run when `python3 -c "import torch, timm"` works there
 * <out>/deno.xz              this Deno binary, `xz -9e` (cached under --cache by the binary's SHA-256)
 * <out>/debs/*.deb           the Vulkan loader and libglvnd of §8, amd64 (Debian 12), via `apt-get download`
 * <out>/manifest.json        every file with its size and SHA-256; versions; git revision
 * <out>/README.txt, VERSION  how to run it; one-line identity
 * ```
 *
 * Run it there with `bash <out>/run.sh` (see README.txt); `--skipDeno`/`--skipDebs` leave those parts out (tests;
 * run.sh then takes `KIT_DENO` or a `deno` on PATH, and the system's loaders).
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join, resolve } from "node:path";
import { z } from "zod";
import * as tf from "@tensorflow/tfjs";
import { log } from "../lib/progress.ts";
import { InputError } from "../lib/errors.ts";
import { parseCommandLine, runTask } from "./_cli.ts";

/** The packages STACK.md §8 says the device machine lacks (Vulkan loader, libglvnd), for Debian 12 amd64. */
export const GPU_KIT_DEBS = [
  "libvulkan1",
  "libegl1",
  "libglvnd0",
  "libopengl0",
  "libgl1",
  "libglx0",
  "libgles2",
];

/** The tfjs-backend-wasm binaries the bundle loads (plain and SIMD; the threaded build needs a shim it lacks). */
export const GPU_KIT_WASM = ["tfjs-backend-wasm.wasm", "tfjs-backend-wasm-simd.wasm"];

const repo = resolve(import.meta.dirname!, "..");

const Options = z.object({
  out: z.string().default("runs/gpu-kit").describe("the kit folder (replaced if it holds a previous kit)"),
  quick: z.boolean().default(false).describe("run.sh runs the short version (--quick) unless told otherwise"),
  budget: z.number().int().min(60).default(560).describe(
    "run.sh's default time budget in seconds, all included",
  ),
  skipDeno: z.boolean().default(false).describe(
    "leave the Deno binary out (run.sh then needs KIT_DENO or PATH)",
  ),
  skipDebs: z.boolean().default(false).describe("leave the Vulkan loader / libglvnd .debs out"),
  xz: z.string().regex(/^[0-9]e?$/, "expected an xz preset such as 9e or 6").default("9e").describe(
    "xz preset for the Deno binary",
  ),
  cache: z.string().default("runs/.gpu-kit-cache").describe(
    "where the compressed Deno and the .debs are kept",
  ),
  maxMiB: z.number().positive().default(60).describe("fail when the kit is larger than this"),
  noCheck: z.boolean().default(false).describe(
    "bundle without type-checking the entry's module graph first (faster; a broken lib/ then fails on the GPU)",
  ),
});

/** Runs a command; throws with its stderr when it fails. */
async function run(cmd: string, args: string[], options: { cwd?: string } = {}): Promise<string> {
  const out = await new Deno.Command(cmd, { args, cwd: options.cwd, stdout: "piped", stderr: "piped" })
    .output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  if (!out.success) {
    throw new InputError(
      `${cmd} ${args.join(" ")} failed (exit ${out.code}): ${text(out.stderr).trim().slice(-600)}`,
    );
  }
  return text(out.stdout);
}

async function sha256File(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Every file under `dir` (relative paths, sorted). */
function filesUnder(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter((f) => statSync(join(dir, f)).isFile())
    .sort();
}

/** The Deno binary compressed with `xz -<preset>`, from the cache when this binary was compressed before. */
async function compressedDeno(cache: string, preset: string): Promise<{ path: string; binary: string }> {
  const binary = Deno.realPathSync(Deno.execPath());
  const key = (await sha256File(binary)).slice(0, 16);
  const path = join(cache, preset === "9e" ? `deno-${key}.xz` : `deno-${key}-xz${preset}.xz`);
  if (!existsSync(path)) {
    log(`compressing ${binary} (${(statSync(binary).size / 2 ** 20).toFixed(1)} MiB) with xz -${preset}…`);
    mkdirSync(cache, { recursive: true });
    const tmp = `${path}.${Deno.pid}.tmp`;
    const xz = new Deno.Command("nice", {
      args: ["-n", "10", "xz", `-${preset}`, "-T1", "-c", binary],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
    await xz.stdout.pipeTo(file.writable);
    const status = await xz.status;
    if (!status.success) {
      rmSync(tmp, { force: true });
      throw new InputError(`xz -${preset} of ${binary} failed (exit ${status.code})`, {
        hint: "install xz-utils",
      });
    }
    Deno.renameSync(tmp, path);
  }
  return { path, binary };
}

/** The .debs of `GPU_KIT_DEBS` in `<cache>/debs`, downloaded with `apt-get download` when missing. */
async function debs(cache: string): Promise<string[]> {
  const dir = join(cache, "debs");
  mkdirSync(dir, { recursive: true });
  const present = () => readdirSync(dir).filter((f) => f.endsWith("_amd64.deb") || f.endsWith("_all.deb"));
  const missing = GPU_KIT_DEBS.filter((p) => !present().some((f) => f.startsWith(`${p}_`)));
  if (missing.length) {
    log(`apt-get download ${missing.join(" ")}…`);
    const amd64 = ["-oAPT::Architecture=amd64", "-oAPT::Architectures=amd64"];
    try {
      await run("apt-get", [...amd64, "download", ...missing], { cwd: dir });
    } catch (_first) {
      // the recipe of the device README: a private amd64 package list (works on any host architecture)
      const lists = Deno.makeTempDirSync({ prefix: "gpu-kit-apt-" });
      mkdirSync(join(lists, "partial"), { recursive: true });
      const listOption = `-oDir::State::Lists=${lists}`;
      await run("apt-get", [...amd64, listOption, "update"]);
      await run("apt-get", [...amd64, listOption, "download", ...missing], { cwd: dir });
      rmSync(lists, { recursive: true, force: true });
    }
  }
  return GPU_KIT_DEBS.map((p) => {
    const found = present().filter((f) => f.startsWith(`${p}_`)).sort().pop();
    if (!found) throw new InputError(`apt-get download ${p}: no .deb appeared in ${dir}`);
    return join(dir, found);
  });
}

function readme(options: z.output<typeof Options>): string {
  return `CARROT GPU bench kit (built by \`deno task gpu-kit\`; source: tasks/gpu_kit.ts, bench/gpu_kit_entry.ts)

Run:   bash run.sh [options]          e.g. bash run.sh --quick, bash run.sh --backend wasm, bash run.sh --help
       From the device tool: put the kit at the repository root as kit/ (deno task gpu-kit --out kit), name
       "kit" in carry, and run \`bash kit/run.sh\` with timeout_s 600.
Budget: ${options.budget} s in all by default (KIT_BUDGET=<s> changes it); every stage fits in what is left or is
       skipped with a note. Default entry arguments: ${options.quick ? "--quick" : "(none)"} (kit.env).
Prints: host, loaders, the WebGPU adapter, backbone img/s (ViT-B/16, Swin-T; batch 32 and 128), features vs PyTorch
       (when \`python3 -c "import torch, timm"\` works), head stages (fitHead, validationAlphaGradient, explain,
       EK-FAC influence, RRO) with GPU→CPU reads, and a summary.
Writes: $OUT/gpu_kit.log and $OUT/gpu_kit_results.json when OUT is set, else results/ here.
Env:   KIT_DENO=<deno binary> (skip deno.xz), KIT_LOCAL_DEBS=1 (unpack the .debs under $TMPDIR and use
       LD_LIBRARY_PATH, not into /), KIT_SKIP_DEBS=1, KIT_BUDGET=<seconds>, KIT_DEFAULT_ARGS="<entry options>".
Needs: bash, coreutils (timeout, mktemp), xz or python3 (to unpack deno.xz), dpkg or ar+tar (for the .debs).
`;
}

const options = parseCommandLine(Options, Deno.args, {
  task: "gpu-kit",
  summary:
    "Builds the self-contained GPU bench kit (bundle, deno.xz, Vulkan/glvnd .debs, run.sh) for a GPU machine " +
    "without network; see README.txt in the kit.",
});

await runTask("gpu-kit", async () => {
  const out = resolve(options.out), cache = resolve(options.cache);
  if (existsSync(out)) {
    const entries = readdirSync(out);
    if (entries.length && !entries.includes("manifest.json")) {
      throw new InputError(`${out} exists and is not a kit (no manifest.json); not replacing it`, {
        hint: "pass another --out",
      });
    }
    rmSync(out, { recursive: true, force: true });
  }
  mkdirSync(join(out, "wasm"), { recursive: true });

  log(`bundling bench/gpu_kit_entry.ts${options.noCheck ? "" : " (type-checked first)"}…`);
  await run(Deno.execPath(), [
    "bundle",
    ...(options.noCheck ? [] : ["--check"]),
    "--platform",
    "deno",
    "--config",
    join(repo, "deno.json"),
    "-o",
    join(out, "gpu_kit.bundle.js"),
    join(repo, "bench/gpu_kit_entry.ts"),
  ], { cwd: repo });
  const wasmOut = dirname(
    createRequire(import.meta.url).resolve("@tensorflow/tfjs-backend-wasm/wasm-out/" + GPU_KIT_WASM[0]),
  );
  for (const f of GPU_KIT_WASM) copyFileSync(join(wasmOut, f), join(out, "wasm", f));
  copyFileSync(join(repo, "bench/gpu_kit_torch.py"), join(out, "gpu_kit_torch.py"));
  copyFileSync(join(repo, "bench/gpu_kit_run.sh"), join(out, "run.sh"));
  Deno.chmodSync(join(out, "run.sh"), 0o755);
  writeFileSync(
    join(out, "kit.env"),
    `# defaults of run.sh, written by deno task gpu-kit\nKIT_BUDGET_DEFAULT=${options.budget}\n` +
      `KIT_DEFAULT_ARGS="\${KIT_DEFAULT_ARGS-${options.quick ? "--quick" : ""}}"\n`,
  );

  let denoBinary: string | undefined;
  if (!options.skipDeno) {
    const deno = await compressedDeno(cache, options.xz);
    copyFileSync(deno.path, join(out, "deno.xz"));
    denoBinary = deno.binary;
  }
  const debVersions: Record<string, string> = {};
  if (!options.skipDebs) {
    mkdirSync(join(out, "debs"));
    for (const deb of await debs(cache)) {
      copyFileSync(deb, join(out, "debs", basename(deb)));
      const [name, version, arch] = basename(deb, ".deb").split("_");
      debVersions[name] = `${version} ${arch}`;
    }
  }

  let git = "unknown";
  try {
    const head = (await run("git", ["rev-parse", "--short=12", "HEAD"], { cwd: repo })).trim();
    const dirty = (await run("git", ["status", "--porcelain"], { cwd: repo })).trim()
      ? "+uncommitted changes"
      : "";
    git = head + dirty;
  } catch (_noGit) {
    // not a git checkout
  }
  const version = `carrot gpu-kit, git ${git}, deno ${Deno.version.deno}, tfjs ${tf.version.tfjs}, built ` +
    new Date().toISOString();
  writeFileSync(join(out, "VERSION"), version + "\n");
  writeFileSync(join(out, "README.txt"), readme(options));

  const files: Record<string, { bytes: number; sha256: string }> = {};
  for (const f of filesUnder(out)) {
    files[f] = { bytes: statSync(join(out, f)).size, sha256: await sha256File(join(out, f)) };
  }
  const manifest = {
    version,
    git,
    deno: Deno.version.deno,
    denoBinary: denoBinary ?? null,
    xzPreset: options.skipDeno ? null : options.xz,
    tfjs: tf.version.tfjs,
    debs: options.skipDebs ? null : debVersions,
    defaults: { budget: options.budget, quick: options.quick },
    files,
  };
  writeFileSync(join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  const total = filesUnder(out).reduce((s, f) => s + statSync(join(out, f)).size, 0);
  for (const [f, { bytes }] of Object.entries(files)) {
    log(`  ${f.padEnd(44)} ${(bytes / 2 ** 20).toFixed(2).padStart(7)} MiB`);
  }
  log(`kit: ${out}, ${(total / 2 ** 20).toFixed(2)} MiB in ${Object.keys(files).length + 1} files`);
  if (total > options.maxMiB * 2 ** 20) {
    throw new InputError(`the kit is ${(total / 2 ** 20).toFixed(1)} MiB, over --maxMiB ${options.maxMiB}`, {
      hint: "use a stronger --xz preset or leave parts out",
    });
  }
  log(`run it on the GPU machine: bash ${options.out}/run.sh (README.txt)`);
});
