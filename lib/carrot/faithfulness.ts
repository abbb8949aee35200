/**
 * Faithfulness of attributions, measured by refitting (the head makes this affordable):
 *   remove-top-K  for a seeded sample of test points, set α_i = 0 for the K strongest supporters of the predicted
 *                 class under a method, refit (warm start) and measure the drop of the predicted-class margin
 *                 z_ŷ − max_{k≠ŷ} z_k and probability p_ŷ, and the prediction-flip rate;
 *   keep-top-K    keep only, for every class k, the K training points labelled k that most support x being k,
 *                 refit on them alone, and measure agreement with the original prediction (same-label rate) and
 *                 KL(p_original ‖ p_kept).
 * A faithful method flips more predictions with fewer removals than random removal, and keeps them with fewer
 * points. Methods are scored through `attributionScores` (support orientation).
 */
import * as tf from "@tensorflow/tfjs";
import type { LabeledFeatures } from "./labeled_features.ts";
import { disposeHead, fitHead, type HeadFit, headLogits } from "./head.ts";
import { type AttributionMethod, type AttributionOptions, attributionScores } from "./attribution.ts";
import { selectRows } from "../split.ts";
import { Random } from "../random.ts";
import { readValues } from "./_reads.ts";

/** Options of `faithfulness`. */
export interface FaithfulnessOptions extends AttributionOptions {
  /** Methods compared (default representer, influence, tracin-cp, trak, knn, random). */
  methods?: readonly AttributionMethod[];
  /** The K values (default 1, 5, 10, 20, 50). */
  ks?: readonly number[];
  /** Test points sampled (default 30). */
  sample?: number;
  /** Also run keep-top-K (default true). */
  keep?: boolean;
  /** Tolerance of the refits (default fitHead's). */
  tol?: number;
  /** Called after each refit with (refits done, total refits). */
  onProgress?: (done: number, total: number) => void;
}

/** One (method, K) cell, averaged over the sampled test points. */
export interface FaithfulnessRow {
  /** The attribution method. */
  method: AttributionMethod;
  /** Supporters removed (or kept per class). */
  K: number;
  /** Fraction of sampled predictions that changed after removing the top-K supporters. */
  flipRate: number;
  /** Mean drop of the predicted-class margin z_ŷ − max_{k≠ŷ} z_k. */
  marginDrop: number;
  /** Mean drop of p_ŷ. */
  probDrop: number;
  /** Keep-top-K: fraction of predictions preserved (NaN when keep is off). */
  agreement: number;
  /** Keep-top-K: mean KL(p_original ‖ p_kept) (NaN when keep is off). */
  kl: number;
}

/** Per test point: predicted class, margin, probabilities. */
async function predictionsAt(fit: HeadFit, features: tf.Tensor2D) {
  const z = headLogits(fit, features);
  const values = (await readValues(z)) as Float32Array;
  z.dispose();
  const k = fit.numClasses, t = values.length / k;
  return Array.from({ length: t }, (_, j) => {
    const row = values.subarray(j * k, (j + 1) * k);
    let best = 0;
    for (let c = 1; c < k; c++) if (row[c] > row[best]) best = c;
    const max = row[best];
    const exp = Array.from(row, (v) => Math.exp(v - max));
    const total = exp.reduce((s, v) => s + v, 0);
    return { predicted: best, logits: row, probabilities: exp.map((v) => v / total) };
  });
}

const marginOf = (logits: Float32Array, c: number) =>
  logits[c] - Math.max(...Array.from(logits).filter((_, k) => k !== c));

function topIndices(
  scores: Float32Array,
  column: number,
  stride: number,
  count: number,
  allowed?: (i: number) => boolean,
) {
  const n = scores.length / stride;
  const candidates = Array.from({ length: n }, (_, i) => i).filter((i) => !allowed || allowed(i));
  candidates.sort((a, b) => scores[b * stride + column] - scores[a * stride + column]);
  return candidates.slice(0, count);
}

/** Remove-top-K and keep-top-K for each method and K; see the module JSDoc. */
export async function faithfulness(
  fit: HeadFit,
  train: LabeledFeatures,
  test: LabeledFeatures,
  options: FaithfulnessOptions = {},
): Promise<{ rows: FaithfulnessRow[]; sample: Int32Array }> {
  const methods = options.methods ?? ["representer", "influence", "tracin-cp", "trak", "knn", "random"];
  const ks = options.ks ?? [1, 5, 10, 20, 50];
  const rng = new Random(options.seed ?? 0);
  const t = Math.min(options.sample ?? 30, test.labels.length), k = fit.numClasses, n = train.labels.length;
  const sample = rng.permutation(test.labels.length).slice(0, t).sort();
  const points = selectRows(test, sample);
  const original = await predictionsAt(fit, points.features);
  const predicted: LabeledFeatures = {
    features: points.features,
    labels: Int32Array.from(original, (o) => o.predicted),
  };
  // every sampled point once per class, for keep-top-K: row j·K + c is (x_j, c)
  const perClass = options.keep === false ? undefined : {
    features: tf.tidy(() => tf.tile(points.features, [1, k]).reshape([t * k, -1]) as tf.Tensor2D),
    labels: Int32Array.from({ length: t * k }, (_, q) => q % k),
  };
  const refitAt = async (alpha: Float32Array, j: number) => {
    const refit = await fitHead(train, {
      lambda: fit.lambda,
      alpha,
      numClasses: k,
      init: fit,
      tol: options.tol,
    });
    const point = points.features.slice([j, 0], [1, -1]) as tf.Tensor2D;
    const row = (await predictionsAt(refit, point))[0];
    point.dispose();
    disposeHead(refit);
    return row;
  };
  const rows: FaithfulnessRow[] = [];
  const totalRefits = methods.length * ks.length * t * (perClass ? 2 : 1);
  let refits = 0;
  const progress = () => options.onProgress?.(++refits, totalRefits);
  try {
    for (const method of methods) {
      const support = await attributionScores(method, fit, train, predicted, options);
      const supportPerClass = perClass
        ? await attributionScores(method, fit, train, perClass, options)
        : undefined;
      for (const K of ks) {
        let flips = 0, marginDrop = 0, probDrop = 0, kept = 0, kl = 0;
        for (let j = 0; j < t; j++) {
          const { predicted: c, logits, probabilities } = original[j];
          const alpha = fit.alpha.slice();
          for (const i of topIndices(support, j, t, K)) alpha[i] = 0;
          const after = await refitAt(alpha, j);
          progress();
          flips += after.predicted !== c ? 1 : 0;
          marginDrop += marginOf(logits, c) - marginOf(after.logits, c);
          probDrop += probabilities[c] - after.probabilities[c];
          if (supportPerClass) {
            const keep = new Float32Array(n);
            for (let cls = 0; cls < k; cls++) {
              for (
                const i of topIndices(supportPerClass, j * k + cls, t * k, K, (i) => train.labels[i] === cls)
              ) {
                keep[i] = fit.alpha[i];
              }
            }
            const onlyKept = await refitAt(keep, j);
            progress();
            kept += onlyKept.predicted === c ? 1 : 0;
            kl += probabilities.reduce(
              (s, p, q) => s + (p > 0 ? p * Math.log(p / Math.max(onlyKept.probabilities[q], 1e-30)) : 0),
              0,
            );
          }
        }
        rows.push({
          method,
          K,
          flipRate: flips / t,
          marginDrop: marginDrop / t,
          probDrop: probDrop / t,
          agreement: perClass ? kept / t : NaN,
          kl: perClass ? kl / t : NaN,
        });
      }
    }
  } finally {
    tf.dispose([points.features, ...(perClass ? [perClass.features] : [])]);
  }
  return { rows, sample };
}
