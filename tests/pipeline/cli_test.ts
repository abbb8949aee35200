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
async function train(cwd: string, args: string[], onLine: (line: string) => boolean = () => false) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", join(repo, "deno.json"), join(repo, "tasks/train.ts"), ...args],
    cwd,
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

const NO_VALIDATION =
  "--val-fraction 0 leaves no validation data: λ tuning, CARROT's selection and its fallback " +
  "need a validation split; use --val-fraction > 0 (e.g. 0.1) or a dataset/feature set with a validation split";

/** Runs train with `args` in a temp dir holding an empty runs/, and checks the refusal: message, no stack, no run. */
async function refusesNoValidation(
  args: (dir: string) => Promise<string[]>,
  code: number,
  prefix: (dir: string) => string = () => "",
) {
  const dir = await Deno.makeTempDir();
  try {
    mkdirSync(join(dir, "runs"));
    const { code: exit, lines } = await train(dir, [...await args(dir), "--name", "noval"]);
    const output = lines.join("\n");
    assert.equal(exit, code, output);
    assert.ok(lines.includes(`train: ${prefix(dir)}${NO_VALIDATION}`), output);
    assert.ok(!lines.some((l) => /^\s+at /.test(l)), `no stack trace:\n${output}`);
    assert.deepEqual(readdirSync(join(dir, "runs")), [], "no run folder");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

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
      const root = join(dir, "folder");
      for (
        const path of ["train/a/1.jpg", "train/a/2.jpg", "train/b/1.jpg", "train/b/2.jpg", "test/a/1.jpg"]
      ) {
        mkdirSync(join(root, path, ".."), { recursive: true });
        writeFileSync(join(root, path), TINY_JPEG);
      }
      writeFileSync(join(dir, "weights.safetensors"), ""); // never read: the refusal comes first
      return Promise.resolve([
        ...["--dataset", "imagefolder", "--data-root", root, "--weights", join(dir, "weights.safetensors")],
        ...["--backend", "cpu", "--cache-dir", join(dir, "cache"), "--val-fraction", "0"],
      ]);
    },
    1,
    (dir) => `${join(dir, "folder")}: `,
  );
});
