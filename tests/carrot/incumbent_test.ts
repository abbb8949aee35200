import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { gradedIncumbent, noiseEvidenceZ } from "../../lib/carrot/incumbent.ts";
import { carrotOutcome, carrotReweight } from "../../lib/carrot/carrot.ts";
import { disposeHead, fitHead, type HeadFit } from "../../lib/carrot/head.ts";
import { CandidateScorer, pairedCalibratedGain } from "../../lib/carrot/selection.ts";
import { fitTemperature } from "../../lib/carrot/temperature.ts";
import { gradedTrimAlpha } from "../../lib/carrot/trim.ts";
import { outOfFoldLosses } from "../../lib/carrot/crossfit.ts";
import type { NoiseRateEvidence } from "../../lib/carrot/noise_evidence.ts";
import { assertClose } from "../_assert.ts";
import { gateProblem, trimOptions, trimProblem } from "./_trim_candidates.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

const evidence = (rate: number, standardError: number): NoiseRateEvidence => ({
  rate,
  standardError,
  trainError: 0.5,
  valError: 0.4,
  n: 200,
  m: 80,
});

Deno.test("gradedIncumbent(): gate, ERM's veto, fallback and the selection's head against the graded trim", async () => {
  const data = trimProblem(), { lambda, numClasses } = trimOptions, tol = 1e-8;
  const ones = new Float32Array(data.train.labels.length).fill(1);
  const graded = gradedTrimAlpha(
    await outOfFoldLosses(data.train, [0], { lambda, numClasses, folds: 3 }),
    data.train.labels,
    [0.1, 0.3],
  );
  // per-point calibrated val losses of ERM and of the graded trim, as the selection scored them
  const scorer = new CandidateScorer(data.train, data.val, { lambda, numClasses, tol });
  await scorer.add({ alpha: ones, label: {} });
  await scorer.add({ alpha: graded, label: {} });
  const [ermLosses, gradedLosses] = scorer.pointLosses;
  disposeHead((await scorer.finish()).fit);
  const before = tf.memory().numTensors;
  const head = async (): Promise<HeadFit> =>
    await fitHead(data.train, { lambda, numClasses, alpha: ones, tol });
  const run = async (
    selectedFit: HeadFit,
    fallback: boolean,
    seen: NoiseRateEvidence,
    z = 1,
    veto = gradedLosses,
  ) =>
    await gradedIncumbent(
      data.train,
      data.val,
      { alpha: ones, fit: selectedFit, temperature: 1.5, fallback },
      { alpha: graded, losses: veto },
      ermLosses,
      seen,
      { lambda, numClasses, z, tol },
    );
  // gate closed (q̂ ≤ 2 s.e.): the selection's head, untouched
  let selected = await head();
  const closed = await run(selected, true, evidence(0.1, 0.05));
  assert.equal(closed.chosen.fit, selected);
  assert.deepEqual([closed.report.open, closed.report.used], [false, false]);
  assert.match(closed.report.reason, /no evidence of label noise: q̂ 0\.100 .* ≤ 2 × s\.e\. 0\.050/);
  // gate open, but ERM beats the graded trim on val (its losses one nat higher everywhere): ERM's veto
  const vetoed = await run(selected, true, evidence(0.3, 0.05), 1, gradedLosses.map((l) => l + 1));
  assert.equal(vetoed.chosen.fit, selected);
  assert.deepEqual([vetoed.report.open, vetoed.report.used], [true, false]);
  const ermGain = 1 + gradedLosses.reduce((t, l, j) => t + l - ermLosses[j], 0) / ermLosses.length;
  assert.match(
    vetoed.report.reason,
    new RegExp(`ERM beat the graded trim on val by ${ermGain.toFixed(4)} > 1 × s\\.e\\.`),
  );
  // gate open, selection fell back: the graded trim's head (refitted at its α, T fitted on val), the other freed
  const fellBack = await run(selected, true, evidence(0.3, 0.05));
  assert.equal(fellBack.report.used, true);
  assert.equal(fellBack.chosen.alpha, graded);
  const byHand = await fitHead(data.train, { lambda, numClasses, alpha: graded, tol });
  const [w, wHand] = [await fellBack.chosen.fit.weights.data(), await byHand.weights.data()];
  w.forEach((v, i) => assertClose(v, wHand[i], { atol: 1e-4, what: `W[${i}]` }));
  assertClose(fellBack.chosen.temperature, (await fitTemperature(byHand, data.val)).temperature, {
    rtol: 1e-4,
    what: "T",
  });
  disposeHead(fellBack.chosen.fit);
  // gate open, a selected head (here ERM's, not a fallback): kept only if it beats the graded trim by z s.e.
  selected = await head();
  const { gain, standardError } = await pairedCalibratedGain(byHand, selected, data.val);
  const judged = await run(selected, false, evidence(0.3, 0.05));
  assert.equal(judged.report.used, !(gain > standardError), judged.report.reason);
  assert.match(judged.report.reason, /the graded trim is the incumbent; the selection's head/);
  disposeHead(judged.chosen.fit);
  for (const [z, used] of [[-1e9, false], [1e9, true]] as const) {
    const forced = await run(await head(), false, evidence(0.3, 0.05), z);
    assert.equal(forced.report.used, used, `z ${z}`);
    assert.equal(forced.chosen.alpha, used ? graded : ones);
    disposeHead(forced.chosen.fit);
  }
  disposeHead(byHand);
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});

Deno.test("carrotReweight(): gradedIncumbent changes nothing on clean labels, needs the graded trim, reports its decision at noise 0.4", async () => {
  const options = {
    lambda: 0.1, // fixed: this test is about the incumbent rule, not the λ search (which goes to 0.01 at noise 0.4)
    numClasses: 10,
    folds: 3,
    outerSteps: 1,
    paths: [{ heldOutWeighting: "self" as const, gamma: 0 }],
  };
  const before = tf.memory().numTensors;
  const clean = gateProblem(0);
  const off = await carrotReweight(clean.train, clean.val, options);
  const on = await carrotReweight(clean.train, clean.val, { ...options, gradedIncumbent: true });
  assert.equal(on.incumbent?.open, false, String(on.incumbent?.reason));
  assert.deepEqual(on.alpha, off.alpha, "gate closed: the default's α");
  assert.deepEqual(carrotOutcome(on).chosen, carrotOutcome(off).chosen);
  assert.equal(off.incumbent, undefined);
  [on, off].forEach((r) => disposeHead(r.fit));
  for (const without of [{ gradedTrim: false }, { trimFractions: [0.2] }, { paths: [] }]) {
    await assert.rejects(
      carrotReweight(clean.train, clean.val, { ...options, ...without, gradedIncumbent: true }),
      /gradedIncumbent needs the graded trim/,
      JSON.stringify(without),
    );
  }
  tf.dispose([clean.train.features, clean.val.features, clean.test.features]);
  const noisy = gateProblem(0.4);
  const run = await carrotReweight(noisy.train, noisy.val, { ...options, gradedIncumbent: true });
  const report = run.incumbent!;
  assert.ok(report.open && report.rate > noiseEvidenceZ * report.standardError, report.reason);
  const gradedRow = run.selection.rows.findIndex((r) => r.label.weighting === "graded-trim");
  if (report.used) {
    assert.equal(run.selection.chosen, gradedRow);
    assert.equal(carrotOutcome(run).chosen.weighting, "graded-trim");
    assert.equal(run.selection.fallback, false);
    assert.equal(run.selection.temperature, run.temperature, "the selection reports the graded trim's T");
  } else assert.notEqual(run.selection.chosen, gradedRow);
  assert.ok(run.selection.reason.endsWith(report.reason), "the decision is in the selection's reason");
  disposeHead(run.fit);
  tf.dispose([noisy.train.features, noisy.val.features, noisy.test.features]);
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
});
