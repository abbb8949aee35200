/**
 * Issue 2 benchmark: `fitHead` to tol 1e-6 and `explain` top-10 on CUB-sized synthetic features (n = 5994,
 * 5794 test, d = 768, K = 200; class means N(0, s²), shared offset N(0, 0.5²), noise N(0, 1), α ~ U[0.5, 1.5]).
 * Two problems: s = 0.3, λ = 1 is exactly REFERENCE.md §3 (the problem its scikit-learn figures were measured on;
 * linearly separable, test accuracy 100%); s = 0.18, λ = 10 is the non-trivial one (test top-1 ≈ 72%).
 * With `--dump DIR` the second problem is written as raw little-endian files for `sk_head_baseline.py`
 * (REFERENCE.md §4.1) to DIR, and the first to DIR/reference, so the scikit-learn baseline can be rerun side by
 * side on the same data.
 */
import * as tf from "@tensorflow/tfjs";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { disposeHead, fitHead, type HeadFit, headLogits } from "../lib/carrot/head.ts";
import { explain } from "../lib/carrot/representer.ts";
import type { LabeledFeatures } from "../lib/carrot/labeled_features.ts";
import { Random } from "../lib/random.ts";
import { log } from "../lib/progress.ts";
import { timed, versus } from "./_timing.ts";
import { benchFitPreconditioning } from "./preconditioning.ts";

const n = 5994, nTest = 5794, dim = 768, k = 200;

/** CUB-shaped train and test splits (REFERENCE.md §3 recipe with class-mean scale `s`). */
function cubLike(s: number, seed: number) {
  const rng = new Random(seed);
  const means = Float32Array.from({ length: k * dim }, () => s * rng.normal());
  const offset = Float32Array.from({ length: dim }, () => 0.5 * rng.normal());
  const split = (count: number) => {
    const labels = Int32Array.from(rng.permutation(count), (i) => i % k);
    const rows = new Float32Array(count * dim);
    for (let i = 0; i < count; i++) {
      for (let j = 0; j < dim; j++) rows[i * dim + j] = offset[j] + means[labels[i] * dim + j] + rng.normal();
    }
    return { rows, labels };
  };
  const train = split(n), test = split(nTest);
  const alpha = Float32Array.from({ length: n }, () => 0.5 + rng.uniform());
  return { train, test, alpha };
}

const toFeatures = (s: { rows: Float32Array; labels: Int32Array }): LabeledFeatures => ({
  features: tf.tensor2d(s.rows, [s.labels.length, dim]),
  labels: s.labels,
});

async function fitAndReport(label: string, train: LabeledFeatures, alpha: Float32Array, lambda: number) {
  let fit: HeadFit | undefined;
  for (const preconditioner of ["none", "ekfac"] as const) {
    if (fit) disposeHead(fit);
    const run = await timed(() => fitHead(train, { lambda, alpha, tol: 1e-6, preconditioner }));
    fit = run.result;
    log(
      `${label}: fitHead λ=${lambda}, preconditioner ${preconditioner}: ${fit.iterations} iterations, ` +
        `${fit.evaluations} evaluations, ${fit.reads} reads (${
          (fit.reads / fit.iterations).toFixed(2)
        }/iteration), ` +
        `relative ‖∇J‖ ${fit.relativeGradNorm.toExponential(2)} (converged: ${fit.converged}), J = ${
          fit.loss.toFixed(4)
        }`,
    );
    log(
      `  time ${versus(run.seconds, { what: "sklearn lbfgs (REFERENCE §3)", debian: 10.5, skylakeX: 4.4 })}`,
    );
  }
  return fit!;
}

/** Writes one problem's train split and α as raw little-endian files, and the scikit-learn command for them. */
function dumpProblem(dir: string, data: ReturnType<typeof cubLike>, lambda: number) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "X_f32.bin"), data.train.rows);
  writeFileSync(join(dir, "y_i32.bin"), data.train.labels);
  writeFileSync(join(dir, "a_f64.bin"), Float64Array.from(data.alpha));
  log(
    `  wrote ${dir}: /usr/bin/python3 sk_head_baseline.py --X ${dir}/X_f32.bin --y ${dir}/y_i32.bin ` +
      `--a ${dir}/a_f64.bin --d ${dim} --lam ${lambda} --tol 1e-10`,
  );
}

/** Prints the head benchmark; `dump` writes the non-trivial problem for the side-by-side sklearn baseline. */
export async function benchHead(options: { dump?: string } = {}): Promise<void> {
  const reference = cubLike(0.3, 0);
  const referenceTrain = toFeatures(reference.train);
  disposeHead(await fitAndReport("REFERENCE §3 problem (s = 0.3)", referenceTrain, reference.alpha, 1));
  referenceTrain.features.dispose();

  const lambda = 10;
  const data = cubLike(0.18, 1);
  if (options.dump) {
    dumpProblem(options.dump, data, lambda);
    dumpProblem(join(options.dump, "reference"), reference, 1);
  }
  const train = toFeatures(data.train), test = toFeatures(data.test);
  const fit = await fitAndReport("non-trivial problem (s = 0.18)", train, data.alpha, lambda);
  const warm = await timed(() =>
    fitHead(train, { lambda, alpha: data.alpha.map((a, i) => i ? a : 0), init: fit })
  );
  log(`  warm refit after α_0 = 0: ${warm.result.iterations} iterations, ${warm.seconds.toFixed(2)} s`);
  disposeHead(warm.result);
  const accuracy = tf.tidy(() =>
    tf.mean(
      tf.equal(tf.argMax(headLogits(fit, test.features), 1), tf.tensor1d(test.labels, "int32")).toFloat(),
    )
  );
  log(`  test top-1 ${(100 * (await accuracy.data())[0]).toFixed(1)}% (chance ${(100 / k).toFixed(1)}%)`);
  accuracy.dispose();

  const run = await timed(() => explain(fit, train, test.features, { topK: 10 }));
  const gflop = 2 * nTest * (dim + 1) * n / 1e9;
  log(
    `explain top-10, ${nTest} test × ${n} train: residual ${run.result.residual.toExponential(2)} ` +
      `(bound ${run.result.residualBound.toExponential(2)}), ${
        (gflop / run.seconds).toFixed(1)
      } GFLOP/s on the kernel`,
  );
  log(`  time ${versus(run.seconds, { what: "NumPy f32 GEMM", debian: gflop / 58, skylakeX: gflop / 225 })}`);
  disposeHead(fit);
  tf.dispose([train.features, test.features]);
  await benchFitPreconditioning();
}
