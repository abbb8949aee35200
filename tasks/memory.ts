/**
 * `deno task memory`: what a CUB-sized `deno task train` costs in memory. Writes a CUB-shaped tree (official layout
 * and counts, 11,788 JPEGs of 500 × 375; `bench/cub_shaped.ts`) once, random timm weights for `--model` when no
 * `--weights` are given, then runs `tasks/train.ts --dataset cub` on it as a child process and reads the kernel's
 * resident-set figures of that process (`VmRSS`, and the high-water mark `VmHWM`, from `/proc/<pid>/status`)
 * every 200 ms. Every line the run prints is echoed with the resident set at that moment, so progress-bar lines
 * trace memory batch by batch; the summary gives the peak and is saved as JSON. `--stopAfter` interrupts the run
 * (SIGINT, as Ctrl-C) after that many seconds, for backbones too slow to finish here.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { writeCubShapedTree } from "../bench/cub_shaped.ts";
import { writeJsonAtomic } from "../lib/_atomic.ts";
import { randomTimmWeights, resolveTimmConfig } from "../lib/models/registry.ts";
import { writeSafetensors } from "../lib/models/safetensors.ts";
import { log, Progress } from "../lib/progress.ts";
import { parseCommandLine, runTask } from "./_cli.ts";

const Options = z.object({
  root: z.string().default("runs/memory/CUB_200_2011").describe(
    "where the CUB-shaped tree is (or is written)",
  ),
  model: z.string().default("vit_base_patch16_224").describe("registered timm name or a .json timm config"),
  weights: z.string().optional().describe("timm safetensors (default: random weights, seed 0, written once)"),
  stopAfter: z.number().positive().optional().describe("interrupt the run after this many seconds"),
  train: z.string().default("").describe('further `deno task train` options, e.g. --train="--seeds 1"'),
});

const options = parseCommandLine(Options, Deno.args, {
  task: "memory",
  summary: "Peak resident memory of `deno task train --dataset cub` on a CUB-shaped tree of 11,788 images.",
});

const GiB = 2 ** 30;
const gib = (bytes: number) => `${(bytes / GiB).toFixed(2)} GiB`;

/** VmRSS and VmHWM of `pid` in bytes, or undefined once the process is gone. */
function residentSet(pid: number): { rss: number; peak: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const field = (name: string) =>
      1024 * Number(status.match(new RegExp(`^${name}:\\s+(\\d+) kB`, "m"))?.[1]);
    return { rss: field("VmRSS"), peak: field("VmHWM") };
  } catch {
    return undefined;
  }
}

/** Writes random weights for the model once (seed 0) and returns their path. */
async function randomWeights(model: string, resolved: ReturnType<typeof resolveTimmConfig>): Promise<string> {
  const { name, config } = resolved;
  const path = join(
    "runs/memory",
    `${name === "custom" ? model.replace(/\W+/g, "_") : name}-random.safetensors`,
  );
  try {
    Deno.statSync(path);
  } catch {
    log(`writing random weights for ${model} to ${path}`);
    await writeSafetensors(path, randomTimmWeights(config, 0));
  }
  return path;
}

await runTask("memory", async () => {
  // inputs first: an unknown model, a bad config or missing weights are refused before runs/memory is created
  const resolved = resolveTimmConfig(
    options.model.endsWith(".json") ? JSON.parse(readFileSync(options.model, "utf8")) : options.model,
  );
  if (options.weights && !existsSync(options.weights)) {
    throw new RangeError(`--weights ${options.weights}: no such file`);
  }
  mkdirSync("runs/memory", { recursive: true });
  const bar = new Progress("CUB-shaped tree", 11788, "img");
  await writeCubShapedTree(options.root, (done) => bar.update(done));
  const weights = options.weights ?? await randomWeights(options.model, resolved);
  const name = `memory-${options.model.replace(/\W+/g, "_")}`;
  const args = [
    ...["run", "-A", "tasks/train.ts", "--dataset", "cub", "--data-root", options.root],
    ...["--model", options.model, "--weights", weights, "--name", name, "--cache-dir", "runs/memory/cache"],
    ...options.train.split(/\s+/).filter(Boolean),
  ];
  log(`running: deno ${args.join(" ")}`);
  const start = performance.now();
  const child = new Deno.Command(Deno.execPath(), { args, stdout: "inherit", stderr: "piped" }).spawn();
  let last = { rss: 0, peak: 0 };
  const samples: [number, number][] = [];
  const seconds = () => (performance.now() - start) / 1000;
  const sampler = setInterval(() => {
    last = residentSet(child.pid) ?? last;
    samples.push([Number(seconds().toFixed(1)), last.rss]);
  }, 200);
  const stopper = options.stopAfter
    ? setTimeout(() => {
      log(`memory: --stopAfter ${options.stopAfter} s reached; interrupting the run (SIGINT)`);
      child.kill("SIGINT");
    }, options.stopAfter * 1000)
    : undefined;
  const lines: { seconds: number; rss: number; peak: number; line: string }[] = [];
  let pending = "";
  const decoder = new TextDecoder();
  for await (const chunk of child.stderr) {
    pending += decoder.decode(chunk, { stream: true });
    const parts = pending.split(/[\r\n]/);
    pending = parts.pop()!;
    for (const line of parts.filter((l) => l.trim())) {
      last = residentSet(child.pid) ?? last;
      lines.push({ seconds: Number(seconds().toFixed(1)), rss: last.rss, peak: last.peak, line });
      log(`[${seconds().toFixed(0)} s, RSS ${gib(last.rss)}, peak ${gib(last.peak)}] ${line}`);
    }
  }
  const status = await child.status;
  clearInterval(sampler);
  clearTimeout(stopper);
  const summary = {
    command: `deno ${args.join(" ")}`,
    exitCode: status.code,
    interrupted: options.stopAfter !== undefined && status.code === 130,
    wallSeconds: Number(seconds().toFixed(1)),
    peakResidentBytes: last.peak,
    lines,
    samples,
  };
  await writeJsonAtomic(join("runs/memory", `${name}.json`), summary);
  log(
    `memory: exit ${status.code} after ${summary.wallSeconds} s; peak resident set ${gib(last.peak)} ` +
      `(VmHWM); trace in runs/memory/${name}.json`,
  );
});
