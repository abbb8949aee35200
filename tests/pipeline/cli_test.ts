/**
 * `deno task train` as a user runs it: Ctrl-C (SIGINT) after the features stage stops the run with exit code 130
 * and says how to resume; the same command again takes every feature from the cache and finishes.
 */
import assert from "node:assert/strict";
import { join, resolve } from "node:path";
import { materializeSynthBirds } from "../../lib/data/synthbirds.ts";
import { tinyTrainConfig } from "./_tiny.ts";

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
