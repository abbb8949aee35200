/**
 * `deno task bench detection`: how well each suspect ranking of `rankSuspects` finds the mislabelled images of
 * real-looking image features, and what acting on it buys. On the SynthBirds task (20% within-group label noise,
 * 10% shortcut images) rendered by the default generator and by generator seeds 1–10 (the robustness grid's
 * `synthbirds/default` and `unseen-images/…` cells, split seed 0: val is 80% of the official val split), per set:
 *
 *   - AUROC of each ranking for the mislabelled images and for the shortcut ones (ERM head, λ tuned on val);
 *   - test top-1 after removing the top 20% of each class by that ranking and refitting at the same λ
 *     (small-loss filtering when the ranking is the loss), against ERM and the oracle (every mislabelled or shortcut
 *     image removed: the ceiling of any removal).
 *
 * Then the mean ± std over the sets. Features are materialised on first use (about 20 s per set) and cached.
 */
import * as tf from "@tensorflow/tfjs";
import { detectionMetrics, rankSuspects, type SuspectRanking, suspectRankings } from "../lib/carrot/debug.ts";
import { disposeHead, fitHead, type HeadFit } from "../lib/carrot/head.ts";
import { tuneLambda } from "../lib/carrot/lambda.ts";
import { evaluateHead } from "../lib/carrot/metrics.ts";
import type { LabeledFeatures } from "../lib/carrot/labeled_features.ts";
import { lossTrimAlpha } from "../lib/carrot/trim.ts";
import { oracleAlpha } from "../lib/carrot/experiment.ts";
import { meanStd } from "../lib/stats.ts";
import { log } from "../lib/progress.ts";
import { robustnessCellData } from "./robustness.ts";

/** The image sets: the default SynthBirds task and the same task rendered by generator seeds 1–10. */
const cells = [
  "synthbirds/default",
  ...Array.from({ length: 10 }, (_, g) => `unseen-images/synthbirds-generator-seed=${g + 1}`),
];

/** The share removed per class by every ranking's filter. */
const removed = 0.2;

/** Test top-1 (%) of the head refitted at `fit`'s λ with weights `alpha`. */
async function refitAccuracy(
  fit: HeadFit,
  train: LabeledFeatures,
  test: LabeledFeatures,
  alpha: Float32Array,
) {
  const refit = await fitHead(train, {
    lambda: fit.lambda,
    alpha,
    numClasses: fit.numClasses,
    init: fit.weights,
  });
  const { accuracy } = await evaluateHead(refit, test);
  disposeHead(refit);
  return 100 * accuracy;
}

/** Prints, per image set and over the sets, each ranking's detection and filtering figures (see the module JSDoc). */
export async function benchDetection(): Promise<void> {
  const auroc = new Map<SuspectRanking, { mislabeled: number[]; shortcut: number[]; gain: number[] }>(
    suspectRankings.map((r) => [r, { mislabeled: [], shortcut: [], gain: [] }]),
  );
  const oracleGain: number[] = [];
  log(
    `| set | ERM top-1 | oracle | ${
      suspectRankings.map((r) => `${r}: AUROC mislabelled / shortcut, top-1`).join(" | ")
    } |`,
  );
  log(`|${"---|".repeat(3 + suspectRankings.length)}`);
  for (const id of cells) {
    const cell = robustnessCellData(id);
    const { train, val, test } = await cell.data(0);
    const { fit } = await tuneLambda(train, val);
    const mislabeled = train.mislabeled!, shortcut = train.shortcut!;
    const erm = 100 * (await evaluateHead(fit, test)).accuracy;
    const oracle = await refitAccuracy(fit, train, test, oracleAlpha(train));
    oracleGain.push(oracle - erm);
    const scores = await rankSuspects(fit, train, val);
    const cellsText: string[] = [];
    for (const ranking of suspectRankings) {
      const score = scores[ranking]!, entry = auroc.get(ranking)!;
      const top1 = await refitAccuracy(fit, train, test, lossTrimAlpha(score, train.labels, removed));
      entry.mislabeled.push(detectionMetrics(score, mislabeled).auroc);
      entry.shortcut.push(detectionMetrics(score, shortcut).auroc);
      entry.gain.push(top1 - erm);
      cellsText.push(
        `${entry.mislabeled.at(-1)!.toFixed(3)} / ${entry.shortcut.at(-1)!.toFixed(3)}, ${top1.toFixed(1)}`,
      );
    }
    log(`| ${id} | ${erm.toFixed(1)} | ${oracle.toFixed(1)} | ${cellsText.join(" | ")} |`);
    disposeHead(fit);
    tf.dispose([train.features, val.features, test.features]);
    cell.release?.();
  }
  const text = (values: number[], digits: number) => {
    const { mean, std } = meanStd(values);
    return `${mean.toFixed(digits)} ± ${std.toFixed(digits)}`;
  };
  log(
    `\nover ${cells.length} image sets (mean ± std over sets; oracle − ERM ${text(oracleGain, 2)} points):`,
  );
  log(
    `| ranking | AUROC mislabelled | AUROC shortcut | top-1 − ERM after removing its top ${
      100 * removed
    }% per class |`,
  );
  log("|---|---|---|---|");
  for (const [ranking, entry] of auroc) {
    log(
      `| ${ranking} | ${text(entry.mislabeled, 3)} | ${text(entry.shortcut, 3)} | ${text(entry.gain, 2)} |`,
    );
  }
}
