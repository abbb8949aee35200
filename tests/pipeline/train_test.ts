import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { selectBackend } from "../../lib/backend.ts";
import { readSafetensors } from "../../lib/models/safetensors.ts";
import { runTraining } from "../../lib/pipeline/train.ts";
import { tinyTrainConfig } from "./_tiny.ts";
import { setLogSink } from "../../lib/progress.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

Deno.test("runTraining(): images → features → ERM/CARROT → explanations, faithfulness, suspects, report; resumes from the cache", async () => {
  const dir = await Deno.makeTempDir();
  const lines: string[] = [];
  const previous = setLogSink((line) => lines.push(line));
  try {
    const config = await tinyTrainConfig(dir);
    const result = await runTraining(config);
    for (
      const f of [
        "config.json",
        "metrics.json",
        "alpha.safetensors",
        "head.safetensors",
        "explanations.jsonl",
        "suspects.csv",
        "report.html",
      ]
    ) {
      assert.ok(existsSync(join(config.runDir, f)), f);
    }
    assert.equal(result.perSeed.length, 2);
    assert.ok(lines.includes("  train: 64 images, 0 from the cache"), lines.join("\n"));
    assert.ok(
      lines.some((l) => /^\[features\] \d/.test(l)) && lines.some((l) => /^\[faithfulness\]/.test(l)),
      "stage lines",
    );
    // progress bars inside the long stages end at their totals: 2 λ values, 24 test images, 64 training points,
    // 2 methods × 2 K × 3 points × (remove + keep) = 24 refits; RRO at the step it stopped (≤ 3)
    for (
      const bar of [
        /^ {2}λ grid \[#{24}\] 2\/2 /,
        /^ {2}RRO \[[#.]{24}\] [0-3]\/3 /,
        /^ {2}influence explanations \[#{24}\] 24\/24 /,
        /^ {2}faithfulness \[#{24}\] 24\/24 /,
        /^ {2}self-influence \[#{24}\] 64\/64 /,
      ]
    ) assert.ok(lines.some((l) => bar.test(l)), `${bar}\n${lines.join("\n")}`);
    const metrics = JSON.parse(readFileSync(join(config.runDir, "metrics.json"), "utf8"));
    assert.equal(metrics.summary.erm.accuracy.mean, result.summary.erm.accuracy.mean);
    assert.ok(
      metrics.detection.harmfulness.mislabeled.auroc >= 0 &&
        metrics.detection.harmfulness.mislabeled.auroc <= 1,
    );
    const explanations = readFileSync(join(config.runDir, "explanations.jsonl"), "utf8").trim().split("\n")
      .map((l) => JSON.parse(l));
    assert.equal(explanations.length, 4 * 6);
    assert.equal(explanations[0].representer.supporters.length, 3);
    assert.ok(
      existsSync(explanations[0].representer.supporters[0].path),
      "supporters name their image files",
    );
    assert.ok(explanations[0].path.endsWith(".png"));
    const alpha = await readSafetensors(join(config.runDir, "alpha.safetensors"));
    assert.deepEqual(alpha.tensors.get("alpha")!.shape, [2, 64]);
    const head = await readSafetensors(join(config.runDir, "head.safetensors"));
    assert.deepEqual(head.tensors.get("carrot")!.shape, [4, 33]);
    const csv = readFileSync(join(config.runDir, "suspects.csv"), "utf8").trim().split("\n");
    assert.equal(csv.length, 1 + 64);
    assert.match(csv[0], /^rank,row,id,path,label,harmfulness,/);
    const html = readFileSync(join(config.runDir, "report.html"), "utf8");
    assert.match(html, /window\.carrotPlotly/);
    assert.match(html, /data:image\/png;base64,/);
    // a rerun takes every feature from the cache
    lines.length = 0;
    await runTraining({ ...config, seeds: 1, outerSteps: 1 });
    assert.ok(lines.includes("  train: 64 images, 64 from the cache"), lines.join("\n"));
    assert.ok(lines.includes("  test: 24 images, 24 from the cache"));
    assert.equal(tf.memory().numTensors < 200, true, `tensors left: ${tf.memory().numTensors}`);
  } finally {
    setLogSink(previous);
    await Deno.remove(dir, { recursive: true });
  }
});
