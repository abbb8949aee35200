/**
 * `deno task bench agreement`: the agreement table (Spearman / Kendall τ-b against exact LOO, LDS, wall time) of
 * every attribution method on the synthetic fine-grained features with their documented defaults (50 classes in
 * 10 groups, d = 64, 1500 train / 500 val, 20% within-group label noise, 10% shortcut), λ = 10, 100 LOO refits,
 * LDS over 30 half subsets, seed 0.
 */
import * as tf from "@tensorflow/tfjs";
import { attributionAgreement } from "../lib/carrot/agreement.ts";
import { makeFineGrainedFeatures } from "../lib/data/synthetic_features.ts";
import { log, Progress } from "../lib/progress.ts";

/** Prints the agreement table as markdown. */
export async function benchAgreement(): Promise<void> {
  const data = makeFineGrainedFeatures({ seed: 0 });
  let bar: Progress | undefined, stage = "";
  const result = await attributionAgreement(data.train, data.val, {
    lambda: 10,
    looSample: 100,
    ldsSubsets: 30,
    seed: 0,
    onProgress: (name, done, total) => {
      if (name !== stage) [bar, stage] = [new Progress(name, total, "refit"), name];
      bar!.update(done);
    },
  });
  log(
    `ERM head: ${result.fit.iterations} iterations, relative ‖∇J‖ ${
      result.fit.relativeGradNorm.toExponential(1)
    }; ` +
      `exact LOO ${result.looRefitsPerSecond.toFixed(1)} refits/s, ${result.looUnconverged} unconverged`,
  );
  log("| method | Spearman ρ vs LOO | Kendall τ-b vs LOO | LDS | seconds |");
  log("|---|---|---|---|---|");
  for (const r of result.rows) {
    log(
      `| ${r.method} | ${r.spearman.toFixed(3)} | ${r.kendall.toFixed(3)} | ${r.lds.toFixed(3)} | ${
        r.seconds.toFixed(3)
      } |`,
    );
  }
  tf.dispose([data.train.features, data.val.features, data.test.features]);
}
