import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import {
  alphaByTruth,
  detectionMetrics,
  fixSuspects,
  rankSuspects,
  type SuspectRanking,
} from "../../lib/carrot/debug.ts";
import { faithfulness } from "../../lib/carrot/faithfulness.ts";
import {
  appendSeedRows,
  defaultExperimentMethods,
  experimentTable,
  runExperiment,
} from "../../lib/carrot/experiment.ts";
import { disposeHead, fitHead } from "../../lib/carrot/head.ts";
import { selfInfluence, testInfluence } from "../../lib/carrot/influence.ts";
import { makeFineGrainedFeatures } from "../../lib/data/synthetic_features.ts";
import { tuneLambda } from "../../lib/carrot/lambda.ts";
import { evaluateHead } from "../../lib/carrot/metrics.ts";
import { assertClose } from "../_assert.ts";
import { assertLossesClose, lossesWithoutOwnFold } from "./_out_of_fold.ts";
import { trimProblem } from "./_trim_candidates.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

const small = (seed: number, rate = 0.3) =>
  makeFineGrainedFeatures({
    numClasses: 6,
    groups: 2,
    dim: 12,
    perClass: { train: 25, val: 10, test: 10 },
    labelNoise: { rate },
    seed,
  });
const dispose = (d: ReturnType<typeof small>) =>
  tf.dispose([d.train.features, d.val.features, d.test.features]);

Deno.test("detectionMetrics(): AUROC with ties, precision@k and recall at 5/10/20% by hand", () => {
  const m = detectionMetrics([0.9, 0.8, 0.8, 0.1, 0.5, 0.2, 0.3, 0.4, 0.6, 0.7], [
    1,
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    1,
  ]);
  // positives 0.9, 0.8, 0.7 vs 7 negatives: 7 + 6.5 + 6 = 19.5 of 21 pairs
  assertClose(m.auroc, 19.5 / 21, { atol: 1e-12 });
  assertClose(m.precisionAtFlagged, 2 / 3, { atol: 1e-12 }); // top 3: 0.9, 0.8 (pos or neg tie), 0.8
  assert.deepEqual(m.foundAt, { 5: 1 / 3, 10: 1 / 3, 20: 2 / 3 });
  assert.throws(() => detectionMetrics([1, 2], [0, 0]), /both classes/);
});

Deno.test("rankSuspects(): harmfulness finds mislabeled points; self-influence equals the diagonal of pairwise influence", async () => {
  const data = makeFineGrainedFeatures({
    numClasses: 10,
    groups: 2,
    dim: 16,
    perClass: { train: 30, val: 20, test: 5 },
    labelNoise: { rate: 0.3 },
    seed: 1,
  });
  const fit = await fitHead(data.train, { lambda: 2 });
  const exact = await rankSuspects(fit, data.train, data.val, { selfInfluence: "exact" });
  const auroc = (r: keyof typeof exact) => detectionMetrics(exact[r]!, data.train.mislabeled).auroc;
  // measured 0.748 (harmfulness), 0.767 (self-influence), 0.798 (loss), 0.778 (out-of-fold loss) on this problem
  assert.ok(auroc("harmfulness") > 0.7, `harmfulness AUROC ${auroc("harmfulness")}`);
  assert.ok(auroc("out-of-fold-loss") > 0.7, `out-of-fold-loss AUROC ${auroc("out-of-fold-loss")}`);
  assert.ok(auroc("self-influence") > 0.7, `self-influence AUROC ${auroc("self-influence")}`);
  assert.ok(Math.abs(auroc("random") - 0.5) < 0.2);
  // invariance: self-influence = −diag of testInfluence(train, train)
  // (selfInfluence never forms the [n, b] scores: a different computation), exact and EK-FAC
  const n = data.train.labels.length;
  const diagonal = async (method: "exact" | "ekfac") => {
    const out = new Float32Array(n);
    await testInfluence(fit, data.train, data.train, {
      method,
      blockSize: 7,
      onBlock: (start, scores, b) => {
        for (let j = 0; j < b; j++) out[start + j] = -scores[(start + j) * b + j];
      },
    });
    return out;
  };
  assertClose(exact["self-influence"]!, await diagonal("exact"), {
    rtol: 1e-3,
    atol: 1e-6,
    what: "self-influence",
  });
  const ekfac = await rankSuspects(fit, data.train, data.val, { rankings: ["self-influence"] });
  assertClose(ekfac["self-influence"]!, await diagonal("ekfac"), {
    rtol: 1e-4,
    atol: 1e-7,
    what: "EK-FAC self-influence",
  });
  // blocking (7 rows at a time) changes nothing but the summation order of the products (OpenBLAS' Haswell kernel:
  // 1.9e-6 relative, SkylakeX: < 1e-6)
  const blocked = await selfInfluence(fit, data.train, data.train, { method: "ekfac", blockSize: 7 });
  assertClose(blocked, ekfac["self-influence"]!, {
    rtol: 1e-5,
    atol: 1e-9,
    what: "blocked EK-FAC self-influence",
  });
  assert.ok(exact["self-influence"]!.every((v) => v > 0), "∇ℓᵀH⁻¹∇ℓ > 0");
  // with α = 1, |β_{i,y_i}| orders points exactly like the loss
  const rep = exact.representer!, loss = exact.loss!;
  for (let i = 1; i < n; i++) assert.equal(Math.sign(rep[i] - rep[0]), Math.sign(loss[i] - loss[0]));
  const fix = await fixSuspects(fit, data.train, data.test, exact.harmfulness!, 20);
  assert.equal(fix.removed.length, 20);
  assert.ok(Number.isFinite(fix.after.accuracy));
  disposeHead(fit);
  dispose(data);
});

Deno.test("rankSuspects(): out-of-fold-loss is each point's loss under the head fitted, at the fit's λ and α, without its fold", async () => {
  const data = trimProblem();
  const n = data.train.labels.length, lambda = 0.5;
  const alpha = Float32Array.from({ length: n }, (_, i) => 0.5 + (i % 5) / 4); // α ∈ [0.5, 1.5], not uniform
  const fit = await fitHead(data.train, { lambda, alpha, tol: 1e-7 });
  const { "out-of-fold-loss": scores } = await rankSuspects(fit, data.train, data.val, {
    rankings: ["out-of-fold-loss"],
    folds: 4,
    seed: 3,
  });
  const byHand = await lossesWithoutOwnFold(data.train, alpha, { folds: 4, seed: 3, lambda });
  assertLossesClose(scores!, byHand, "out-of-fold loss");
  // not the in-sample loss: the held-out heads predict the points worse on average
  const inSample = (await rankSuspects(fit, data.train, data.val, { rankings: ["loss"] })).loss!;
  const mean = (v: ArrayLike<number>) => Array.from(v).reduce((s, x) => s + x, 0) / v.length;
  assert.ok(mean(scores!) > mean(inSample), `out-of-fold ${mean(scores!)} vs in-sample ${mean(inSample)}`);
  await assert.rejects(
    () => rankSuspects(fit, data.train, data.val, { rankings: ["oof" as SuspectRanking] }),
    /unknown ranking "oof"; use one of harmfulness, self-influence, representer, loss, out-of-fold-loss, random/,
  );
  disposeHead(fit);
  dispose(data);
});

Deno.test("faithfulness(): removing top supporters beats random removal; keeping every point keeps the prediction", async () => {
  const data = small(2, 0);
  const fit = await fitHead(data.train, { lambda: 1 });
  const { rows, sample } = await faithfulness(fit, data.train, data.test, {
    methods: ["representer", "influence", "random"],
    ks: [5, 20],
    sample: 6,
    keep: false,
  });
  assert.equal(sample.length, 6);
  assert.equal(rows.length, 6);
  const row = (m: string, k: number) => rows.find((r) => r.method === m && r.K === k)!;
  for (const m of ["representer", "influence"]) {
    assert.ok(row(m, 20).marginDrop > row("random", 20).marginDrop, `${m} margin drop vs random`);
    assert.ok(row(m, 20).marginDrop >= row(m, 5).marginDrop - 1e-6, `${m}: more removals, larger drop`);
    assert.ok(Number.isNaN(row(m, 5).agreement));
  }
  // keep-top-K with K ≥ the class size keeps every point: the refit is the original head
  const kept = await faithfulness(fit, data.train, data.test, {
    methods: ["representer"],
    ks: [3, 1000],
    sample: 3,
  });
  const all = kept.rows.find((r) => r.K === 1000)!;
  assert.equal(all.agreement, 1);
  assert.ok(all.kl < 1e-4, `KL ${all.kl}`);
  const few = kept.rows.find((r) => r.K === 3)!;
  assert.ok(few.agreement >= 0 && few.agreement <= 1 && few.kl >= 0);
  disposeHead(fit);
  dispose(data);
});

Deno.test("runExperiment()'s default rows: ERM, CARROT, the RRO family and the baselines; oracle and variants opt-in", () => {
  assert.deepEqual(defaultExperimentMethods, [
    "erm",
    "carrot",
    "rro",
    "rro-consistency",
    "rro-no-ess",
    "rro-representer",
    "rro-tracin",
    "rro-trak",
    "small-loss",
    "l2rw",
  ]);
});

Deno.test("runExperiment(): rows per method with mean ± std over seeds, markdown table", async () => {
  const rows = await runExperiment({
    data: (seed) => small(seed),
    methods: ["erm", "carrot", "rro", "small-loss", "l2rw"],
    seeds: [0, 1],
    lambdaGrid: [1, 10],
    reweight: { outerSteps: 3 },
    carrot: { outerSteps: 2, folds: 3 },
  });
  assert.deepEqual(rows.map((r) => r.method), ["erm", "carrot", "rro", "small-loss", "l2rw"]);
  for (const r of rows) {
    assert.equal(r.runs.length, 2);
    assert.equal(r.calibratedRuns.length, 2);
    // temperature scaling keeps every argmax
    r.runs.forEach((m, s) => assert.equal(r.calibratedRuns[s].accuracy, m.accuracy));
    assert.equal(r.details.length, r.method === "carrot" ? 2 : 0);
    const mean = (r.runs[0].accuracy + r.runs[1].accuracy) / 2;
    assertClose(r.accuracy.mean, mean, { atol: 1e-12 });
    assertClose(r.accuracy.std, Math.abs(r.runs[0].accuracy - r.runs[1].accuracy) / Math.SQRT2, {
      atol: 1e-12,
    });
  }
  const table = experimentTable(rows);
  assert.match(table, /^\| method \| top-1/);
  assert.equal(table.split("\n").length, 7);
  for (const d of rows[1].details) assert.equal(d.fallback, d.chosen.weighting === "none");
  // a cell run on seed 0, then extended by seed 1, equals the cell run on both seeds at once
  const bySeed = async (seed: number) =>
    await runExperiment({
      data: (s) => small(s),
      methods: ["erm", "small-loss"],
      seeds: [seed],
      lambdaGrid: [1, 10],
    });
  const merged = appendSeedRows(await bySeed(0), await bySeed(1));
  for (const row of merged) {
    const whole = rows.find((r) => r.method === row.method)!;
    assert.deepEqual(row.runs, whole.runs, row.method);
    assert.deepEqual(row.calibratedRuns, whole.calibratedRuns, row.method);
    for (
      const key of ["accuracy", "perClassAccuracy", "ece", "nll", "eceCalibrated", "nllCalibrated"] as const
    ) {
      assertClose(row[key].mean, whole[key].mean, { atol: 1e-12 });
      assertClose(row[key].std, whole[key].std, { atol: 1e-12 });
    }
  }
});

Deno.test("runExperiment(): the oracle row is ERM refitted on the points neither mislabelled nor shortcut", async () => {
  const [oracle] = await runExperiment({
    data: (seed) => small(seed),
    methods: ["oracle"],
    seeds: [0],
    lambdaGrid: [1, 10],
  });
  // by hand: the same λ, the flagged rows removed (α_i = 0 is removing point i), a fresh fit
  const data = small(0);
  const { lambda, fit: erm } = await tuneLambda(data.train, data.val, { grid: [1, 10] });
  const keep = [...data.train.labels.keys()].filter((i) =>
    !data.train.mislabeled[i] && !data.train.shortcut[i]
  );
  assert.ok(keep.length > 0 && keep.length < data.train.labels.length);
  const clean = {
    features: tf.gather(data.train.features, keep) as tf.Tensor2D,
    labels: Int32Array.from(keep, (i) => data.train.labels[i]),
  };
  const fit = await fitHead(clean, { lambda, numClasses: erm.numClasses, tol: 1e-7 });
  const expected = await evaluateHead(fit, data.test);
  assertClose(oracle.runs[0].nll, expected.nll, { atol: 1e-4 });
  assert.equal(oracle.runs[0].accuracy, expected.accuracy);
  disposeHead(fit);
  disposeHead(erm);
  clean.features.dispose();
  dispose(data);
  // data without ground truth: refused with the fix, nothing leaked
  const before = tf.memory().numTensors;
  await assert.rejects(
    runExperiment({
      data: (seed) => {
        const { train, val, test } = small(seed);
        return { train: { features: train.features, labels: train.labels }, val, test };
      },
      methods: ["oracle"],
      seeds: [0],
      lambdaGrid: [1],
    }),
    /needs the training split's ground truth .* drop "oracle"/,
  );
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("alphaByTruth(): group means, ratios to clean, and low α as a detector", () => {
  const t = (noisy: boolean, shortcut: boolean) => ({ noisy, shortcut });
  const truth = [
    t(false, false),
    t(false, false),
    t(true, false),
    t(true, false),
    t(false, true),
    t(false, false),
  ];
  const alpha = [1.2, 1.0, 0.2, 0.5, 0.9, 1.4];
  const a = alphaByTruth(alpha, truth);
  assertClose(a.clean.mean, (1.2 + 1.0 + 1.4) / 3, { atol: 1e-12 });
  assert.equal(a.clean.count, 3);
  assertClose(a.mislabeled.mean, 0.35, { atol: 1e-12 });
  assertClose(a.shortcut.mean, 0.9, { atol: 1e-12 });
  assertClose(a.mislabeledRatio, 0.35 / 1.2, { atol: 1e-12 });
  // the two mislabeled points have the two lowest α: a perfect detector; the shortcut point ranks 3rd of 6
  assert.equal(a.mislabeledDetection!.auroc, 1);
  assertClose(a.shortcutDetection!.auroc, 3 / 5, { atol: 1e-12 });
  const clean = alphaByTruth([1, 1], [t(false, false), t(false, false)]);
  assert.ok(Number.isNaN(clean.mislabeled.mean) && clean.mislabeledDetection === undefined);
  assert.throws(() => alphaByTruth([1], truth), /1 weights for 6/);
});
