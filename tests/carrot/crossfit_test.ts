import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import {
  crossFitObjective,
  crossFitReweight,
  outOfFoldLosses,
  SharedStart,
  stratifiedFolds,
} from "../../lib/carrot/crossfit.ts";
import {
  carrotOutcome,
  carrotPaths,
  carrotReweight,
  defaultCarrotPaths,
  defaultInSampleTrim,
  defaultNeighbourK,
  defaultSelfInfluenceTrim,
  defaultTrimFractions,
  describeCandidate,
} from "../../lib/carrot/carrot.ts";
import { gradedTrimAlpha, lossTrimAlpha } from "../../lib/carrot/trim.ts";
import { selectWeighting } from "../../lib/carrot/selection.ts";
import { disposeHead } from "../../lib/carrot/head.ts";
import { effectiveSampleSizes } from "../../lib/carrot/reweight.ts";
import { makeFineGrainedFeatures } from "../../lib/data/synthetic_features.ts";
import { Random } from "../../lib/random.ts";
import { assertClose, relMax } from "../_assert.ts";
import { assertLossesClose, lossesWithoutOwnFold } from "./_out_of_fold.ts";
import { withoutExtraDetectors } from "./_trim_candidates.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

const small = (
  seed: number,
  rate: number,
  options: { val?: number; shortcut?: number; train?: number } = {},
) =>
  makeFineGrainedFeatures({
    numClasses: 8,
    groups: 2,
    dim: 16,
    perClass: { train: options.train ?? 25, val: options.val ?? 10, test: 40 },
    labelNoise: { rate },
    shortcut: { rate: options.shortcut ?? 0.1 },
    seed,
  });

const dispose = (data: ReturnType<typeof small>) =>
  tf.dispose([data.train.features, data.val.features, data.test.features]);

Deno.test("stratifiedFolds() balances every class over the folds and is seeded", () => {
  const labels = Int32Array.from({ length: 103 }, (_, i) => i % 7);
  const folds = stratifiedFolds(labels, 4, 3);
  for (let c = 0; c < 7; c++) {
    const sizes = [0, 0, 0, 0];
    labels.forEach((y, i) => y === c && sizes[folds[i]]++);
    assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `class ${c}: fold sizes ${sizes}`);
  }
  const total = [0, 0, 0, 0];
  folds.forEach((f) => total[f]++);
  assert.ok(Math.max(...total) - Math.min(...total) <= 1, `fold sizes ${total}`);
  assert.deepEqual(stratifiedFolds(labels, 4, 3), folds);
  assert.notDeepEqual(stratifiedFolds(labels, 4, 4), folds);
  assert.throws(() => stratifiedFolds(labels, 1, 0), RangeError);
});

Deno.test("crossFitObjective(): ∂L_cf/∂α matches central finite differences with refits (both weightings)", async () => {
  const data = small(5, 0.3, { train: 15 });
  const rng = new Random(9), n = data.train.labels.length;
  const alpha = Float32Array.from({ length: n }, () => 0.5 + rng.uniform());
  const indices = [0, 17, 42, 101];
  const options = { lambda: 1, numClasses: 8, folds: 3, tol: 1e-7, cgTol: 1e-8 };
  for (const heldOutWeighting of ["uniform", "self"] as const) {
    const at = await crossFitObjective(data.train, alpha, { ...options, heldOutWeighting });
    const step = 0.05, fd: number[] = [];
    for (const i of indices) {
      const plus = Float32Array.from(alpha), minus = Float32Array.from(alpha);
      plus[i] += step;
      minus[i] -= step;
      const [up, down] = [
        await crossFitObjective(data.train, plus, { ...options, heldOutWeighting }),
        await crossFitObjective(data.train, minus, { ...options, heldOutWeighting }),
      ];
      fd.push((up.value - down.value) / (2 * step));
    }
    const picked = indices.map((i) => at.gradient[i]);
    assert.ok(relMax(picked, fd) < 2e-2, `${heldOutWeighting}: ${picked} vs finite differences ${fd}`);
  }
  dispose(data);
});

Deno.test("crossFitReweight(): L_cf non-increasing over accepted steps; α ≥ 0, class masses and ESS ≥ ρ at every step", async () => {
  const data = small(2, 0.3), k = 8, rho = 0.4;
  const before = tf.memory().numTensors;
  for (const heldOutWeighting of ["uniform", "self"] as const) {
    const run = await crossFitReweight(data.train, {
      lambda: 1,
      numClasses: k,
      folds: 3,
      rho,
      outerSteps: 5,
      heldOutWeighting,
    });
    assert.equal(run.trajectory[0].step, 0);
    assert.ok(run.trajectory.slice(1).some((e) => e.accepted), `${heldOutWeighting}: no step accepted`);
    for (let s = 1; s < run.trajectory.length; s++) {
      const [previous, entry] = [run.trajectory[s - 1], run.trajectory[s]];
      assert.ok(entry.objective <= previous.objective, `${heldOutWeighting} step ${s}: L_cf increased`);
      const alpha = entry.alpha;
      assert.ok(alpha.every((a) => a >= 0));
      const mass = new Float64Array(k), count = new Float64Array(k);
      data.train.labels.forEach((c, i) => [mass[c], count[c]] = [mass[c] + alpha[i], count[c] + 1]);
      for (let c = 0; c < k; c++) {
        assert.ok(Math.abs(mass[c] - count[c]) < 1e-3 * count[c], `mass of class ${c}`);
      }
      const ess = effectiveSampleSizes(alpha, data.train.labels, k);
      assert.ok(ess.every((e) => e >= rho - 1e-4), `step ${s}: ESS ${Math.min(...ess)} < ρ`);
    }
  }
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  dispose(data);
});

Deno.test("crossFitReweight(): heldOutLosses are each point's loss under the head fitted without its fold", async () => {
  const data = small(5, 0.2), folds = 3, lambda = 0.5;
  const run = await crossFitReweight(data.train, { lambda, numClasses: 8, folds, outerSteps: 1, tol: 1e-7 });
  for (const entry of run.trajectory) {
    const expected = await lossesWithoutOwnFold(data.train, entry.alpha, { folds, seed: 0, lambda });
    assertLossesClose(entry.heldOutLosses, expected, `step ${entry.step}`);
  }
  dispose(data);
});

Deno.test("outOfFoldLosses(): the mean over fold assignments of each point's loss without its fold; carrotReweight trims by it", async () => {
  const data = small(7, 0.4), folds = 3, lambda = 0.5, n = data.train.labels.length;
  const before = tf.memory().numTensors;
  const ones = new Float32Array(n).fill(1);
  const bySeed = await Promise.all(
    [0, 1, 2].map((seed) => lossesWithoutOwnFold(data.train, ones, { folds, seed, lambda })),
  );
  assertLossesClose(
    await outOfFoldLosses(data.train, [1], { lambda, numClasses: 8, folds, tol: 1e-7 }),
    bySeed[1],
    "seed 1",
  );
  const mean12 = bySeed[1].map((l, i) => (l + bySeed[2][i]) / 2);
  assertLossesClose(
    await outOfFoldLosses(data.train, [1, 2], { lambda, numClasses: 8, folds, tol: 1e-7 }),
    mean12,
    "mean of seeds 1, 2",
  );
  assert.notDeepEqual(bySeed[1], bySeed[2], "two assignments should judge points by different heads");
  await assert.rejects(outOfFoldLosses(data.train, [], { lambda }), /seeds is empty/);
  // carrotReweight with R = 3 and no outer steps: its only trimming drops the top 30% of the mean over seeds 0, 1, 2
  const run = await carrotReweight(data.train, data.val, {
    lambda,
    numClasses: 8,
    folds,
    outerSteps: 0,
    paths: [{ heldOutWeighting: "uniform", gamma: 0 }],
    trimFractions: [0.3],
    trimSplits: 3,
    ...withoutExtraDetectors, // each detector has its own test
    tol: 1e-8,
    z: 0, // keep any gain: this test is about which points the trimming drops, not about the veto
    validationPath: false, // nor about the challenger
    averageTop: 1, // nor about averaging the best candidates
  });
  assert.ok(!run.selection.fallback, `noise 0.4, yet: ${run.selection.reason}`);
  assert.deepEqual(run.selection.rows[run.selection.chosen].label, {
    weighting: "trim",
    gamma: 0,
    step: 0,
    fraction: 0.3,
    splits: 3,
  });
  const mean = Float32Array.from(ones, (_, i) => (bySeed[0][i] + bySeed[1][i] + bySeed[2][i]) / 3);
  assertLossesClose(run.trimLosses!, mean, "trimLosses");
  assert.deepEqual(run.alpha, lossTrimAlpha(mean, data.train.labels, 0.3, { keepClassMass: true }));
  assert.match(describeCandidate(run.selection.rows[run.selection.chosen].label), /mean of 3 fold splits/);
  disposeHead(run.fit);
  await assert.rejects(
    carrotReweight(data.train, data.val, { lambda, trimSplits: 0 }),
    /trimSplits must be an integer ≥ 1/,
  );
  await assert.rejects(
    carrotReweight(data.train, data.val, { lambda, validationPathMinPerClass: -1 }),
    /validationPathMinPerClass must be a number ≥ 0, got -1/,
  );
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  dispose(data);
});

Deno.test("carrotPaths(): every weighting at each γ, γ outermost — the order the stored bench rows were computed in", () => {
  // candidates are scored in path order and ties in the selection go to the earlier one, so this order is part of
  // what reproduces the robustness cells' CARROT rows
  assert.deepEqual(defaultCarrotPaths, [
    { heldOutWeighting: "uniform", gamma: 0 },
    { heldOutWeighting: "self", gamma: 0 },
    { heldOutWeighting: "uniform", gamma: 10 },
    { heldOutWeighting: "self", gamma: 10 },
  ]);
  assert.deepEqual(carrotPaths([3], ["self"]), [{ heldOutWeighting: "self", gamma: 3 }]);
  assert.deepEqual(carrotPaths([]), []);
});

Deno.test("carrotReweight(): gradedTrim offers the mean of the trims as one more candidate, scored like any other", async () => {
  const data = small(7, 0.4), lambda = 0.5, fractions = [0.1, 0.3];
  const before = tf.memory().numTensors;
  const run = await carrotReweight(data.train, data.val, {
    lambda,
    numClasses: 8,
    folds: 3,
    outerSteps: 0,
    paths: [{ heldOutWeighting: "uniform", gamma: 0 }],
    trimFractions: fractions,
    gradedTrim: true,
    ...withoutExtraDetectors, // each detector has its own test
    tol: 1e-8,
    z: 0,
    validationPath: false,
    averageTop: 1,
  });
  assert.deepEqual(run.selection.rows.map((r) => r.label.weighting), ["none", "trim", "trim", "graded-trim"]);
  const graded = run.selection.rows[3];
  assert.equal(graded.label.fractions, "10%/30%");
  assert.equal(
    describeCandidate(graded.label),
    "graded trim (mean of the trims at 10%/30%) by out-of-fold loss",
  );
  // the same α scored on its own by selectWeighting gets the same calibrated validation loss
  const alpha = gradedTrimAlpha(run.trimLosses!, data.train.labels, fractions);
  const alone = await selectWeighting(data.train, data.val, [
    { alpha: new Float32Array(alpha.length).fill(1), label: {} },
    { alpha, label: {} },
  ], { lambda, numClasses: 8, tol: 1e-8, z: 0 });
  assertClose(graded.valLoss, alone.rows[1].valLoss, { rtol: 1e-4, what: "graded trim's val loss" });
  if (run.selection.chosen === 3) assert.deepEqual(run.alpha, alpha);
  disposeHead(alone.fit);
  disposeHead(run.fit);
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  dispose(data);
});

Deno.test("carrotReweight(): averageTop k refits at the mean α of the k candidates lowest on val, with the fallback rule", async () => {
  const data = small(7, 0.4), lambda = 0.5, fractions = [0.1, 0.2, 0.3];
  const before = tf.memory().numTensors;
  const options = {
    lambda,
    numClasses: 8,
    folds: 3,
    outerSteps: 2,
    paths: [{ heldOutWeighting: "self" as const, gamma: 0 }],
    trimFractions: fractions,
    ...withoutExtraDetectors, // each detector has its own test
    tol: 1e-8,
    z: 0,
    validationPath: false,
  };
  const plain = await carrotReweight(data.train, data.val, { ...options, averageTop: 1 });
  const run = await carrotReweight(data.train, data.val, { ...options, averageTop: 3, averageVeto: false }); // the veto: below
  // the candidates and their scores are those of the plain run; one row is appended: the averaged candidate
  const n = plain.selection.rows.length;
  assert.deepEqual(run.selection.rows.slice(0, n), plain.selection.rows);
  const last = run.selection.rows[n];
  assert.equal(last.label.weighting, "top-k mean");
  assert.equal(run.selection.best, n);
  // reconstruct every candidate's α (ERM, the accepted path steps, the trims, the graded trim) in scoring order
  const alphas: Float32Array[] = [new Float32Array(data.train.labels.length).fill(1)];
  for (const step of plain.trajectories[0].steps) if (step.step > 0 && step.accepted) alphas.push(step.alpha);
  const trims = fractions.map((q) =>
    lossTrimAlpha(plain.trimLosses!, data.train.labels, q, { keepClassMass: true })
  );
  alphas.push(...trims, gradedTrimAlpha(plain.trimLosses!, data.train.labels, fractions));
  assert.equal(alphas.length, n);
  const top = [...Array(n).keys()].sort((a, b) =>
    plain.selection.rows[a].valLoss - plain.selection.rows[b].valLoss || a - b
  ).slice(0, 3);
  assert.equal(last.label.of, top.map((c) => describeCandidate(plain.selection.rows[c].label)).join("; "));
  const mean = Float32Array.from(alphas[0], (_, i) => top.reduce((s, c) => s + alphas[c][i], 0) / 3);
  // its calibrated validation loss is that of the mean α scored alone; z = 0 keeps it when it beats ERM at all
  const alone = await selectWeighting(data.train, data.val, [
    { alpha: alphas[0], label: {} },
    { alpha: mean, label: {} },
  ], { lambda, numClasses: 8, tol: 1e-8, z: 0 });
  assertClose(last.valLoss, alone.rows[1].valLoss, { rtol: 1e-4, what: "the averaged candidate's val loss" });
  assert.equal(run.selection.fallback, alone.fallback);
  assert.equal(run.selection.chosen, alone.fallback ? 0 : n);
  assert.ok(relMax(run.alpha, alone.fallback ? alphas[0] : mean) < 1e-6, "α in use is not the averaged one");
  assert.match(
    run.selection.reason,
    /^mean α of the 3 candidates with the lowest calibrated validation loss: /,
  );
  // every candidate keeps the class masses, so their mean does
  for (let c = 0; c < 8; c++) {
    const members = [...data.train.labels.keys()].filter((i) => data.train.labels[i] === c);
    assertClose(members.reduce((s, i) => s + run.alpha[i], 0), members.length, {
      rtol: 1e-4,
      what: `mass of class ${c}`,
    });
  }
  await assert.rejects(
    carrotReweight(data.train, data.val, { ...options, averageTop: 1.5 }),
    /averageTop must be an integer ≥ 1, got 1.5/,
  );
  [plain.fit, run.fit, alone.fit].forEach(disposeHead);
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  dispose(data);
});

Deno.test("carrotReweight(): averageVeto keeps the best candidate alone exactly when it beats the top-3 mean on val by z s.e.", async () => {
  const before = tf.memory().numTensors;
  const options = {
    numClasses: 8,
    folds: 3,
    outerSteps: 2,
    paths: [{ heldOutWeighting: "self" as const, gamma: 0 }],
    trimFractions: [0.1, 0.2, 0.3],
    ...withoutExtraDetectors, // each detector has its own test
    tol: 1e-8,
    z: 0,
    validationPath: false,
  };
  const verdicts: boolean[] = [];
  // seed 7 at λ 0.5: the best candidate alone is lower on val than the mean; seed 1 at λ 0.05: it is not
  for (const [seed, lambda] of [[7, 0.5], [1, 0.05]]) {
    const data = small(seed, 0.4);
    const run = { ...options, lambda };
    const best = await carrotReweight(data.train, data.val, { ...run, averageTop: 1 });
    const mean = await carrotReweight(data.train, data.val, { ...run, averageTop: 3 });
    const vetoed = await carrotReweight(data.train, data.val, { ...run, averageTop: 3, averageVeto: true });
    const n = best.selection.rows.length, meanRow = mean.selection.rows[n];
    assert.equal(meanRow.label.weighting, "top-k mean");
    assert.ok(
      !best.selection.fallback && !mean.selection.fallback,
      "both must beat ERM for the veto to apply",
    );
    // the paired gain of the best over the mean is the difference of their mean calibrated val losses (same images)
    const gain = meanRow.valLoss - best.selection.rows[best.selection.chosen].valLoss;
    const match = vetoed.selection.reason.match(
      /the best candidate alone (beat|did not beat) the mean by (-?[\d.]+)/,
    );
    assert.ok(match, vetoed.selection.reason);
    assertClose(Number(match[2]), gain, { atol: 1e-4, what: "the veto's paired gain" });
    const used = gain > 0; // z = 0
    verdicts.push(used);
    assert.equal(match[1] === "beat", used);
    assert.ok(
      relMax(vetoed.alpha, used ? best.alpha : mean.alpha) < 1e-6,
      "α in use is not the one the rule keeps",
    );
    assert.equal(vetoed.selection.chosen, used ? best.selection.chosen : n);
    assert.deepEqual(vetoed.selection.rows, mean.selection.rows);
    [best.fit, mean.fit, vetoed.fit].forEach(disposeHead);
    dispose(data);
  }
  assert.deepEqual(verdicts, [true, false], "both branches of the rule must be exercised");
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
});

Deno.test("crossFitReweight(): paths sharing their step 0 (SharedStart) take exactly the steps each takes alone", async () => {
  const data = small(6, 0.3);
  const options = { lambda: 1, numClasses: 8, folds: 3, outerSteps: 2 };
  const before = tf.memory().numTensors;
  const shared = new SharedStart();
  try {
    for (const path of carrotPaths([0, 10])) {
      const alone = await crossFitReweight(data.train, { ...options, ...path });
      const together = await crossFitReweight(data.train, { ...options, ...path, shared });
      assert.equal(shared.fits.length, 3, "the first path fills the shared step 0");
      const label = `${path.heldOutWeighting}, γ ${path.gamma}`;
      assert.deepEqual(
        together.trajectory.map((e) => e.objective),
        alone.trajectory.map((e) => e.objective),
        label,
      );
      together.trajectory.forEach((e, s) => {
        assert.deepEqual(e.alpha, alone.trajectory[s].alpha, `${label}: α at step ${s}`);
        assert.deepEqual(e.heldOutLosses, alone.trajectory[s].heldOutLosses, `${label}: losses at step ${s}`);
      });
    }
    await assert.rejects(
      crossFitReweight(data.train, { ...options, lambda: 2, shared }),
      /SharedStart serves paths with the same/,
    );
  } finally {
    shared.dispose();
  }
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  dispose(data);
});

Deno.test("crossFitReweight(): resuming from step s at its α continues the same path", async () => {
  const data = small(4, 0.3);
  const options = { lambda: 1, numClasses: 8, folds: 3, heldOutWeighting: "self" as const, tol: 1e-7 };
  const whole = await crossFitReweight(data.train, { ...options, outerSteps: 4 });
  const head = await crossFitReweight(data.train, { ...options, outerSteps: 2 });
  const at = head.trajectory.at(-1)!;
  const tail = await crossFitReweight(data.train, {
    ...options,
    outerSteps: 2,
    start: { alpha: at.alpha, step: at.step },
  });
  assert.deepEqual(tail.trajectory.map((e) => e.step), [at.step, at.step + 1, at.step + 2]);
  assert.ok(Math.abs(tail.trajectory[0].objective - at.objective) < 1e-5 * at.objective);
  assert.equal(whole.trajectory.length, 5, "a noisy problem should take 4 steps");
  assert.ok(relMax(tail.trajectory[2].alpha, whole.trajectory[4].alpha) < 1e-3, "resumed α differs");
  dispose(data);
});

Deno.test("carrotReweight(): a path whose last step is the best runs on, up to maxOuterSteps", async () => {
  const data = small(6, 0.4, { val: 10 });
  const before = tf.memory().numTensors;
  const steps: string[] = [];
  const run = await carrotReweight(data.train, data.val, {
    numClasses: 8,
    folds: 3,
    outerSteps: 1,
    maxOuterSteps: 3,
    trimFractions: [],
    validationPath: false, // the selection's own choice is under test
    averageTop: 1, // its best candidate, not the mean of the best three
    onStep: (path, entry) => steps.push(`${path.heldOutWeighting} ${entry.step}`),
  });
  const accepted = run.trajectories.flatMap((t) => t.steps.filter((e) => e.step > 0 && e.accepted));
  assert.equal(run.selection.rows.length, 1 + accepted.length, "every accepted step is a candidate");
  assert.equal(
    steps.length,
    run.trajectories.reduce((s, t) => s + t.steps.length, 0),
    "onStep once per entry",
  );
  for (const t of run.trajectories) {
    assert.deepEqual(t.steps.map((e) => e.step), t.steps.map((_, s) => s), "steps numbered without repeats");
    assert.ok(t.steps.length - 1 <= 3);
  }
  const best = run.selection.rows[run.selection.best].label;
  assert.notEqual(best.step, 0, `noise 0.4 should reweight: ${run.selection.reason}`);
  const path = run.trajectories.find((t) => t.heldOutWeighting === best.weighting)!;
  const last = path.steps.at(-1)!;
  // the loop stops only when the best is not the path's last step, the path stalled, or it reached the cap
  assert.ok(
    best.step !== last.step || path.stopReason !== "outer steps" || last.step === 3,
    JSON.stringify(best),
  );
  assert.ok(run.trajectories.some((t) => t.steps.length > 2), "no path was extended past outerSteps");
  disposeHead(run.fit);
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  dispose(data);
});

Deno.test("carrotReweight(): falls back to α = 1 without harmful points, keeps the reweighting at noise 0.4", async () => {
  // 10 classes in 2 groups, d = 16, 20 training images per class: with clean labels, no shortcut and 30 validation
  // images per class nothing is harmful; at 40% within-group label noise the flipped labels are
  const problem = (rate: number, shortcut: number, val: number) =>
    makeFineGrainedFeatures({
      numClasses: 10,
      groups: 2,
      dim: 16,
      perClass: { train: 20, val, test: 30 },
      labelNoise: { rate },
      shortcut: { rate: shortcut },
      seed: 3,
    });
  const before = tf.memory().numTensors;
  const clean = problem(0, 0, 30);
  // the split-validation challenger (on by default; B holds 15 per class) must not overrule the fallback (before
  // that rule it replaced α ≡ 1 by RRO's step 3 here)
  const cleanRun = await carrotReweight(clean.train, clean.val, { numClasses: 10, folds: 3 });
  assert.ok(cleanRun.selection.fallback, `no harmful points, yet: ${cleanRun.selection.reason}`);
  assert.ok(cleanRun.alpha.every((a) => a === 1));
  assert.match(cleanRun.selection.reason, /α ≡ 1/);
  assert.deepEqual(cleanRun.validationPath, {
    step: 0,
    ran: false,
    used: false,
    gain: 0,
    standardError: 0,
    reason: "split-validation RRO not run: the selection fell back to α ≡ 1",
  });
  assert.equal(carrotOutcome(cleanRun).fallback, true);
  disposeHead(cleanRun.fit);
  dispose(clean);
  const noisy = problem(0.4, 0.1, 10);
  const noisyRun = await carrotReweight(noisy.train, noisy.val, { numClasses: 10, folds: 3 });
  assert.ok(!noisyRun.selection.fallback, `noise 0.4, yet: ${noisyRun.selection.reason}`);
  assert.ok(noisyRun.selection.gain > noisyRun.selection.standardError);
  let mislabeled = 0, kept = 0, count = 0;
  noisyRun.alpha.forEach((a, i) => noisy.train.mislabeled[i] ? (mislabeled += a, count++) : (kept += a));
  assert.ok(
    mislabeled / count < kept / (noisyRun.alpha.length - count),
    "mislabelled points were not down-weighted on average",
  );
  assert.ok(Number.isFinite(noisyRun.temperature) && noisyRun.temperature > 0);
  assert.equal(
    noisyRun.selection.rows.length,
    1 +
      noisyRun.trajectories.reduce((s, t) => s + t.steps.filter((e) => e.step > 0 && e.accepted).length, 0) +
      (1 + Number(defaultNeighbourK > 0) + Number(defaultInSampleTrim) + Number(defaultSelfInfluenceTrim)) *
        (defaultTrimFractions.length + 1) +
      1,
    "every accepted step, every trimming and the graded trimming (by each detector in use) and the mean of the best " +
      "three are candidates",
  );
  // the trimmings drop the highest out-of-fold losses at α ≡ 1, which every path's step 0 holds
  const atOne = noisyRun.trajectories[0].steps[0].heldOutLosses;
  assert.deepEqual(noisyRun.trajectories[1].steps[0].heldOutLosses, atOne, "paths share their folds");
  for (const fraction of defaultTrimFractions) {
    const row = noisyRun.selection.rows.findIndex((r) =>
      r.label.weighting === "trim" && r.label.fraction === fraction
    );
    assert.ok(row > 0, `no trimming at ${fraction}`);
  }
  disposeHead(noisyRun.fit);
  dispose(noisy);
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
});

Deno.test("selectWeighting(): the fallback rule is the paired one-s.e. test; bad inputs are refused", async () => {
  const data = small(4, 0.4, { val: 6 });
  const n = data.train.labels.length;
  const ones = new Float32Array(n).fill(1);
  const drop = Float32Array.from(data.train.mislabeled, (m) => 1 - m); // the oracle: removes every flipped label
  // the same α again, refitted from candidate 1's head (the closer start): the same optimum up to the solver's
  // tolerance, so either may score lower in the last digits
  const again = Float32Array.from(drop);
  const result = await selectWeighting(data.train, data.val, [
    { alpha: ones, label: { step: 0 } },
    { alpha: drop, label: { step: 1 } },
    { alpha: again, label: { step: 2 } },
  ], { lambda: 3, numClasses: 8 });
  assert.equal(result.rows.length, 3);
  assert.ok(result.best === 1 || result.best === 2, `best ${result.best}`);
  assertClose(result.rows[2].valLoss, result.rows[1].valLoss, { rtol: 1e-4, what: "the same α twice" });
  assert.ok(result.rows[1].valLoss < result.rows[0].valLoss, "the oracle beats α ≡ 1 on val");
  assert.equal(result.fallback, !(result.gain > result.standardError));
  assert.equal(result.chosen, result.fallback ? 0 : result.best);
  assert.ok(result.gain > 0, `the oracle should lower the calibrated validation loss: ${result.reason}`);
  assert.ok(result.rows.every((r) => Number.isFinite(r.valLoss) && r.temperature > 0));
  disposeHead(result.fit);
  await assert.rejects(
    () => selectWeighting(data.train, data.val, [{ alpha: drop, label: {} }], { lambda: 3 }),
    /candidate 0 must be α ≡ 1/,
  );
  const empty = { features: tf.zeros([0, 16]) as tf.Tensor2D, labels: new Int32Array(0) };
  await assert.rejects(
    () => selectWeighting(data.train, empty, [{ alpha: ones, label: {} }], { lambda: 3 }),
    /validation split is empty/,
  );
  empty.features.dispose();
  dispose(data);
});
