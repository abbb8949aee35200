import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { makeFineGrainedFeatures } from "../../lib/data/synthetic_features.ts";
import { disposeHead, fitHead } from "../../lib/carrot/head.ts";
import { evaluateHead } from "../../lib/carrot/metrics.ts";
import { evaluateHeadWithTemperature, fitTemperature } from "../../lib/carrot/temperature.ts";
import { reweight } from "../../lib/carrot/reweight.ts";
import { carrotReweight } from "../../lib/carrot/carrot.ts";
import { pairedCalibratedGain } from "../../lib/carrot/selection.ts";
import { splitValidationReweight } from "../../lib/carrot/split_validation.ts";
import { selectRows } from "../../lib/split.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

const problem = (seed: number, rate: number, val: number) =>
  makeFineGrainedFeatures({
    numClasses: 8,
    groups: 2,
    dim: 16,
    perClass: { train: 25, val, test: 40 },
    labelNoise: { rate },
    seed,
  });

const options = { lambda: 1, outerSteps: 6, rho: 0.5 };

Deno.test("splitValidationReweight: A and B split val per class; B never drives the descent, only the selection", async () => {
  const data = problem(1, 0.3, 6);
  const run = await splitValidationReweight(data.train, data.val, options);
  // a partition of val, half of each class (rounded up) in B
  const all = [...run.descent, ...run.selectionSplit].sort((x, y) => x - y);
  assert.deepEqual(all, Array.from(data.val.labels.keys()));
  for (let c = 0; c < 8; c++) {
    const inB = [...run.selectionSplit].filter((j) => data.val.labels[j] === c).length;
    assert.equal(inB, 3, `class ${c}`);
  }
  // the descent is RRO on A alone: the same trajectory as reweight() given A
  const a = selectRows(data.val, run.descent);
  const direct = await reweight(data.train, a, options);
  assert.deepEqual(run.trajectory.map((e) => e.valLoss), direct.trajectory.map((e) => e.valLoss));
  disposeHead(direct.fit);
  // B's features erased: the descent is unchanged (B is never differentiated), only what the selection sees
  const mask = new Float32Array(data.val.labels.length).fill(1);
  for (const j of run.selectionSplit) mask[j] = 0;
  const erased = {
    features: tf.tidy(() => tf.mul(data.val.features, tf.tensor2d(mask, [mask.length, 1])) as tf.Tensor2D),
    labels: data.val.labels,
  };
  const blind = await splitValidationReweight(data.train, erased, options);
  assert.deepEqual(blind.trajectory.map((e) => e.valLoss), run.trajectory.map((e) => e.valLoss));
  assert.notDeepEqual(blind.selection.rows.map((r) => r.valLoss), run.selection.rows.map((r) => r.valLoss));
  // the selection scores on B: candidate 0 (ERM) has B's mean loss at the T fitted on B
  const b = selectRows(data.val, run.selectionSplit);
  const erm = await fitHead(data.train, { lambda: 1 });
  const { temperature } = await fitTemperature(erm, b);
  const onB = await evaluateHeadWithTemperature(erm, b, temperature);
  assert.ok(
    Math.abs(onB.nll - run.selection.rows[0].valLoss) < 1e-4,
    `${onB.nll} vs ${run.selection.rows[0].valLoss}`,
  );
  disposeHead(erm);
  b.features.dispose();
  // the α in use is a step of the descent (or α ≡ 1) and the head is fitted at it
  const chosen = run.selection.rows[run.selection.chosen].label.step as number;
  assert.ok(chosen >= 0 && chosen < run.trajectory.length);
  const refit = await fitHead(data.train, { lambda: 1, alpha: run.alpha });
  const [x, y] = [await run.selection.fit.weights.data(), await refit.weights.data()];
  x.forEach((v, i) => assert.ok(Math.abs(v - y[i]) < 1e-3 * (1 + Math.abs(y[i])), `W[${i}]`));
  [run.selection.fit, blind.selection.fit, refit].forEach(disposeHead);
  tf.dispose([a.features, erased.features, data.train.features, data.val.features, data.test.features]);
});

Deno.test("splitValidationReweight: at 40% noise with 10 validation images per class it keeps a step and beats ERM on test", async () => {
  const data = problem(2, 0.4, 10);
  const run = await splitValidationReweight(data.train, data.val, options);
  assert.ok(!run.selection.fallback, run.selection.reason);
  const erm = await fitHead(data.train, { lambda: 1 });
  const [ours, base] = [await evaluateHead(run.selection.fit, data.test), await evaluateHead(erm, data.test)];
  assert.ok(ours.accuracy > base.accuracy, `test top-1 ${ours.accuracy} vs ERM ${base.accuracy}`);
  [run.selection.fit, erm].forEach(disposeHead);
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});

Deno.test("splitValidationReweight: one validation image per class leaves nothing to select on, and says so", async () => {
  const data = problem(3, 0.3, 1);
  await assert.rejects(
    splitValidationReweight(data.train, data.val, options),
    /no class with two of them.*carrotReweight/,
  );
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});

Deno.test("carrotReweight with validationPath: the arbiter's report matches an independent comparison on B; a small B skips it", async () => {
  const data = problem(7, 0.4, 10); // a seed whose selection does not fall back (then RRO would not run)
  const settings = { lambda: 1, outerSteps: 2, seed: 0 };
  const base = await carrotReweight(data.train, data.val, { ...settings, validationPath: false });
  const challengerSteps: number[] = [];
  const run = await carrotReweight(data.train, data.val, { // the challenger runs by default
    ...settings,
    onValidationPathStep: (entry) => challengerSteps.push(entry.step),
  });
  const path = run.validationPath;
  assert.ok(path, "no report");
  assert.ok(!run.selection.fallback && path.ran, run.selection.reason);
  assert.equal(base.validationPath, undefined);
  // the selection itself is unchanged by the option
  assert.deepEqual(run.selection.rows.map((r) => r.valLoss), base.selection.rows.map((r) => r.valLoss));
  // the challenger and the comparison, recomputed by hand
  const split = await splitValidationReweight(data.train, data.val, { lambda: 1, splitSeed: 0 });
  assert.ok(!split.selection.fallback, split.selection.reason);
  assert.equal(path.step, split.selection.rows[split.selection.chosen].label.step);
  assert.deepEqual(
    challengerSteps,
    split.trajectory.map((e) => e.step),
    "onValidationPathStep once per RRO step",
  );
  const b = selectRows(data.val, split.selectionSplit);
  const expected = await pairedCalibratedGain(base.fit, split.selection.fit, b);
  assert.ok(Math.abs(path.gain - expected.gain) < 1e-4, `${path.gain} vs ${expected.gain}`);
  assert.equal(path.used, expected.gain > expected.standardError, path.reason);
  assert.deepEqual(run.alpha, path.used ? split.alpha : base.alpha);
  assert.equal(run.temperature, path.used ? split.selection.temperature : base.temperature);
  // B holds 5 per class (40 images): at the default guard k = 5 it ran; asking 6 per class it is not run at all
  assert.equal(split.selectionSplit.length, 5 * 8);
  const guarded = await carrotReweight(data.train, data.val, {
    ...settings,
    validationPathMinPerClass: 6,
  });
  assert.deepEqual(guarded.validationPath, {
    step: 0,
    ran: false,
    used: false,
    gain: 0,
    standardError: 0,
    reason:
      "split-validation RRO not run: its selection half B holds 40 validation images, fewer than 6 per class " +
      "(6 × 8 classes); selection kept",
  });
  assert.deepEqual(guarded.alpha, base.alpha);
  assert.equal(guarded.temperature, base.temperature);
  [base.fit, run.fit, guarded.fit, split.selection.fit].forEach(disposeHead);
  tf.dispose([b.features, data.train.features, data.val.features, data.test.features]);
});
