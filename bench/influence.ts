/**
 * Issue 3 benchmark on the CUB-sized synthetic preset (n = 5994, d = 768, K = 200, 2000 val, 5794 test):
 * `validationAlphaGradient` for all n, TracIn-CP on L_val (all n, 10 checkpoints), TRAK (k = 2048), 100 exact LOO
 * refits and `testInfluence` top-10 over 500 test points. REFERENCE.md has no influence-library figures, so each
 * line reports its useful FLOP rate next to NumPy's GEMM rate on this machine type (58 GFLOP/s Debian BLAS,
 * 225 SkylakeX, f32) — the speed the same algorithm would reach in NumPy at best — and LOO refits against
 * scikit-learn's full fit (a user without warm starts refits from scratch).
 */
import { disposeHead, fitHead } from "../lib/carrot/head.ts";
import { testInfluence, validationAlphaGradient } from "../lib/carrot/influence.ts";
import { disposeCheckpoints, tracInValidation, trainTracInCheckpoints } from "../lib/carrot/tracin.ts";
import { trakScores } from "../lib/carrot/trak.ts";
import { looExact } from "../lib/carrot/loo.ts";
import { makeFineGrainedFeatures } from "../lib/data/synthetic_features.ts";
import { log } from "../lib/progress.ts";
import { timed, versus } from "./_timing.ts";
import * as tf from "@tensorflow/tfjs";

const rate = (gflop: number, seconds: number) =>
  `${(gflop / seconds).toFixed(1)} GFLOP/s useful (NumPy f32 GEMM here: 58 Debian / 225 SkylakeX)`;

/** Prints the influence-family benchmark. */
export async function benchInfluence(): Promise<void> {
  const data = makeFineGrainedFeatures({ preset: "cub", seed: 0 });
  const { train, val, test } = data;
  const n = train.labels.length, m = val.labels.length, d = 768, k = 200, lambda = 30;
  const fitRun = await timed(() => fitHead(train, { lambda }));
  const fit = fitRun.result;
  log(
    `CUB-sized preset: n=${n} m=${m} d=${d} K=${k} λ=${lambda}; ERM fit ${fitRun.seconds.toFixed(1)} s, ` +
      `${fit.iterations} iterations, relative ‖∇J‖ ${fit.relativeGradNorm.toExponential(1)}`,
  );
  const hvpGflop = 4 * n * (d + 1) * k / 1e9; // two [n, d]·[d, K]-sized products per HVP

  const g = await timed(() => validationAlphaGradient(fit, train, val, { tol: 1e-6 }));
  log(
    `validationAlphaGradient (all ${n}): ${
      g.seconds.toFixed(2)
    } s, ${g.result.cgIterations} CG iterations, ` +
      `residual ${g.result.cgResidual.toExponential(1)}, λ(H) ∈ [${
        g.result.eigenvalueEstimates.min.toFixed(1)
      }, ` +
      `${g.result.eigenvalueEstimates.max.toExponential(2)}]; ${
        rate(g.result.cgIterations * hvpGflop, g.seconds)
      }`,
  );
  const ekfac = await timed(() => validationAlphaGradient(fit, train, val, { solver: "ekfac" }));
  log(
    `validationAlphaGradient EK-FAC: ${ekfac.seconds.toFixed(2)} s (two eigendecompositions, no iterations)`,
  );

  const tracin = await timed(async () => {
    const checkpoints = await trainTracInCheckpoints(train, { lambda, numClasses: k });
    const scores = await tracInValidation(checkpoints, train, val);
    disposeCheckpoints(checkpoints);
    return scores;
  });
  log(
    `TracIn-CP on L_val (10 epochs of SGD + 10 checkpoints, all ${n} × ${m} val): ${
      tracin.seconds.toFixed(2)
    } s`,
  );

  const trak = await timed(() =>
    trakScores(fit, train, {
      features: val.features.slice([0, 0], [500, -1]),
      labels: val.labels.slice(0, 500),
    }, { projectionDim: 2048 })
  );
  log(`TRAK k=2048 (${n} train × 500 val): ${trak.seconds.toFixed(2)} s`);

  const indices = Array.from({ length: 100 }, (_, i) => i * Math.floor(n / 100));
  const loo = await timed(() => looExact(fit, train, val, indices));
  log(
    `100 exact LOO refits: ${
      versus(loo.seconds, { what: "100 × sklearn lbfgs full fit", debian: 1050, skylakeX: 440 })
    }; ` +
      `${loo.result.refitsPerSecond.toFixed(2)} refits/s, ${loo.result.unconverged} unconverged`,
  );

  const subset = {
    features: test.features.slice([0, 0], [500, -1]) as tf.Tensor2D,
    labels: test.labels.slice(0, 500),
  };
  const exact = await timed(() => testInfluence(fit, train, subset, { topK: 10 }));
  log(`testInfluence exact top-10, 500 test points: ${exact.seconds.toFixed(2)} s`);
  const approx = await timed(() => testInfluence(fit, train, subset, { topK: 10, method: "ekfac" }));
  log(`testInfluence EK-FAC top-10, 500 test points: ${approx.seconds.toFixed(2)} s`);
  disposeHead(fit);
  tf.dispose([train.features, val.features, test.features, subset.features]);
}
