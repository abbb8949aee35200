/**
 * `deno task bench selection-evidence`: with 3–10 clean validation images per class, which evidence ranks
 * reweighting candidates the way test top-1 does? (Issue 13; exploratory. Rule S and the comparison on 6 of the
 * cells were written down before they ran; val top-1 and the other 13 cells were added after. README "Selection by
 * noisy held-out accuracy".)
 *
 * Candidates, all with class masses kept (`trim.ts`): ERM (α ≡ 1), trimming by out-of-fold losses at q = 0.1, 0.2,
 * 0.3 (CARROT's trims), trimming by the ERM head's in-sample losses at q = 0.2 (the small-loss row's). Criteria:
 *   - val gain: the paired calibrated-loss gain over ERM on val (CARROT's selection score, `selection.ts`);
 *   - val top-1: accuracy on val;
 *   - noisy held-out top-1 / NLL: nested cross-fitting over train. For each of 5 outer folds f, every candidate is
 *     computed on train \ f alone (its ERM head, its out-of-fold losses, its α, its refit) and scored on f against
 *     f's *noisy* training labels. Under class-conditional noise in which each class keeps the plurality of its
 *     labels, the Bayes classifier of the noisy labels is the clean one, so noisy top-1 should rank heads like clean
 *     top-1 from n points instead of a few hundred; NLL should not (it rewards hedging toward the flip targets).
 * Per cell: each criterion's pick, its regret (best candidate's test top-1 − the pick's) and the Spearman
 * correlation of criterion and test top-1 over the 5 candidates.
 *
 * Rule S (a selection rule built on that evidence): the candidate of largest paired noisy held-out top-1 gain over
 * ERM, kept only if the gain exceeds 2 standard errors, and vetoed (ERM) if its val top-1 falls below ERM's by more
 * than 2 paired standard errors; the chosen α on all of train, refit, temperature on val. Printed against the
 * stored ERM, CARROT and small-loss rows of the same cells (`bench/results/robustness/`).
 */
import * as tf from "@tensorflow/tfjs";
import { tuneLambda } from "../lib/carrot/lambda.ts";
import { disposeHead, fitHead, type HeadFit, headProbabilities, inSampleLosses } from "../lib/carrot/head.ts";
import { outOfFoldLosses, stratifiedFolds } from "../lib/carrot/crossfit.ts";
import { lossTrimAlpha } from "../lib/carrot/trim.ts";
import { pairedCalibratedGain, pairedGain } from "../lib/carrot/selection.ts";
import { evaluateHead } from "../lib/carrot/metrics.ts";
import { evaluateHeadWithTemperature, fitTemperature } from "../lib/carrot/temperature.ts";
import type { LabeledFeatures } from "../lib/carrot/labeled_features.ts";
import { selectRows } from "../lib/split.ts";
import { meanStd, spearman } from "../lib/stats.ts";
import { log } from "../lib/progress.ts";
import { robustnessCellData, storedRobustnessCells } from "./robustness.ts";

/** The cells: the synthetic grid, CUB-sized, SynthBirds and the out-of-grid settings at 5 per class. */
const CELLS = [
  "synthbirds/default",
  "cub-sized/noise=0.2/val=5",
  ...[
    "uniform/noise=0.2",
    "uniform/noise=0.4",
    "pair-flip/noise=0.2",
    "pair-flip/noise=0.4",
    "k100-d128/noise=0.3",
  ]
    .map((s) => `out-of-grid/${s}`),
  ...[0, 0.2, 0.4].flatMap((noise) => [3, 5, 10, 30].map((v) => `synthetic/noise=${noise}/val=${v}`)),
];
const CANDIDATES = ["erm", "oof-0.1", "oof-0.2", "oof-0.3", "ins-0.2"];
const OUTER_FOLDS = 5;

/** α of every candidate on `train`, from `train` alone (`erm` fitted on it). */
async function candidateAlphas(train: LabeledFeatures, erm: HeadFit, lambda: number, seed: number) {
  const inSample = await inSampleLosses(erm, train);
  const outOfFold = await outOfFoldLosses(train, [seed], {
    lambda,
    numClasses: erm.numClasses,
    folds: 5,
    init: erm.weights,
  });
  const trim = (losses: ArrayLike<number>, q: number) =>
    lossTrimAlpha(losses, train.labels, q, { keepClassMass: true });
  return [
    new Float32Array(train.labels.length).fill(1),
    trim(outOfFold, 0.1),
    trim(outOfFold, 0.2),
    trim(outOfFold, 0.3),
    trim(inSample, 0.2),
  ];
}

/** Per point 1 − [argmax_k p_k = y] (0/1 errors as "losses", so that `pairedGain` gives top-1 gains). */
async function errors(fit: HeadFit, data: LabeledFeatures): Promise<Float64Array> {
  const probabilities = headProbabilities(fit, data.features);
  const predicted = tf.argMax(probabilities, 1);
  const values = await predicted.data();
  tf.dispose([probabilities, predicted]);
  return Float64Array.from(data.labels, (y, i) => Number(values[i] !== y));
}

/** Noisy held-out errors and NLL of every candidate, nested (see the module JSDoc). */
async function nestedHeldOut(train: LabeledFeatures, erm: HeadFit, lambda: number, seed: number) {
  const n = train.labels.length, folds = stratifiedFolds(train.labels, OUTER_FOLDS, 100 + seed);
  const wrong = CANDIDATES.map(() => new Float64Array(n)), nll = CANDIDATES.map(() => 0);
  for (let f = 0; f < OUTER_FOLDS; f++) {
    const inside = Int32Array.from(train.labels.keys()).filter((i) => folds[i] !== f);
    const outside = Int32Array.from(train.labels.keys()).filter((i) => folds[i] === f);
    const part = selectRows(train, inside), heldOut = selectRows(train, outside);
    const ermPart = await fitHead(part, { lambda, numClasses: erm.numClasses, init: erm.weights });
    for (const [c, alpha] of (await candidateAlphas(part, ermPart, lambda, seed)).entries()) {
      const fit = c === 0
        ? ermPart
        : await fitHead(part, { lambda, alpha, numClasses: erm.numClasses, init: ermPart.weights });
      (await errors(fit, heldOut)).forEach((e, q) => wrong[c][outside[q]] = e);
      nll[c] += (await evaluateHead(fit, heldOut)).nll * outside.length / n;
      if (c !== 0) disposeHead(fit);
    }
    disposeHead(ermPart);
    tf.dispose([part.features, heldOut.features]);
  }
  return { wrong, nll };
}

interface SeedResult {
  test: number[];
  criteria: Record<string, number[]>;
  rule: { pick: string; why: string; accuracy: number; ece: number; ermEce: number };
}

async function runSeed(
  data: { train: LabeledFeatures; val: LabeledFeatures; test: LabeledFeatures },
  seed: number,
) {
  const { fit: erm, lambda } = await tuneLambda(data.train, data.val, {});
  const alphas = await candidateAlphas(data.train, erm, lambda, seed);
  const test: number[] = [], valGain: number[] = [], valTop1: number[] = [];
  const fits: HeadFit[] = [];
  for (const [c, alpha] of alphas.entries()) {
    const fit = c === 0
      ? erm
      : await fitHead(data.train, { lambda, alpha, numClasses: erm.numClasses, init: erm.weights });
    fits.push(fit);
    test.push((await evaluateHead(fit, data.test)).accuracy);
    valTop1.push((await evaluateHead(fit, data.val)).accuracy);
    valGain.push((await pairedCalibratedGain(erm, fit, data.val)).gain);
  }
  const { wrong, nll } = await nestedHeldOut(data.train, erm, lambda, seed);
  const heldOut = wrong.map((w) => pairedGain(wrong[0], w));
  // rule S
  let pick = heldOut.reduce((best, g, c) => g.gain > heldOut[best].gain ? c : best, 0);
  let why = pick === 0 ? "no candidate above ERM on held-out top-1" : "";
  if (pick !== 0 && !(heldOut[pick].gain > 2 * heldOut[pick].standardError)) {
    why = `${CANDIDATES[pick]}'s held-out gain ${fmt(heldOut[pick].gain)} ≤ 2 s.e. (${
      fmt(heldOut[pick].standardError)
    })`;
    pick = 0;
  }
  if (pick !== 0) {
    const v = pairedGain(await errors(erm, data.val), await errors(fits[pick], data.val));
    why = v.gain < -2 * v.standardError
      ? `veto: val top-1 gain ${fmt(v.gain)} < −2 s.e. (${fmt(v.standardError)})`
      : `held-out gain ${fmt(heldOut[pick].gain)} ± ${fmt(heldOut[pick].standardError)}, val ${fmt(v.gain)}`;
    if (v.gain < -2 * v.standardError) pick = 0;
  }
  const calibrated = async (fit: HeadFit) =>
    await evaluateHeadWithTemperature(fit, data.test, (await fitTemperature(fit, data.val)).temperature);
  const chosen = await calibrated(fits[pick]), ermCalibrated = await calibrated(erm);
  fits.forEach(disposeHead);
  return {
    test,
    criteria: {
      "val gain": valGain,
      "val top-1": valTop1,
      "noisy held-out top-1": heldOut.map((g) => g.gain),
      "noisy held-out NLL": nll.map((v) => -v),
    },
    rule: {
      pick: CANDIDATES[pick],
      why,
      accuracy: chosen.accuracy,
      ece: chosen.ece,
      ermEce: ermCalibrated.ece,
    },
  } satisfies SeedResult;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const fmt = (x: number) => x.toFixed(4);
const pct = (x: number) => (100 * x).toFixed(1);
const signed = (x: number) => `${x >= 0 ? "+" : ""}${x.toFixed(1)}`;

/** Runs the cells matching `only` (all by default) on seeds 0–2 and prints both tables. */
export async function benchSelectionEvidence(options: { only?: string } = {}): Promise<void> {
  const only = options.only === undefined ? undefined : new RegExp(options.only);
  const stored = new Map(storedRobustnessCells().map((c) => [c.id, c]));
  const regret: Record<string, number[]> = {}, rho: Record<string, number[]> = {};
  const picks: string[] = [], rules: string[] = [];
  for (const id of CELLS.filter((c) => !only || only.test(c))) {
    const cell = robustnessCellData(id), results: SeedResult[] = [];
    for (const seed of [0, 1, 2]) {
      const data = await cell.data(seed);
      const result = await runSeed(data, seed);
      // every cell's data are this seed's own tensors (SynthBirds' are copies of the loaded features)
      tf.dispose([data.train.features, data.val.features, data.test.features]);
      results.push(result);
      const best = Math.max(...result.test);
      const picked = Object.entries(result.criteria).map(([name, scores]) => {
        const c = scores.indexOf(Math.max(...scores));
        (regret[name] ??= []).push(100 * (best - result.test[c]));
        (rho[name] ??= []).push(spearman(scores, result.test));
        return `${CANDIDATES[c]} (${pct(best - result.test[c])})`;
      });
      const top = CANDIDATES[result.test.indexOf(best)];
      picks.push(
        `| ${id} | ${seed} | ${top} ${pct(best)} (ERM ${pct(result.test[0])}) | ${picked.join(" | ")} |`,
      );
      log(
        `  ${id} seed ${seed}: rule S ${result.rule.pick} (${result.rule.why}), top-1 ${
          pct(result.rule.accuracy)
        }%`,
      );
    }
    cell.release?.();
    const rows = stored.get(id)?.rows, runs = (m: string) => rows?.find((r) => r.method === m)?.runs;
    const ermRuns = runs("erm")!, carrotRuns = runs("carrot")!, smallLoss = runs("small-loss");
    const s = results.map((r) => 100 * r.rule.accuracy),
      difference = s.map((v, i) => v - 100 * ermRuns[i].accuracy);
    rules.push(
      `| ${id} | ${pct(mean(ermRuns.map((r) => r.accuracy)))} | ${
        pct(mean(carrotRuns.map((r) => r.accuracy)))
      } | ` +
        `${mean(s).toFixed(1)} | ${signed(meanStd(difference).mean)} ± ${
          meanStd(difference).std.toFixed(1)
        } ` +
        `(${difference.map(signed).join(" ")}) | ${results.map((r) => r.rule.pick).join(", ")} | ` +
        `${smallLoss ? pct(mean(smallLoss.map((r) => r.accuracy))) : ""} | ` +
        `${pct(mean(results.map((r) => r.rule.ece)))} / ${pct(mean(results.map((r) => r.rule.ermEce)))} |`,
    );
  }
  const names = Object.keys(regret);
  log(`\n| cell | seed | best on test (ERM) | ${names.map((n) => `${n}: pick (regret)`).join(" | ")} |`);
  log(`| --- | --- | --- | ${names.map(() => "---").join(" | ")} |`);
  picks.forEach((row) => log(row));
  for (const name of names) {
    log(
      `${name}: mean regret ${mean(regret[name]).toFixed(2)} points, mean Spearman ${
        mean(rho[name]).toFixed(2)
      }`,
    );
  }
  log(
    `\n| cell | ERM | CARROT | rule S | S − ERM (per seed) | S picks | small-loss | ECE after T, S / ERM |`,
  );
  log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  rules.forEach((row) => log(row));
}
