/**
 * `benchConsistency()`: why the attribution-consistency regulariser lowered accuracy (issue 13), and whether its
 * other forms do better. On `makeFineGrainedFeatures` (seeds 0, 1, 2; within-group label noise 0.2 and 0.4; 5 or
 * 30 validation points per class), at the ERM head with λ tuned on val, it compares ∂R/∂α of every
 * `ConsistencyForm` with g = ∂L_val/∂α (Theorem B, CG):
 *   cos          cosine of ∂R/∂α and g; "cos c" the same after removing each class's mean (RRO's step rescales
 *                every class to its mass, so a per-class constant in the gradient has no effect);
 *   AUROC        of ∂R/∂α for the mislabelled and for the shortcut points (∂R/∂α > 0 pushes α_i down, so
 *                AUROC > 0.5 means R pushes the harmful points down); the "g" rows give the same for g;
 *   ‖∂R‖/‖g‖     the scale ratio (RRO uses g + γ ∂R/∂α; the experiment's γ is 10);
 *   mean mis / clean   the mean ∂R/∂α on mislabelled and on clean points;
 *   r(resid)     Pearson correlation, within classes, of ∂R/∂α with the residual 1 − p_{i,y_i}.
 * Mean ± std over the three seeds. A second table gives the mechanism figures of the pairwise kernel b.
 */
import * as tf from "@tensorflow/tfjs";
import { type ConsistencyForm, consistencyFromKernel, consistencyKernel } from "../lib/carrot/consistency.ts";
import { detectionMetrics } from "../lib/carrot/debug.ts";
import { disposeHead, headProbabilities } from "../lib/carrot/head.ts";
import { validationAlphaGradient } from "../lib/carrot/influence.ts";
import { tuneLambda } from "../lib/carrot/lambda.ts";
import { type FineGrainedFeatures, makeFineGrainedFeatures } from "../lib/data/synthetic_features.ts";
import { log } from "../lib/progress.ts";
import { meanStd, pearson } from "../lib/stats.ts";

const forms: readonly ConsistencyForm[] = ["pairwise", "pairwise-cosine", "own-class"];
const columns = [
  "cos",
  "cos c",
  "AUROC mis",
  "AUROC shortcut",
  "‖∂R‖/‖g‖",
  "mean mis",
  "mean clean",
  "r(resid)",
] as const;
const mechanismColumns = [
  "λ",
  "b⁺ mass from label c_j",
  "mislabelled share of it",
  "mislabelled share of points",
  "residual mis",
  "residual clean",
  "kernel same class",
  "same group",
  "other group",
] as const;

type Stats<C extends string> = Record<C, number[]>;

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};
const cosine = (a: ArrayLike<number>, b: ArrayLike<number>) => dot(a, b) / Math.sqrt(dot(a, a) * dot(b, b));

/** x minus the mean of x over each class. */
function classCentred(x: ArrayLike<number>, labels: Int32Array, numClasses: number): Float64Array {
  const sum = new Float64Array(numClasses), count = new Float64Array(numClasses);
  labels.forEach((c, i) => [sum[c], count[c]] = [sum[c] + x[i], count[c] + 1]);
  return Float64Array.from(labels, (c, i) => x[i] - sum[c] / count[c]);
}

function meanWhere(x: ArrayLike<number>, flags: Uint8Array, want: number): number {
  let s = 0, c = 0;
  flags.forEach((f, i) => f === want && (s += x[i], c++));
  return s / c;
}

/** The columns of `columns` for one gradient against g. */
function alignment(
  grad: Float32Array,
  g: Float32Array,
  data: FineGrainedFeatures,
  residual: Float64Array,
): Record<(typeof columns)[number], number> {
  const { labels, mislabeled, shortcut } = data.train, k = data.config.numClasses;
  const centred = classCentred(grad, labels, k);
  return {
    "cos": cosine(grad, g),
    "cos c": cosine(centred, classCentred(g, labels, k)),
    "AUROC mis": detectionMetrics(grad, mislabeled).auroc,
    "AUROC shortcut": detectionMetrics(grad, shortcut).auroc,
    "‖∂R‖/‖g‖": Math.sqrt(dot(grad, grad) / dot(g, g)),
    "mean mis": meanWhere(grad, mislabeled, 1),
    "mean clean": meanWhere(grad, mislabeled, 0),
    "r(resid)": pearson(centred, classCentred(residual, labels, k)),
  };
}

/** Where the positive mass of the pairwise kernel comes from, and how the kernel sees the class structure. */
async function mechanism(
  b: tf.Tensor2D,
  data: FineGrainedFeatures,
  residual: Float64Array,
  lambda: number,
): Promise<Record<(typeof mechanismColumns)[number], number>> {
  const { train, val, groupOf } = data, m = val.labels.length;
  const kernelT = tf.tidy(() => tf.add(tf.matMul(train.features, val.features, false, true), 1));
  const [bb, kernel] = [await b.data(), await kernelT.data()];
  kernelT.dispose();
  let own = 0, all = 0, ownMislabelled = 0;
  const kernelSum = { cls: 0, grp: 0, other: 0 }, kernelCount = { cls: 0, grp: 0, other: 0 };
  train.labels.forEach((y, i) => {
    for (let j = 0; j < m; j++) {
      const x = Math.max(bb[i * m + j], 0), c = val.labels[j], t = train.trueLabels[i];
      all += x;
      if (y === c) [own, ownMislabelled] = [own + x, ownMislabelled + x * train.mislabeled[i]];
      const key = t === c ? "cls" : groupOf[t] === groupOf[c] ? "grp" : "other";
      kernelSum[key] += kernel[i * m + j];
      kernelCount[key]++;
    }
  });
  return {
    "λ": lambda,
    "b⁺ mass from label c_j": own / all,
    "mislabelled share of it": ownMislabelled / own,
    "mislabelled share of points": train.mislabeled.reduce((s, f) => s + f, 0) / train.labels.length,
    "residual mis": meanWhere(residual, train.mislabeled, 1),
    "residual clean": meanWhere(residual, train.mislabeled, 0),
    "kernel same class": kernelSum.cls / kernelCount.cls,
    "same group": kernelSum.grp / kernelCount.grp,
    "other group": kernelSum.other / kernelCount.other,
  };
}

function push<C extends string>(into: Map<string, Stats<C>>, key: string, values: Record<C, number>): void {
  const stats = into.get(key) ?? ({} as Stats<C>);
  for (const [c, v] of Object.entries(values) as [C, number][]) (stats[c] ??= []).push(v);
  into.set(key, stats);
}

function cell(values: number[]): string {
  const { mean, std } = meanStd(values);
  const abs = Math.abs(mean);
  const digits = (x: number) => (abs !== 0 && (abs < 1e-2 || abs >= 1e3) ? x.toExponential(1) : x.toFixed(3));
  return `${digits(mean)} ± ${digits(std)}`;
}

function table<C extends string>(head: string[], cols: readonly C[], rows: Map<string, Stats<C>>): void {
  log(`| ${[...head, ...cols].join(" | ")} |`);
  log(`|${[...head, ...cols].map(() => "---").join("|")}|`);
  for (const [key, stats] of rows) {
    log(`| ${key.split("|").join(" | ")} | ${cols.map((c) => cell(stats[c])).join(" | ")} |`);
  }
}

/** Prints the alignment and mechanism tables of the consistency regularisers (see the module JSDoc). */
export async function benchConsistency(): Promise<void> {
  const rows = new Map<string, Stats<(typeof columns)[number]>>();
  const mechanisms = new Map<string, Stats<(typeof mechanismColumns)[number]>>();
  const start = performance.now();
  for (const rate of [0.2, 0.4]) {
    for (const v of [5, 30]) {
      for (const seed of [0, 1, 2]) {
        const data = makeFineGrainedFeatures({ seed, labelNoise: { rate }, perClass: { val: v } });
        const { train, val } = data;
        const { fit } = await tuneLambda(train, val);
        const g = (await validationAlphaGradient(fit, train, val, { solver: "cg" })).gradient;
        const pOwn = tf.tidy(() =>
          tf.sum(tf.mul(headProbabilities(fit, train.features), tf.oneHot(train.labels, fit.numClasses)), 1)
        );
        const residual = Float64Array.from(await pOwn.data(), (p) => 1 - p);
        pOwn.dispose();
        push(rows, `${rate}|${v}|g = ∂L_val/∂α`, alignment(g, g, data, residual));
        for (const form of forms) {
          const b = consistencyKernel(fit, train, val, { form });
          const r = await consistencyFromKernel(b, fit.alpha, val.labels, fit.numClasses, {
            form,
            trainLabels: train.labels,
          });
          push(rows, `${rate}|${v}|${form}`, alignment(r.gradient, g, data, residual));
          if (form === "pairwise") {
            push(mechanisms, `${rate}|${v}`, await mechanism(b, data, residual, fit.lambda));
          }
          b.dispose();
        }
        disposeHead(fit);
        tf.dispose([train.features, val.features, data.test.features]);
      }
    }
  }
  log(
    `consistency regularisers at the ERM head vs g = ∂L_val/∂α (synthetic fine-grained, n = 1500, K = 50, ` +
      `seeds 0–2, mean ± std; ${((performance.now() - start) / 1000).toFixed(0)} s):`,
  );
  table(["noise", "val/class", "gradient"], columns, rows);
  log("\nmechanism (pairwise kernel b, kernel h_i·h_j + 1 by the true classes of i and j):");
  table(["noise", "val/class"], mechanismColumns, mechanisms);
}
