import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { selectBackend } from "../../lib/backend.ts";
import { nativeBlasStatus } from "../../lib/native_blas.ts";
import { readSafetensors } from "../../lib/models/safetensors.ts";
import { runTraining } from "../../lib/pipeline/train.ts";
import { tinyFeatureFile, tinyTrainConfig } from "./_tiny.ts";
import { setLogSink } from "../../lib/progress.ts";
import { assertClose } from "../_assert.ts";

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
    // 2 methods × 2 K × 3 points × (remove + keep) = 24 refits; CARROT's 2 paths × 2 steps, more when a path is extended
    for (
      const bar of [
        /^ {2}λ grid \[#{24}\] 2\/2 /,
        /^ {2}CARROT \[[#.]{24}\] \d+\/\d+ /,
        /^ {2}influence explanations \[#{24}\] 24\/24 /,
        /^ {2}faithfulness \[#{24}\] 24\/24 /,
        /^ {2}self-influence \[#{24}\] 64\/64 /,
      ]
    ) assert.ok(lines.some((l) => bar.test(l)), `${bar}\n${lines.join("\n")}`);
    const metrics = JSON.parse(readFileSync(join(config.runDir, "metrics.json"), "utf8"));
    assert.equal(metrics.summary.erm.accuracy.mean, result.summary.erm.accuracy.mean);
    // what the selection chose is reported per seed, with the temperatures and the calibrated metrics
    for (const seed of metrics.perSeed) {
      assert.equal(typeof seed.selection.fallback, "boolean");
      assert.ok(Number.isFinite(seed.selection.gain) && seed.selection.reason.length > 0);
      assert.ok(seed.temperature.erm > 0 && seed.temperature.carrot > 0);
      assert.equal(seed.carrotCalibrated.accuracy, seed.carrot.accuracy);
      // SynthBirds' ground truth: α grouped into clean / mislabeled / shortcut; class masses keep Σα = n
      const { clean, mislabeled, shortcut } = seed.alphaByTruth;
      assert.equal(clean.count + mislabeled.count + shortcut.count, 64);
      const total = [clean, mislabeled, shortcut].reduce((s, g) => s + (g.count ? g.mean * g.count : 0), 0);
      assert.ok(Math.abs(total - 64) < 1e-3, `Σα = ${total}`);
    }
    assert.ok(Number.isFinite(metrics.summary.carrotCalibrated.ece.mean));
    assert.deepEqual([...new Set(result.trajectory.map((e) => e.path))], ["uniform, γ 0", "self, γ 0"]);
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
    assert.match(
      csv[0],
      /^rank,row,id,path,label,harmfulness,self-influence,representer,loss,out-of-fold-loss,/,
    );
    assert.ok(
      metrics.detection["out-of-fold-loss"].mislabeled.auroc >= 0 &&
        metrics.detection["out-of-fold-loss"].mislabeled.auroc <= 1,
    );
    const html = readFileSync(join(config.runDir, "report.html"), "utf8");
    // the mislabel gallery shows the 24 highest out-of-fold losses of suspects.csv, highest first
    const gallery = html.slice(html.indexOf("Likely mislabelled training images"));
    const shown = [...gallery.matchAll(/ℓ<sub>oof<\/sub> ([-+.e\d]+)/g)].map((m) => Number(m[1]));
    const column = csv[0].split(",").indexOf("out-of-fold-loss");
    const expected = csv.slice(1).map((line) => Number(line.split(",")[column])).sort((a, b) => b - a).slice(
      0,
      24,
    );
    assert.equal(shown.length, 24);
    shown.forEach((v, q) => assertClose(v, expected[q], { rtol: 1e-2, what: `gallery tile ${q}` }));
    assert.match(html, /window\.carrotPlotly/);
    assert.match(html, /CARROT's selection per seed/);
    for (
      const section of [
        "Did CARROT find the corrupted training images?",
        "down-weighted most",
        "up-weighted most",
      ]
    ) {
      assert.ok(html.includes(section), section);
    }
    assert.match(html, /data:image\/png;base64,/);
    // a rerun takes every feature from the cache; the original RRO is still available
    lines.length = 0;
    const rro = await runTraining({ ...config, method: "rro", seeds: 1, outerSteps: 1 });
    assert.ok(lines.some((l) => /^ {2}RRO \[[#.]{24}\] [01]\/1 /.test(l)), lines.join("\n"));
    assert.equal(rro.perSeed[0].selection, undefined);
    assert.equal(rro.trajectory[0].path, "rro");
    assert.ok(lines.includes("  train: 64 images, 64 from the cache"), lines.join("\n"));
    assert.ok(lines.includes("  test: 24 images, 24 from the cache"));
    assert.equal(tf.memory().numTensors < 200, true, `tensors left: ${tf.memory().numTensors}`);
  } finally {
    setLogSink(previous);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runTraining(): no validation data is a RangeError naming the cause and the fix, and no run folder", async () => {
  const dir = await Deno.makeTempDir();
  const previous = setLogSink(() => {});
  const before = tf.memory().numTensors;
  try {
    const train = await tinyFeatureFile(dir, "train", [6, 6, 6]);
    const test = await tinyFeatureFile(dir, "test", [2, 2, 2], 1);
    const emptyVal = await tinyFeatureFile(dir, "val", [0, 0, 0], 2);
    const singles = await tinyFeatureFile(dir, "singles", [1, 1, 1], 3);
    const config = await tinyTrainConfig(dir, { dataset: "features" });
    const refuses = async (overrides: Partial<typeof config>, message: RegExp) => {
      await assert.rejects(
        runTraining({ ...config, ...overrides }),
        (e) => e instanceof RangeError && message.test(e.message),
      );
      assert.ok(!existsSync(config.runDir), "no run folder");
    };
    await refuses(
      { features: [train, "", test], valFraction: 0 },
      /^--val-fraction 0 leaves no validation data: λ tuning, CARROT's selection and its fallback need a validation split; use --val-fraction > 0 \(e\.g\. 0\.1\) or a dataset\/feature set with a validation split$/,
    );
    await refuses(
      { features: [train, emptyVal, test] },
      new RegExp(`^${emptyVal}: the validation file has no rows; pass a non-empty validation file`),
    );
    await refuses(
      { features: [singles, "", test] },
      /^--val-fraction 0\.1 carves no validation images: every class/,
    );
    assert.equal(tf.memory().numTensors, before, "the refused runs free their features");
  } finally {
    setLogSink(previous);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runTraining(): validation-coverage and λ-grid warnings are logged once and recorded in metrics.json", async () => {
  const dir = await Deno.makeTempDir();
  const lines: string[] = [];
  const previous = setLogSink((line) => lines.push(line));
  try {
    // official val: class 1 keeps 1 of its 2 images per seed (the other 20% is dropped), class 2 has none
    const files = [
      await tinyFeatureFile(dir, "train", [8, 8, 8]),
      await tinyFeatureFile(dir, "val", [5, 2, 0], 1),
      await tinyFeatureFile(dir, "test", [3, 3, 3], 2),
    ];
    const config = await tinyTrainConfig(dir, {
      dataset: "features",
      features: files,
      valFraction: 0, // unused: the val file is the validation split
      lambdaGrid: [1e4, 1e5, 1e6], // a grid with λ tuned at an end (the largest, on these features),
      lambdaExtend: 0, // not extended past it
      outerSteps: 1,
      validationPath: true, // and the split-validation RRO challenges the selection on half of val
      gradedIncumbent: true, // and the incumbent rule reports its noise evidence
      faithfulnessMethods: ["random"],
      faithfulnessSample: 2,
      faithfulnessKs: [1],
    });
    const result = await runTraining(config);
    assert.equal(result.validationWarnings.length, 3, result.validationWarnings.join("\n"));
    assert.match(result.validationWarnings[0], /^class 2 has no validation images: it does not enter L_val/);
    assert.match(result.validationWarnings[1], /^class 1 has a single validation image/);
    assert.match(
      result.validationWarnings[2],
      /^λ = 1\.00e\+6 is the largest value of the λ grid \(3 values/,
    );
    for (const warning of result.validationWarnings) {
      assert.equal(lines.filter((l) => l === `  warning: ${warning}`).length, 1, `logged once: ${warning}`);
    }
    const metrics = JSON.parse(readFileSync(join(config.runDir, "metrics.json"), "utf8"));
    assert.deepEqual(metrics.validationWarnings, result.validationWarnings);
    for (const seed of metrics.perSeed) { // the challenger's step and the arbitration are reported per seed
      const path = seed.selection.validationPath;
      assert.equal(typeof path.used, "boolean");
      assert.match(path.reason, /^split-validation RRO /);
      assert.ok(seed.selection.reason.endsWith(path.reason), seed.selection.reason);
      const { incumbent } = seed.selection; // so are the noise evidence and the incumbent rule's decision
      assert.ok(Number.isFinite(incumbent.rate) && incumbent.trainError >= 0 && incumbent.valError >= 0);
      assert.equal(typeof incumbent.used, "boolean");
      assert.ok(seed.selection.reason.includes(incumbent.reason), seed.selection.reason);
    }
    // no backbone ran: metrics.json and the report name the feature files and their SHA-256, not a model
    const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");
    assert.deepEqual(
      metrics.provenance.features,
      ["train", "val", "test"].map((split, s) => ({
        split,
        path: files[s],
        sha256: sha256(files[s]),
        rows: [24, 7, 9][s],
      })),
    );
    // and the kernels that computed it
    assert.equal(metrics.provenance.backend, tf.getBackend());
    assert.equal(
      metrics.provenance.matMul,
      tf.getBackend() === "wasm" ? nativeBlasStatus().description : `${tf.getBackend()} kernel`,
    );
    assert.equal(metrics.config.model, undefined);
    assert.equal(metrics.config.weights, undefined);
    const report = readFileSync(join(config.runDir, "report.html"), "utf8");
    assert.ok(
      report.includes(`train train.safetensors (sha256 ${sha256(files[0]).slice(0, 12)})`),
      "report header",
    );
    assert.ok(!report.includes("tiny"), "the report names no backbone");
    for (const seed of result.perSeed) {
      for (const value of [...Object.values(seed.erm), ...Object.values(seed.carrotCalibrated)]) {
        assert.ok(Number.isFinite(value), "finite test metrics");
      }
      assert.ok(
        seed.selection && Number.isFinite(seed.selection.gain),
        "CARROT's selection ran on the val file",
      );
    }
    assert.ok(result.lambdas.every(Number.isFinite));
  } finally {
    setLogSink(previous);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runTraining(): --trimPath runs the path from the graded trim; its steps join the trajectory with their val scores", async () => {
  const dir = await Deno.makeTempDir();
  const previous = setLogSink(() => {});
  try {
    const files = [
      await tinyFeatureFile(dir, "train", [30, 30, 30], 0, 0.25),
      await tinyFeatureFile(dir, "val", [10, 10, 10], 1),
      await tinyFeatureFile(dir, "test", [5, 5, 5], 2),
    ];
    const config = await tinyTrainConfig(dir, {
      dataset: "features",
      features: files,
      valFraction: 0,
      outerSteps: 2,
      trimPath: true,
      validationPath: false,
      faithfulnessMethods: ["random"],
      faithfulnessSample: 2,
      faithfulnessKs: [1],
    });
    const result = await runTraining(config);
    const metrics = JSON.parse(readFileSync(join(config.runDir, "metrics.json"), "utf8"));
    assert.equal(metrics.config.trimPath, true);
    // seed 0's trajectories: the path from the graded trim beside the paths from α ≡ 1
    const path = "self, γ 0 from the graded trim";
    const steps = result.trajectory.filter((e) => e.path === path);
    assert.deepEqual(steps.map((e) => e.step), [0, 1, 2], "step 0 (the graded trim) and two steps");
    const plain = result.trajectory.filter((e) => e.path === "self, γ 0");
    assert.equal(plain.length, 3, "the path from α ≡ 1 is still there");
    // step 0 is scored as the graded trim, not as ERM; accepted steps carry their own val scores
    assert.notEqual(steps[0].valLoss, plain[0].valLoss);
    for (const e of steps) {
      assert.equal(Number.isFinite(e.valLoss), e.step === 0 || e.accepted, `step ${e.step}`);
    }
    assert.ok(steps.some((e) => e.step > 0 && e.accepted), "no step from the graded trim accepted");
    assert.ok(steps.slice(1).every((e, s) => e.objective <= steps[s].objective), "L_cf increased");
  } finally {
    setLogSink(previous);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runTraining(): --averageVeto reaches the selection, which reports its verdict per seed and acts on it", async () => {
  const dir = await Deno.makeTempDir();
  const previous = setLogSink(() => {});
  try {
    // 4 classes, every 4th training label moved to the next class; 240 clean validation images, so the top-3 mean
    // is kept over ERM on both seeds and the veto's paired test has power (seed 0 vetoes, seed 1 does not)
    const files = [
      await tinyFeatureFile(dir, "train", [60, 60, 60, 60], 0, 0.25),
      await tinyFeatureFile(dir, "val", [60, 60, 60, 60], 1),
      await tinyFeatureFile(dir, "test", [5, 5, 5, 5], 2),
    ];
    const run = async (averageVeto: boolean) =>
      await runTraining(
        await tinyTrainConfig(dir, {
          dataset: "features",
          features: files,
          valFraction: 0,
          outerSteps: 1,
          averageVeto,
          validationPath: false,
          // the candidates this problem was built for: with the self-influence trims (the default since session 26)
          // both seeds give the same verdict, and this test is about the veto's two branches
          selfInfluenceTrim: false,
          faithfulnessMethods: ["random"],
          faithfulnessSample: 2,
          faithfulnessKs: [1],
          runDir: join(dir, `run-${averageVeto}`),
        }),
      );
    const plain = await run(false), vetoing = await run(true);
    const metrics = JSON.parse(readFileSync(join(dir, "run-true", "metrics.json"), "utf8"));
    assert.equal(metrics.config.averageVeto, true);
    const verdicts = vetoing.perSeed.map((seed, s) => {
      const mean = plain.perSeed[s].selection!, selection = seed.selection!;
      assert.equal(mean.chosen.weighting, "top-k mean", mean.reason);
      assert.ok(!/best candidate alone/.test(mean.reason), "no verdict without --averageVeto");
      const verdict = selection.reason.match(/the best candidate alone (beat|did not beat) the mean by/)?.[1];
      assert.ok(verdict, selection.reason);
      if (verdict === "beat") { // the single best candidate's head replaces the mean's
        assert.match(
          selection.reason,
          /^mean α of the 3 candidates with the lowest calibrated validation loss vetoed:/,
        );
        assert.notEqual(selection.chosen.weighting, "top-k mean");
      } else { // the mean is kept: the same α, so the same test metrics
        assert.deepEqual(selection.chosen, mean.chosen);
        assert.deepEqual(seed.carrot, plain.perSeed[s].carrot);
      }
      return verdict;
    });
    assert.deepEqual(verdicts, ["beat", "did not beat"], "both branches on these features");
  } finally {
    setLogSink(previous);
    await Deno.remove(dir, { recursive: true });
  }
});
