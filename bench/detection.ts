/**
 * `deno task bench detection`: how well each suspect ranking of `rankSuspects` finds the mislabelled images of
 * real-looking image features, and what acting on it buys. By default on the SynthBirds task (20% within-group
 * label noise, 10% shortcut images) rendered by the default generator and by generator seeds 1–10 (the robustness
 * grid's `synthbirds/default` and `unseen-images/…` cells, split seed 0: val is 80% of the official val split); with
 * `--only <regexp>` on the robustness cells whose id matches (e.g. `^cub-sized/` for the CUB-sized grid cell), with
 * `--seeds` on other split seeds. Per set and seed:
 *
 *   - AUROC of each ranking for the mislabelled images and for the shortcut ones (ERM head, λ tuned on val);
 *   - test top-1 after removing the top q of each class by that ranking and refitting at the same λ, for each q of
 *     `--fractions` (default 20%; small-loss filtering when the ranking is the loss), against ERM and the oracle
 *     (every mislabelled or shortcut image removed: the ceiling of any removal).
 *
 * Then the mean ± std over the sets and seeds. Features are materialised on first use (about 20 s per image set) and
 * cached. `--rankings` computes a subset (self-influence and harmfulness are the slow ones on CUB-sized cells).
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
import { robustnessCellData, robustnessCellIds } from "./robustness.ts";

/** The default image sets: the default SynthBirds task and the same task rendered by generator seeds 1–10. */
const defaultCells = [
  "synthbirds/default",
  ...Array.from({ length: 10 }, (_, g) => `unseen-images/synthbirds-generator-seed=${g + 1}`),
];

/** Options of `benchDetection`. */
export interface DetectionOptions {
  /** Robustness cells whose id matches this regular expression (default: the image sets above). */
  only?: string;
  /** Split seeds (default [0]). */
  seeds?: number[];
  /** Shares q removed per class by every ranking's filter (default [0.2]). */
  fractions?: number[];
  /** Rankings to compute (default all of `suspectRankings`). */
  rankings?: SuspectRanking[];
}

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

/** Prints, per set and seed, each ranking's detection and filtering figures, then their means (module JSDoc). */
export async function benchDetection(options: DetectionOptions = {}): Promise<void> {
  const ids = options.only
    ? robustnessCellIds().filter((id) => new RegExp(options.only!).test(id))
    : defaultCells;
  if (!ids.length) throw new RangeError(`detection: no robustness cell id matches --only ${options.only}`);
  const seeds = options.seeds ?? [0], fractions = options.fractions ?? [0.2];
  const rankings = options.rankings ?? suspectRankings;
  const percent = (q: number) => `${Math.round(100 * q)}%`;
  const figures = new Map<SuspectRanking, { mislabeled: number[]; shortcut: number[]; gain: number[][] }>(
    rankings.map((r) => [r, { mislabeled: [], shortcut: [], gain: fractions.map(() => []) }]),
  );
  const oracleGain: number[] = [];
  log(
    `| set | seed | ERM top-1 | oracle | ${
      rankings.map((r) =>
        `${r}: AUROC mislabelled / shortcut, top-1 at ${fractions.map(percent).join(" / ")}`
      )
        .join(" | ")
    } |`,
  );
  log(`|${"---|".repeat(4 + rankings.length)}`);
  for (const id of ids) {
    const cell = robustnessCellData(id);
    for (const seed of seeds) {
      const { train, val, test } = await cell.data(seed);
      if (!train.mislabeled || !train.shortcut) {
        throw new RangeError(
          `detection: cell ${id} has no ground truth of its corruption; pick a generated cell`,
        );
      }
      const { fit } = await tuneLambda(train, val);
      const erm = 100 * (await evaluateHead(fit, test)).accuracy;
      const oracle = await refitAccuracy(fit, train, test, oracleAlpha(train));
      oracleGain.push(oracle - erm);
      const scores = await rankSuspects(fit, train, val, { rankings, seed });
      const cellsText: string[] = [];
      for (const ranking of rankings) {
        const score = scores[ranking]!, entry = figures.get(ranking)!;
        entry.mislabeled.push(detectionMetrics(score, train.mislabeled).auroc);
        entry.shortcut.push(detectionMetrics(score, train.shortcut).auroc);
        const top1: number[] = [];
        for (const [f, q] of fractions.entries()) {
          top1.push(await refitAccuracy(fit, train, test, lossTrimAlpha(score, train.labels, q)));
          entry.gain[f].push(top1[f] - erm);
        }
        cellsText.push(
          `${entry.mislabeled.at(-1)!.toFixed(3)} / ${entry.shortcut.at(-1)!.toFixed(3)}, ${
            top1.map((t) => t.toFixed(1)).join(" / ")
          }`,
        );
      }
      log(`| ${id} | ${seed} | ${erm.toFixed(1)} | ${oracle.toFixed(1)} | ${cellsText.join(" | ")} |`);
      disposeHead(fit);
      tf.dispose([train.features, val.features, test.features]);
    }
    cell.release?.();
  }
  const text = (values: number[], digits: number) => {
    const { mean, std } = meanStd(values);
    return `${mean.toFixed(digits)} ± ${std.toFixed(digits)}`;
  };
  log(
    `\nover ${ids.length} set(s) × ${seeds.length} seed(s) (mean ± std; oracle − ERM ${
      text(oracleGain, 2)
    } points):`,
  );
  log(
    `| ranking | AUROC mislabelled | AUROC shortcut | ${
      fractions.map((q) => `top-1 − ERM after removing its top ${percent(q)} per class`).join(" | ")
    } |`,
  );
  log(`|${"---|".repeat(3 + fractions.length)}`);
  for (const [ranking, entry] of figures) {
    log(
      `| ${ranking} | ${text(entry.mislabeled, 3)} | ${text(entry.shortcut, 3)} | ${
        entry.gain.map((g) => text(g, 2)).join(" | ")
      } |`,
    );
  }
}
