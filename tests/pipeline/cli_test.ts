/**
 * `deno task train` as a user runs it: Ctrl-C (SIGINT) after the features stage stops the run with exit code 130
 * and says how to resume; the same command again takes every feature from the cache and finishes.
 */
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { materializeSynthBirds } from "../../lib/data/synthbirds.ts";
import { tinyFeatureFile, tinyTrainConfig } from "./_tiny.ts";
import { TINY_JPEG } from "../data/_trees.ts";

const repo = resolve(import.meta.dirname!, "../..");

/** Runs `tasks/train.ts` in `cwd`; `onLine` sees each stderr line and may return true to send SIGINT. */
async function train(
  cwd: string,
  args: string[],
  onLine: (line: string) => boolean = () => false,
  env: Record<string, string> = {},
) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", join(repo, "deno.json"), join(repo, "tasks/train.ts"), ...args],
    cwd,
    env,
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  let pending = "", signalled = false;
  const decoder = new TextDecoder();
  for await (const chunk of child.stderr) {
    pending += decoder.decode(chunk, { stream: true });
    const parts = pending.split("\n");
    pending = parts.pop()!;
    for (const line of parts) {
      lines.push(line);
      if (!signalled && onLine(line)) {
        signalled = true;
        child.kill("SIGINT");
      }
    }
  }
  return { code: (await child.status).code, lines };
}

Deno.test("deno task train: Ctrl-C exits 130 with a resume hint; the rerun resumes from the feature cache", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tiny = await tinyTrainConfig(dir);
    materializeSynthBirds({ root: tiny.dataRoot, ...tiny.synthBirds });
    const args = [
      ...["--dataset", "imagefolder", "--data-root", tiny.dataRoot, "--model", tiny.model],
      ...["--weights", tiny.weights, "--cache-dir", tiny.cacheDir, "--backend", "wasm", "--seeds", "1"],
      ...["--lambda-grid", "1,10", "--outer-steps", "2", "--top-k", "3", "--faithfulness-sample", "2"],
      ...["--faithfulness-ks", "1,3", "--name", "cli"],
    ];
    const first = await train(dir, args, (line) => /^\[features\] /.test(line));
    assert.equal(first.code, 130, first.lines.join("\n"));
    assert.ok(
      first.lines.some((l) => l.startsWith("interrupted: the feature cache keeps")),
      first.lines.join("\n"),
    );
    assert.ok(!first.lines.some((l) => l.startsWith("done:")), "the interrupted run must not finish");

    const second = await train(dir, args);
    assert.equal(second.code, 0, second.lines.join("\n"));
    assert.ok(second.lines.includes("  train: 64 images, 64 from the cache"), second.lines.join("\n"));
    assert.ok(second.lines.includes("  test: 24 images, 24 from the cache"), second.lines.join("\n"));
    assert.ok(second.lines.some((l) => /^done: test top-1 ERM /.test(l)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task train --model <timm hub folder>: its model.safetensors and its own preprocessing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tiny = await tinyTrainConfig(dir);
    materializeSynthBirds({ root: tiny.dataRoot, ...tiny.synthBirds });
    const hub = join(dir, "hub");
    mkdirSync(hub);
    const mean = [0.5, 0.4, 0.3], std = [0.2, 0.25, 0.3];
    writeFileSync(
      join(hub, "config.json"),
      JSON.stringify({
        architecture: "vit_tiny_synth",
        num_classes: 0,
        model_args: { img_size: 32, patch_size: 8, embed_dim: 32, depth: 1, num_heads: 2, mlp_ratio: 2 },
        pretrained_cfg: { mean, std, input_size: [3, 32, 32], crop_pct: 1, interpolation: "bilinear" },
      }),
    );
    Deno.copyFileSync(tiny.weights, join(hub, "model.safetensors")); // the same tensor layout as tiny.json
    const args = [
      ...[
        "--dataset",
        "imagefolder",
        "--data-root",
        tiny.dataRoot,
        "--model",
        hub,
        "--cache-dir",
        tiny.cacheDir,
      ],
      ...["--backend", "wasm", "--seeds", "1", "--lambda-grid", "1", "--outer-steps", "1", "--top-k", "2"],
      ...["--faithfulness-sample", "1", "--faithfulness-ks", "1", "--faithfulness-methods", "random"],
      ...["--name", "hub"],
    ];
    const run = await train(dir, args);
    assert.equal(run.code, 0, run.lines.join("\n"));
    const metrics = JSON.parse(Deno.readTextFileSync(join(dir, "runs/hub/metrics.json")));
    assert.equal(metrics.provenance.weights, join(hub, "model.safetensors"));
    assert.deepEqual(metrics.provenance.preprocessing.mean, mean);
    assert.deepEqual(metrics.provenance.preprocessing.std, std);
    assert.equal(metrics.provenance.preprocessing.interpolation, "bilinear");
    assert.equal(metrics.provenance.preprocessing.cropPct, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const NO_VALIDATION =
  "--val-fraction 0 leaves no validation data: λ tuning, CARROT's selection and its fallback " +
  "need a validation split; use --val-fraction > 0 (e.g. 0.1) or a dataset/feature set with a validation split";

/**
 * Runs train with `args` in a temp dir holding an empty runs/, and checks the refusal as a user sees it: exit `code`,
 * the `expected` line, no stack trace, at most two lines after the config echo, no XDG_RUNTIME_DIR noise (the
 * environment variable is removed), and no run folder.
 */
async function refuses(
  args: (dir: string) => Promise<string[]>,
  code: number,
  expected: (dir: string) => RegExp,
) {
  const dir = await Deno.makeTempDir();
  try {
    mkdirSync(join(dir, "runs"));
    const { code: exit, lines } = await train(dir, [...await args(dir), "--name", "refused"], undefined, {
      XDG_RUNTIME_DIR: "",
    });
    const output = lines.join("\n");
    assert.equal(exit, code, output);
    assert.ok(lines.some((l) => expected(dir).test(l)), `expected ${expected(dir)}:\n${output}`);
    assert.ok(!lines.some((l) => /^\s+at /.test(l)), `no stack trace:\n${output}`);
    assert.ok(!/XDG_RUNTIME_DIR/.test(output), `no XDG_RUNTIME_DIR noise:\n${output}`);
    const echo = lines.findIndex((l) => l.startsWith("config: "));
    assert.ok(lines.length - (echo + 1) <= 2, `at most two lines after the config echo:\n${output}`);
    assert.deepEqual(readdirSync(join(dir, "runs")), [], "no run folder");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const escaped = (text: string) => new RegExp(`^train: ${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);
const refusesNoValidation = (
  args: (dir: string) => Promise<string[]>,
  code: number,
  prefix = (_: string) => "",
) => refuses(args, code, (dir) => escaped(`${prefix(dir)}${NO_VALIDATION}`));

/** A two-class image folder with train/ and test/ under `dir`/folder; returns its path. */
function imageFolder(dir: string): string {
  const root = join(dir, "folder");
  for (const path of ["train/a/1.jpg", "train/a/2.jpg", "train/b/1.jpg", "train/b/2.jpg", "test/a/1.jpg"]) {
    mkdirSync(join(root, path, ".."), { recursive: true });
    writeFileSync(join(root, path), TINY_JPEG);
  }
  return root;
}

Deno.test("deno task train refuses bad input in one line, exit code 1 or 2, no stack, no run folder", async (t) => {
  await t.step("missing dataset root (exit 1)", () =>
    refuses(
      (dir) => {
        writeFileSync(join(dir, "w.safetensors"), "");
        return Promise.resolve([
          ...[
            "--dataset",
            "cub",
            "--data-root",
            join(dir, "nowhere"),
            "--weights",
            join(dir, "w.safetensors"),
          ],
          ...["--backend", "auto"],
        ]);
      },
      1,
      (dir) => new RegExp(`^train: CUB-200-2011: the root folder ${join(dir, "nowhere")} does not exist`),
    ));
  await t.step("truncated weights (exit 1)", () =>
    refuses(
      async (dir) => {
        const tiny = await tinyTrainConfig(dir);
        const bytes = Deno.readFileSync(tiny.weights);
        Deno.writeFileSync(join(dir, "cut.safetensors"), bytes.subarray(0, bytes.length >> 1));
        return [
          ...["--dataset", "imagefolder", "--data-root", imageFolder(dir), "--model", tiny.model],
          ...[
            "--weights",
            join(dir, "cut.safetensors"),
            "--cache-dir",
            join(dir, "cache"),
            "--backend",
            "cpu",
          ],
        ];
      },
      1,
      () => /^train: .*cut\.safetensors: .*truncated/,
    ));
  await t.step("garbage --features file (exit 1)", () =>
    refuses(
      (dir) => {
        writeFileSync(join(dir, "g.safetensors"), "not a safetensors file\n");
        const g = join(dir, "g.safetensors");
        return Promise.resolve(["--dataset", "features", "--features", `${g},${g},${g}`, "--backend", "cpu"]);
      },
      1,
      () => /^train: .*g\.safetensors: /,
    ));
  await t.step(
    "unknown flag (exit 2)",
    () =>
      refuses(
        () => Promise.resolve(["--seed", "3"]),
        2,
        () => /^train: --seed: unknown option \(did you mean --seeds\?\)$/,
      ),
  );
  await t.step(
    "out-of-range flag (exit 2)",
    () =>
      refuses(
        () => Promise.resolve(["--folds", "1"]),
        2,
        () => /^train: --folds: Too small: expected number to be >=2$/,
      ),
  );
  await t.step(
    "a list item that is not a number (exit 2)",
    () =>
      refuses(
        () => Promise.resolve(["--lambda-grid", "1,abc"]),
        2,
        () => /^train: --lambdaGrid\.1: Invalid input: expected number, received NaN$/,
      ),
  );
  await t.step(
    "a --config file's lists are checked item by item: the default γ list [0, 10] passes (exit 2 for --folds alone)",
    () =>
      refuses(
        (dir) => {
          writeFileSync(join(dir, "c.json"), JSON.stringify({ gammas: [0, 10], folds: 1 }));
          return Promise.resolve(["--config", join(dir, "c.json")]);
        },
        2,
        (dir) => escaped(`--folds: Too small: expected number to be >=2 (in ${join(dir, "c.json")})`),
      ),
  );
});

Deno.test("deno task train --val-fraction 0 without a --features val file exits 2 with the fix, before any run", async () => {
  await refusesNoValidation(async (dir) => {
    const train = await tinyFeatureFile(dir, "train", [4, 4]),
      test = await tinyFeatureFile(dir, "test", [2, 2]);
    return ["--dataset", "features", "--features", `${train},,${test}`, "--val-fraction", "0"];
  }, 2);
});

Deno.test("deno task train --val-fraction 0 on an image folder without val/ exits 1 with the fix, before extraction", async () => {
  await refusesNoValidation(
    (dir) => {
      writeFileSync(join(dir, "weights.safetensors"), ""); // never read: the refusal comes first
      return Promise.resolve([
        ...[
          "--dataset",
          "imagefolder",
          "--data-root",
          imageFolder(dir),
          "--weights",
          join(dir, "weights.safetensors"),
        ],
        ...["--backend", "cpu", "--cache-dir", join(dir, "cache"), "--val-fraction", "0"],
      ]);
    },
    1,
    (dir) => `${join(dir, "folder")}: `,
  );
});
