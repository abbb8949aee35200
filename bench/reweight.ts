/**
 * `deno task bench reweight`: one full RRO run (20 outer steps, influence estimator with the default inexact
 * warm-started inner solves, ρ = 0.5, γ = 0) on the CUB-sized synthetic preset (n = 5994, d = 768, K = 200, 2000
 * val) — the wall time of the method at CUB scale — and `testInfluence` top-10 (exact block CG on 52 test points,
 * scaled to 500; EK-FAC on 500).
 */
import * as tf from "@tensorflow/tfjs";
import { disposeHead, type HeadFit } from "../lib/carrot/head.ts";
import type { LabeledFeatures } from "../lib/carrot/labeled_features.ts";
import { reweight } from "../lib/carrot/reweight.ts";
import { testInfluence } from "../lib/carrot/influence.ts";
import { evaluateHead } from "../lib/carrot/metrics.ts";
import { makeFineGrainedFeatures } from "../lib/data/synthetic_features.ts";
import { log } from "../lib/progress.ts";
import { timed } from "./_timing.ts";

/** Prints the CUB-scale reweighting and test-influence timings. */
export async function benchReweight(): Promise<void> {
  const data = makeFineGrainedFeatures({ preset: "cub", seed: 0 });
  const { train, val, test } = data;
  const stepEnds: number[] = [];
  const start = performance.now();
  const run = await timed(() =>
    reweight(train, val, {
      lambda: 30,
      outerSteps: 20,
      onStep: (e) => {
        stepEnds.push(performance.now());
        log(
          `  step ${e.step}: L_val ${e.valLoss.toFixed(4)}, val top-1 ${
            (100 * e.valAccuracy).toFixed(1)
          }%, ` +
            `min ESS ${e.essMin.toFixed(3)}, η ${e.stepSize}, halvings ${e.halvings}`,
        );
      },
    })
  );
  const end = start + 1000 * run.seconds;
  const seconds = (from: number, to: number) => ((to - from) / 1000).toFixed(1);
  const metrics = await evaluateHead(run.result.fit, test);
  log(
    `reweight, CUB-sized preset, ${
      run.result.trajectory.length - 1
    } outer steps (${run.result.stopReason}): ` +
      `${run.seconds.toFixed(1)} s in all = ERM start ${seconds(start, stepEnds[0])} s + outer steps ${
        seconds(stepEnds[0], stepEnds.at(-1)!)
      } s + final refit to 1e-6 ${seconds(stepEnds.at(-1)!, end)} s (target for the steps: ≤ 60 s); ` +
      `test top-1 ${(100 * metrics.accuracy).toFixed(1)}%`,
  );
  await timeTestInfluence(run.result.fit, train, test);
  disposeHead(run.result.fit);
  tf.dispose([train.features, val.features, test.features]);
}

/**
 * Exact test influence costs one CG solve per test point (about one `validationAlphaGradient` each), so it is timed
 * on 52 points and scaled linearly to 500; EK-FAC runs all 500.
 */
export async function timeTestInfluence(
  fit: HeadFit,
  train: LabeledFeatures,
  test: LabeledFeatures,
): Promise<void> {
  const subset = (t: number) => ({
    features: test.features.slice([0, 0], [t, -1]) as tf.Tensor2D,
    labels: test.labels.slice(0, t),
  });
  const few = subset(52), many = subset(500);
  const exact = await timed(() => testInfluence(fit, train, few, { topK: 10, method: "exact" }));
  log(
    `testInfluence exact top-10: 52 test points ${exact.seconds.toFixed(1)} s → 500 test points ≈ ` +
      `${(exact.seconds * 500 / 52).toFixed(0)} s`,
  );
  const approx = await timed(() => testInfluence(fit, train, many, { topK: 10, method: "ekfac" }));
  log(`testInfluence EK-FAC top-10, 500 test points: ${approx.seconds.toFixed(1)} s`);
  tf.dispose([few.features, many.features]);
}
