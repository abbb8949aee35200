/**
 * Issue 2 benchmark: `fitHead` to tol 1e-6 and `explain` top-10 on CUB-sized synthetic features
 * (n = 5994, d = 768, K = 200; class means N(0, 0.3²), shared offset N(0, 0.5²), noise N(0, 1), α ~ U[0.5, 1.5],
 * λ = 1 — the problem of REFERENCE.md §3), against the scikit-learn and NumPy figures of REFERENCE.md.
 */
import * as tf from "@tensorflow/tfjs";
import { disposeHead, fitHead, headLogits } from "../lib/carrot/head.ts";
import { explain } from "../lib/carrot/representer.ts";
import { Random } from "../lib/random.ts";
import { log } from "../lib/progress.ts";
import { timed, versus } from "./_timing.ts";

/** CUB-shaped features: `count` rows per the REFERENCE.md recipe, labels balanced then shuffled. */
function cubLike(
  rng: Random,
  means: Float32Array,
  offset: Float32Array,
  count: number,
  dim: number,
  k: number,
) {
  const labels = Int32Array.from(rng.permutation(count), (i) => i % k);
  const rows = new Float32Array(count * dim);
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < dim; j++) rows[i * dim + j] = offset[j] + means[labels[i] * dim + j] + rng.normal();
  }
  return { features: tf.tensor2d(rows, [count, dim]), labels };
}

/** Prints the head benchmark. */
export async function benchHead(): Promise<void> {
  const n = 5994, nTest = 5794, dim = 768, k = 200, lambda = 1;
  const rng = new Random(0);
  const means = Float32Array.from({ length: k * dim }, () => 0.3 * rng.normal());
  const offset = Float32Array.from({ length: dim }, () => 0.5 * rng.normal());
  const train = cubLike(rng, means, offset, n, dim, k);
  const test = cubLike(rng, means, offset, nTest, dim, k);
  const alpha = Float32Array.from({ length: n }, () => 0.5 + rng.uniform());

  const fitRun = await timed(() => fitHead(train, { lambda, alpha, tol: 1e-6 }));
  const fit = fitRun.result;
  log(
    `fitHead n=${n} d=${dim} K=${k} λ=${lambda}: ${fit.iterations} iterations, ${fit.evaluations} evaluations, ` +
      `relative ‖∇J‖ ${fit.relativeGradNorm.toExponential(2)} (converged: ${fit.converged}), J = ${
        fit.loss.toFixed(4)
      }`,
  );
  log(`  time ${versus(fitRun.seconds, { what: "sklearn lbfgs", debian: 10.5, skylakeX: 4.4 })}`);

  const warm = await timed(() =>
    fitHead(train, { lambda, alpha: alpha.map((a, i) => i === 0 ? 0 : a), init: fit })
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

  const explainRun = await timed(() => explain(fit, train, test.features, { topK: 10 }));
  const gflop = 2 * nTest * (dim + 1) * n / 1e9;
  log(
    `explain top-10, ${nTest} test × ${n} train: residual ${explainRun.result.residual.toExponential(2)} ` +
      `(bound ${explainRun.result.residualBound.toExponential(2)}), ${
        (gflop / explainRun.seconds).toFixed(1)
      } GFLOP/s ` +
      `on the kernel product`,
  );
  log(
    `  time ${
      versus(explainRun.seconds, { what: "NumPy f32 GEMM", debian: gflop / 58, skylakeX: gflop / 225 })
    }`,
  );
  disposeHead(fit);
  tf.dispose([train.features, test.features]);
}
