/**
 * `deno task bench experiment`: ERM vs CARROT (and ablations, baselines) on the synthetic fine-grained features
 * with their documented defaults, at train label-noise rates 0, 0.2 and 0.4 (within-group flips), seeds 0, 1, 2;
 * mean ± std over seeds on test. Also `faithfulness` (remove/keep top-K) and `debugging` (mislabel/shortcut
 * detection) on seed 0 at noise 0.2.
 */
import * as tf from "@tensorflow/tfjs";
import { experimentTable, runExperiment } from "../lib/carrot/experiment.ts";
import { faithfulness } from "../lib/carrot/faithfulness.ts";
import { detectionMetrics, fixSuspects, rankSuspects } from "../lib/carrot/debug.ts";
import { tuneLambda } from "../lib/carrot/lambda.ts";
import { disposeHead } from "../lib/carrot/head.ts";
import { makeFineGrainedFeatures } from "../lib/data/synthetic_features.ts";
import { log } from "../lib/progress.ts";

/** Prints the ERM-vs-CARROT tables. */
export async function benchExperiment(): Promise<void> {
  for (const rate of [0, 0.2, 0.4]) {
    const rows = await runExperiment({
      data: (seed) => makeFineGrainedFeatures({ seed, labelNoise: { rate } }),
      onRun: (seed, method, m, s) =>
        log(
          `  noise ${rate} seed ${seed} ${method}: top-1 ${(100 * m.accuracy).toFixed(1)}%, ECE ` +
            `${(100 * m.ece).toFixed(1)}%, ${s.toFixed(1)} s`,
        ),
    });
    log(`\nlabel noise ${rate} (within-group), synthetic defaults, 3 seeds:\n${experimentTable(rows)}\n`);
  }
}

/** Prints faithfulness and dataset-debugging figures (seed 0, noise 0.2). */
export async function benchDebugging(): Promise<void> {
  const data = makeFineGrainedFeatures({ seed: 0 });
  const { fit } = await tuneLambda(data.train, data.val);
  const suspects = await rankSuspects(fit, data.train, data.val);
  log(
    `mislabel / shortcut detection (n = ${data.train.labels.length}, ` +
      `${data.train.mislabeled.reduce((s, v) => s + v, 0)} mislabeled, ${
        data.train.shortcut.reduce((s, v) => s + v, 0)
      } shortcut):`,
  );
  log(
    "| ranking | AUROC mislabeled | P@k | found @5/10/20% | AUROC shortcut | fix: test top-1 before → after |",
  );
  log("|---|---|---|---|---|---|");
  for (const [ranking, scores] of Object.entries(suspects)) {
    const mis = detectionMetrics(scores!, data.train.mislabeled),
      cut = detectionMetrics(scores!, data.train.shortcut);
    const fix = await fixSuspects(
      fit,
      data.train,
      data.test,
      scores!,
      Math.round(0.2 * data.train.labels.length),
    );
    log(
      `| ${ranking} | ${mis.auroc.toFixed(3)} | ${mis.precisionAtFlagged.toFixed(3)} | ` +
        `${mis.foundAt[5].toFixed(2)}/${mis.foundAt[10].toFixed(2)}/${mis.foundAt[20].toFixed(2)} | ${
          cut.auroc.toFixed(3)
        } | ` +
        `${(100 * fix.before.accuracy).toFixed(1)} → ${(100 * fix.after.accuracy).toFixed(1)} |`,
    );
  }
  const { rows } = await faithfulness(fit, data.train, data.test, { sample: 30 });
  log(
    "\nfaithfulness (30 test points): | method | K | flip rate | margin drop | p drop | keep agreement | keep KL |",
  );
  for (const r of rows) {
    log(
      `| ${r.method} | ${r.K} | ${r.flipRate.toFixed(3)} | ${r.marginDrop.toFixed(3)} | ${
        r.probDrop.toFixed(3)
      } | ` +
        `${r.agreement.toFixed(3)} | ${r.kl.toFixed(3)} |`,
    );
  }
  disposeHead(fit);
  tf.dispose([data.train.features, data.val.features, data.test.features]);
}
