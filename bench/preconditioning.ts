/**
 * Issue 15: what preconditioning buys, and what the solvers read. On three problems — the CUB-sized preset
 * (n = 5994, d = 768, K = 200, λ = 30), the SynthBirds-like default of `makeFineGrainedFeatures` (n = 1500, d = 64,
 * K = 50, λ = 10) and the MNIST-shaped problem (n = 5000, d = 784, K = 10, λ = 1) — it prints
 *   - `fitHead` with H₀ = γI and with H₀ = γH(0)⁻¹ (`preconditioner: "ekfac"`): iterations, evaluations, reads per
 *     iteration and wall time;
 *   - `validationAlphaGradient`'s CG plain and preconditioned by the EK-FAC inverse: iterations, reads per
 *     iteration, wall time (the EK-FAC build included) and whether the preconditioner was dropped.
 * Reads are counted by `readCount()` (`lib/carrot/_reads.ts`); on WebGPU each costs ≈ 13 ms whatever its size.
 */
import * as tf from "@tensorflow/tfjs";
import { disposeHead, fitHead, type HeadFit } from "../lib/carrot/head.ts";
import { validationAlphaGradient } from "../lib/carrot/influence.ts";
import type { LabeledFeatures } from "../lib/carrot/labeled_features.ts";
import { makeFineGrainedFeatures } from "../lib/data/synthetic_features.ts";
import { log } from "../lib/progress.ts";
import { mnistShapedProblem } from "./mnist_shaped.ts";
import { timed } from "./_timing.ts";

interface Problem {
  name: string;
  train: LabeledFeatures;
  val: LabeledFeatures;
  lambda: number;
}

/** The three problems of the module JSDoc, one at a time (the caller frees each with `release`). */
function* problems(): Generator<Problem> {
  const cub = makeFineGrainedFeatures({ preset: "cub", seed: 0 });
  tf.dispose(cub.test.features);
  yield { name: "CUB-sized preset", train: cub.train, val: cub.val, lambda: 30 };
  const small = makeFineGrainedFeatures({ seed: 0 });
  tf.dispose(small.test.features);
  yield { name: "SynthBirds-like default", train: small.train, val: small.val, lambda: 10 };
  const mnist = mnistShapedProblem(0);
  yield { name: "MNIST-shaped", train: mnist.train, val: mnist.test, lambda: mnist.lambda };
}

const release = (p: Problem) => tf.dispose([p.train.features, p.val.features]);

const perIteration = (reads: number, iterations: number) => (reads / Math.max(1, iterations)).toFixed(2);

/** fitHead to 1e-6 with and without the H(0)⁻¹ preconditioner on the three problems. */
export async function benchFitPreconditioning(): Promise<void> {
  log("fitHead (L-BFGS, tol 1e-6): H₀ = γI vs γH(0)⁻¹ (preconditioner 'ekfac')");
  for (const problem of problems()) {
    for (const preconditioner of ["none", "ekfac"] as const) {
      const run = await timed(() => fitHead(problem.train, { lambda: problem.lambda, preconditioner }));
      const fit = run.result;
      log(
        `  ${problem.name}, ${preconditioner}: ${fit.iterations} iterations, ${fit.evaluations} evaluations, ` +
          `${fit.reads} reads (${
            perIteration(fit.reads, fit.iterations)
          }/iteration), ${fit.skippedPairs} pairs ` +
          `skipped, relative ‖∇J‖ ${fit.relativeGradNorm.toExponential(1)}; ${run.seconds.toFixed(2)} s`,
      );
      disposeHead(fit);
    }
    release(problem);
  }
}

/** validationAlphaGradient's CG, plain and EK-FAC preconditioned, at the ERM fit of each problem. */
export async function benchCgPreconditioning(): Promise<void> {
  log("validationAlphaGradient CG (tol 1e-6): plain vs preconditioned by the EK-FAC inverse");
  for (const problem of problems()) {
    const fit: HeadFit = await fitHead(problem.train, { lambda: problem.lambda });
    for (const preconditioner of ["none", "ekfac"] as const) {
      const run = await timed(() =>
        validationAlphaGradient(fit, problem.train, problem.val, { tol: 1e-6, preconditioner })
      );
      const g = run.result;
      const dropped = g.cgPreconditioner.failure
        ? `, dropped at ${g.cgPreconditioner.restartedAt} (${g.cgPreconditioner.failure})`
        : "";
      log(
        `  ${problem.name}, ${preconditioner}: ${g.cgIterations} iterations, ${g.cgReads} reads ` +
          `(${perIteration(g.cgReads, g.cgIterations)}/iteration), residual ${
            g.cgResidual.toExponential(1)
          }` +
          `${dropped}; ${run.seconds.toFixed(2)} s (build included)`,
      );
    }
    disposeHead(fit);
    release(problem);
  }
}
