/**
 * Issue 3 benchmark on the CUB-sized synthetic preset (n = 5994, d = 768, K = 200, 2000 val, 5794 test):
 * `validationAlphaGradient` for all n, TracIn-CP on L_val (all n, 10 checkpoints), TRAK (k = 2048), 100 exact LOO
 * refits and `testInfluence` top-10 over 500 test points. REFERENCE.md has no influence-library figures, so each
 * line reports its useful FLOP rate next to NumPy's GEMM rate on this machine type (58 GFLOP/s Debian BLAS,
 * 225 SkylakeX, f32) — the speed the same algorithm would reach in NumPy at best — and LOO refits against
 * scikit-learn's full fit (a user without warm starts refits from scratch). `benchDirectInfluence` (suite
 * `influence-direct`) is issue 15's direct path on the MNIST-shaped problem.
 */
import { disposeHead, fitHead, type HeadFit, headLogits } from "../lib/carrot/head.ts";
import { testInfluence, validationAlphaGradient } from "../lib/carrot/influence.ts";
import type { SolverReport } from "../lib/carrot/direct.ts";
import type { LabeledFeatures } from "../lib/carrot/labeled_features.ts";
import { spearman } from "../lib/stats.ts";
import { Random } from "../lib/random.ts";
import { mnistShapedProblem } from "./mnist_shaped.ts";
import { disposeCheckpoints, tracInValidation, trainTracInCheckpoints } from "../lib/carrot/tracin.ts";
import { trakScores } from "../lib/carrot/trak.ts";
import { looExact } from "../lib/carrot/loo.ts";
import { makeFineGrainedFeatures } from "../lib/data/synthetic_features.ts";
import { log } from "../lib/progress.ts";
import { timed, versus } from "./_timing.ts";
import { benchCgPreconditioning } from "./preconditioning.ts";
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
      `${g.result.cgReads} reads, residual ${g.result.cgResidual.toExponential(1)}, λ(H) ∈ [${
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
  for (const preconditioner of ["auto", "none"] as const) {
    let race: string | undefined;
    const exact = await timed(() =>
      testInfluence(fit, train, subset, {
        topK: 10,
        method: "exact",
        preconditioner,
        onSolver: (r) => race = r.cgPreconditioner,
      })
    );
    log(
      `testInfluence exact top-10, 500 test points, preconditioner ${preconditioner}: ${
        exact.seconds.toFixed(2)
      } s` +
        (race ? ` (${race})` : ""),
    );
  }
  const approx = await timed(() => testInfluence(fit, train, subset, { topK: 10, method: "ekfac" }));
  log(`testInfluence EK-FAC top-10, 500 test points: ${approx.seconds.toFixed(2)} s`);
  disposeHead(fit);
  tf.dispose([train.features, val.features, test.features, subset.features]);
  await benchCgPreconditioning();
}

const CG_BASELINE_SECONDS = 539; // issue 15: exact testInfluence (block CG) of the 500 MNIST-shaped test points

/** Scores I(i, x) `[n, t]` (train-major) of `testInfluence` on `test`, with its solver report and top-10s. */
async function influenceMatrix(
  fit: HeadFit,
  train: LabeledFeatures,
  test: LabeledFeatures,
  method: "direct" | "exact" | "auto",
) {
  const n = train.labels.length, t = test.labels.length, scores = new Float32Array(n * t);
  let report: SolverReport | undefined;
  const run = await timed(() =>
    testInfluence(fit, train, test, {
      topK: 10,
      method,
      onBlock: (start, block, b) => {
        for (let i = 0; i < n; i++) for (let j = 0; j < b; j++) scores[i * t + start + j] = block[i * b + j];
      },
      onSolver: (r) => report = r,
    })
  );
  return { scores, report: report!, seconds: run.seconds, top: run.result };
}

/** ℓ_x of every test point for the logits `z` `[t, K]` (row-major) and labels. */
function crossEntropies(z: Float32Array, labels: Int32Array, k: number): Float64Array {
  return Float64Array.from(labels, (y, j) => {
    let max = -Infinity, sum = 0;
    for (let c = 0; c < k; c++) max = Math.max(max, z[j * k + c]);
    for (let c = 0; c < k; c++) sum += Math.exp(z[j * k + c] - max);
    return max + Math.log(sum) - z[j * k + y];
  });
}

/**
 * Issue 15 benchmark: exact test influence of the 500 MNIST-shaped test points (n = 5000, d = 784, K = 10, λ = 1,
 * K(d+1) = 7,850) by the direct path (`factorHessian`: one Cholesky factor, then triangular solves), against the
 * 60 s target and the 539 s block-CG figure; then the rank agreement of direct and CG scores with 20 exact
 * leave-one-out refits for 3 test points (Spearman of −I(i, x) against ℓ_x(W*₋ᵢ) − ℓ_x(W*)).
 */
export async function benchDirectInfluence(): Promise<void> {
  const { train, test, lambda } = mnistShapedProblem(0);
  const n = train.labels.length, k = 10;
  const fitRun = await timed(() => fitHead(train, { lambda }));
  const fit = fitRun.result;
  log(
    `MNIST-shaped: n=${n} t=${test.labels.length} d=784 K=${k} λ=${lambda}; fit ${
      fitRun.seconds.toFixed(1)
    } s, ` +
      `${fit.iterations} iterations, relative ‖∇J‖ ${fit.relativeGradNorm.toExponential(1)}`,
  );
  const direct = await influenceMatrix(fit, train, test, "direct");
  const d = direct.report.direct;
  if (!d) throw new Error(`benchDirectInfluence: the direct path was not used (${direct.report.reason})`);
  const factorSeconds = d.seconds.assemble + d.seconds.factor;
  log(
    `direct: assemble H ${d.seconds.assemble.toFixed(1)} s + factor ${d.seconds.factor.toFixed(1)} s ` +
      `(${d.tiles} tiles, ≈ ${(d.bytes / 2 ** 20).toFixed(0)} MiB, δ = ${d.damping}, smallest pivot ` +
      `${d.minPivotRatio.toFixed(3)}·λ); solve + score 500 test points ${
        (direct.seconds - factorSeconds).toFixed(1)
      } s ` +
      `(of which solves ${
        d.seconds.solve.toFixed(1)
      } s; ${d.solves} blocks, ≤ ${d.refinementSteps} refinement ` +
      `steps, worst residual ${d.relativeResidual.toExponential(1)})`,
  );
  log(
    `direct total ${direct.seconds.toFixed(1)} s (${(direct.seconds / 60).toFixed(2)}× the 60 s target, ` +
      `${(direct.seconds / CG_BASELINE_SECONDS).toFixed(3)}× the ${CG_BASELINE_SECONDS} s CG figure); ` +
      `with the fit ${(direct.seconds + fitRun.seconds).toFixed(1)} s`,
  );

  // the default, "auto", for the 500 points and for 3: it measures CG on its first block against the break-even
  const autoRun = async (points: LabeledFeatures, what: string) => {
    const auto = await influenceMatrix(fit, train, points, "auto");
    log(`auto, ${what}: ${auto.seconds.toFixed(1)} s, ${auto.report.method} (${auto.report.reason})`);
  };
  await autoRun(test, `${test.labels.length} test points`);

  // 3 test points, scored by CG too; 20 training points: the top 3 proponents and opponents of each, then random
  const picks = [0, 1, 2];
  const few: LabeledFeatures = {
    features: test.features.slice([0, 0], [picks.length, -1]),
    labels: test.labels.slice(0, picks.length),
  };
  const cg = await influenceMatrix(fit, train, few, "exact");
  await autoRun(few, `${picks.length} test points`);
  const chosen = new Set<number>();
  for (const j of picks) {
    for (const q of [...direct.top[j].proponents.slice(0, 3), ...direct.top[j].opponents.slice(0, 3)]) {
      chosen.add(q.index);
    }
  }
  const rng = new Random(1);
  while (chosen.size < 20) chosen.add(rng.int(n));
  const indices = [...chosen];
  const loo = await timed(() => looExact(fit, train, few, indices));
  const base = headLogits(fit, few.features);
  const baseLogits = (await base.data()) as Float32Array;
  base.dispose();
  const baseLoss = crossEntropies(baseLogits, few.labels, k);
  const rho = { direct: [] as number[], cg: [] as number[] }, t = test.labels.length;
  let gap = 0, scale = 0;
  for (const j of picks) {
    const actual = indices.map((_, q) => {
      const z = Float32Array.from(
        { length: k },
        (_, c) => baseLogits[j * k + c] + loo.result.logitChange[(q * picks.length + j) * k + c],
      );
      return crossEntropies(z, few.labels.subarray(j, j + 1), k)[0] - baseLoss[j];
    });
    rho.direct.push(spearman(indices.map((i) => -direct.scores[i * t + j]), actual));
    rho.cg.push(spearman(indices.map((i) => -cg.scores[i * picks.length + j]), actual));
    for (let i = 0; i < n; i++) {
      gap = Math.max(gap, Math.abs(direct.scores[i * t + j] - cg.scores[i * picks.length + j]));
      scale = Math.max(scale, Math.abs(cg.scores[i * picks.length + j]));
    }
  }
  const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
  log(
    `LOO agreement (${indices.length} refits in ${loo.seconds.toFixed(1)} s, ${loo.result.unconverged} ` +
      `unconverged; 3 test points): Spearman direct ${rho.direct.map((r) => r.toFixed(3)).join(", ")} ` +
      `(mean ${mean(rho.direct).toFixed(3)}), CG ${rho.cg.map((r) => r.toFixed(3)).join(", ")} ` +
      `(mean ${mean(rho.cg).toFixed(3)}); max |I_direct − I_CG| / max |I_CG| = ` +
      `${(gap / scale).toExponential(1)}; CG on those 3 points ${cg.seconds.toFixed(1)} s`,
  );
  disposeHead(fit);
  tf.dispose([train.features, test.features, few.features]);
}
