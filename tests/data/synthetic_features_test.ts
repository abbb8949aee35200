import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../../lib/backend.ts";
import { disposeHead, fitHead, headLogits } from "../../lib/carrot/head.ts";
import { checkLabels } from "../../lib/carrot/labeled_features.ts";
import {
  cubSizedPreset,
  type FineGrainedFeatures,
  type FineGrainedOptions,
  makeFineGrainedFeatures,
} from "../../lib/data/synthetic_features.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

/** Generates, hands the data and the feature rows to `use`, then frees the three tensors. */
async function withFeatures<T>(
  options: FineGrainedOptions,
  use: (data: FineGrainedFeatures, rows: { train: Float32Array; val: Float32Array; test: Float32Array }) => T,
): Promise<T> {
  const data = makeFineGrainedFeatures(options);
  try {
    const [train, val, test] = await Promise.all(
      [data.train, data.val, data.test].map((s) => s.features.data() as Promise<Float32Array>),
    );
    return await use(data, { train, val, test });
  } finally {
    tf.dispose([data.train.features, data.val.features, data.test.features]);
  }
}

function classCounts(labels: Int32Array, numClasses: number): number[] {
  const counts = new Array(numClasses).fill(0);
  for (const y of labels) counts[y]++;
  return counts;
}

/** |observed − p| ≤ 4 binomial standard deviations for a fraction over `trials`. */
function assertBinomial(successes: number, trials: number, p: number, what: string): void {
  const observed = successes / trials, tolerance = 4 * Math.sqrt(p * (1 - p) / trials);
  assert.ok(Math.abs(observed - p) <= tolerance, `${what}: ${observed} is not within ${tolerance} of ${p}`);
}

Deno.test("makeFineGrainedFeatures() is deterministic by seed and frees what the caller disposes", async () => {
  const before = tf.memory().numTensors;
  const snapshot = (seed: number) =>
    withFeatures({ seed }, (data, rows) => ({
      rows,
      labels: [data.train.labels, data.train.trueLabels, data.val.labels, data.test.labels],
      flags: [data.train.mislabeled, data.train.shortcut],
    }));
  const a = await snapshot(1), again = await snapshot(1), other = await snapshot(2);
  assert.deepEqual(again, a);
  assert.notDeepEqual(other.rows.train, a.rows.train);
  assert.notDeepEqual(other.rows.test, a.rows.test);
  assert.notDeepEqual(other.labels[0], a.labels[0]);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("makeFineGrainedFeatures() has the documented shapes, balanced classes and clean val/test", async () => {
  await withFeatures({ seed: 3 }, (data, rows) => {
    const { numClasses: K, dim } = data.config;
    assert.deepEqual([K, data.config.groups, dim], [50, 10, 64]);
    for (const [name, perClass] of [["train", 30], ["val", 10], ["test", 30]] as const) {
      const split = data[name];
      assert.deepEqual(split.features.shape, [perClass * K, dim]);
      assert.equal(split.labels.length, perClass * K);
      assert.deepEqual(classCounts(split.trueLabels, K), new Array(K).fill(perClass));
      checkLabels(split, K, name);
      assert.ok(rows[name].every(Number.isFinite), `${name} has non-finite features`);
    }
    assert.deepEqual(data.val.labels, data.val.trueLabels);
    assert.deepEqual(data.test.labels, data.test.trueLabels);
    assert.deepEqual(Array.from(data.groupOf.subarray(0, 6)), [0, 0, 0, 0, 0, 1]);
    assert.deepEqual(Array.from(data.shortcutColumns), [56, 57, 58, 59, 60, 61, 62, 63]);
  });
  await withFeatures({ numClasses: 7, groups: 3, splitSizes: { train: 23, val: 7, test: 9 } }, (data) => {
    assert.deepEqual(classCounts(data.train.trueLabels, 7), [4, 4, 3, 3, 3, 3, 3]);
    assert.deepEqual(Array.from(data.groupOf), [0, 0, 0, 1, 1, 2, 2]);
  });
});

Deno.test("the cub preset has CUB-200 sizes, and options override it field by field", async () => {
  await withFeatures({ preset: "cub", seed: 1, nuisance: { rank: 2 } }, (data) => {
    assert.deepEqual(data.train.features.shape, [5994, 768]);
    assert.deepEqual(data.val.features.shape, [2000, 768]);
    assert.deepEqual(data.test.features.shape, [5794, 768]);
    const counts = classCounts(data.train.trueLabels, 200);
    assert.deepEqual([counts.filter((c) => c === 30).length, counts.filter((c) => c === 29).length], [
      194,
      6,
    ]);
    assert.deepEqual(data.config.separation, { group: 12, class: cubSizedPreset.separation?.class });
    assert.deepEqual(data.config.nuisance, { rank: 2, scale: 4 });
  });
});

Deno.test("train flags match labels, noise rates are binomial, and within-group flips go to siblings", async () => {
  const perClass = { train: 100, val: 1, test: 1 };
  const flips = (mode: "within-group" | "uniform", rate: number) =>
    withFeatures({ seed: 4, perClass, labelNoise: { rate, mode }, shortcut: { rate: 0.3 } }, (data) => {
      const { labels, trueLabels, mislabeled, shortcut } = data.train;
      checkLabels(data.train, data.config.numClasses, `${mode} train`);
      let flipped = 0, toSibling = 0;
      for (let i = 0; i < labels.length; i++) {
        assert.equal(mislabeled[i], Number(labels[i] !== trueLabels[i]), `flag of point ${i}`);
        flipped += mislabeled[i];
        toSibling += Number(mislabeled[i] === 1 && data.groupOf[labels[i]] === data.groupOf[trueLabels[i]]);
      }
      assertBinomial(flipped, labels.length, rate, `${mode} noise rate`);
      assertBinomial(shortcut.reduce((a, b) => a + b, 0), labels.length, 0.3, "shortcut rate");
      return { flipped, toSibling, mislabeled, labels };
    });
  const within = await flips("within-group", 0.4);
  assert.ok(within.toSibling / within.flipped >= 0.85, `sibling share ${within.toSibling / within.flipped}`);
  assertBinomial(within.toSibling, within.flipped, 0.9, "sibling share of within-group flips");
  const uniform = await flips("uniform", 0.4);
  assertBinomial(uniform.toSibling, uniform.flipped, 4 / 49, "sibling share of uniform flips");
  // Flips are nested across rates with the same new labels, so noise levels are paired experiments.
  const lower = await flips("within-group", 0.2);
  for (let i = 0; i < lower.labels.length; i++) {
    if (lower.mislabeled[i]) assert.equal(lower.labels[i], within.labels[i], `flip of point ${i}`);
  }
});

Deno.test("labelNoise and shortcut options leave the other draws unchanged", async () => {
  const draw = (options: FineGrainedOptions) =>
    withFeatures({ seed: 5, ...options }, (data, rows) => ({ data, rows }));
  const base = await draw({});
  const noisier = await draw({ labelNoise: { rate: 0.4, mode: "uniform" } });
  assert.deepEqual(noisier.rows, base.rows);
  const noShortcut = await draw({ shortcut: { rate: 0 } });
  assert.deepEqual(noShortcut.data.train.labels, base.data.train.labels);
  assert.deepEqual(noShortcut.rows.test, base.rows.test);
  const { dim } = base.data.config, first = base.data.shortcutColumns[0];
  for (let i = 0; i < base.data.train.labels.length; i++) {
    const row = (r: Float32Array, to: number) => Array.from(r.subarray(i * dim, i * dim + to));
    assert.deepEqual(
      row(noShortcut.rows.train, first),
      row(base.rows.train, first),
      `semantic part of row ${i}`,
    );
    if (!base.data.train.shortcut[i]) {
      assert.deepEqual(row(noShortcut.rows.train, dim), row(base.rows.train, dim));
    }
  }
});

Deno.test("the shortcut predicts the true class on flagged train points only, never in val or test", async () => {
  await withFeatures({ seed: 6, perClass: { train: 60 }, shortcut: { rate: 0.5 } }, (data, rows) => {
    const { numClasses: K, dim } = data.config, columns = data.shortcutColumns, s = columns.length;
    const flagged = Array.from(data.train.shortcut.keys()).filter((i) => data.train.shortcut[i]);
    // Probe: class means of the shortcut coordinates over the first half of the flagged points (true labels).
    const probe = new Float64Array(K * s), counts = new Float64Array(K);
    const fitPoints = flagged.slice(0, flagged.length >> 1), heldOut = flagged.slice(flagged.length >> 1);
    for (const i of fitPoints) {
      counts[data.train.trueLabels[i]]++;
      for (let j = 0; j < s; j++) probe[data.train.trueLabels[i] * s + j] += rows.train[i * dim + columns[j]];
    }
    probe.forEach((v, k) => probe[k] = v / Math.max(1, counts[Math.floor(k / s)]));
    const accuracy = (r: Float32Array, y: Int32Array, points: number[]) => {
      let correct = 0;
      for (const i of points) {
        let best = -1, bestDistance = Infinity;
        for (let k = 0; k < K; k++) {
          let distance = 0;
          for (let j = 0; j < s; j++) distance += (r[i * dim + columns[j]] - probe[k * s + j]) ** 2;
          if (distance < bestDistance) [best, bestDistance] = [k, distance];
        }
        correct += Number(best === y[i]);
      }
      return correct / points.length;
    };
    const all = (n: number) => Array.from({ length: n }, (_, i) => i);
    const unflagged = all(data.train.labels.length).filter((i) => !data.train.shortcut[i]);
    const chanceBound = (n: number) => 1 / K + 4 * Math.sqrt((1 / K) * (1 - 1 / K) / n);
    const flaggedAccuracy = accuracy(rows.train, data.train.trueLabels, heldOut);
    assert.ok(flaggedAccuracy > 0.8, `held-out flagged train points: ${flaggedAccuracy}`);
    for (
      const [what, r, y, points] of [
        ["unflagged train", rows.train, data.train.trueLabels, unflagged],
        ["val", rows.val, data.val.trueLabels, all(data.val.labels.length)],
        ["test", rows.test, data.test.trueLabels, all(data.test.labels.length)],
      ] as const
    ) {
      const a = accuracy(r, y, points);
      assert.ok(a <= chanceBound(points.length), `${what}: shortcut accuracy ${a} above chance`);
    }
  });
});

Deno.test("the default problem is fine-grained: groups are easy, classes within a group are not", async () => {
  await withFeatures({ seed: 7, labelNoise: { rate: 0 } }, async (data, rows) => {
    const { numClasses: K, dim } = data.config, { labels } = data.train;
    const means = new Float64Array(K * dim);
    for (let i = 0; i < labels.length; i++) {
      for (let j = 0; j < dim; j++) means[labels[i] * dim + j] += rows.train[i * dim + j] / 30;
    }
    let classHits = 0, groupHits = 0;
    const t = data.test.labels.length;
    for (let i = 0; i < t; i++) {
      let best = -1, bestDistance = Infinity;
      for (let k = 0; k < K; k++) {
        let distance = 0;
        for (let j = 0; j < dim; j++) distance += (rows.test[i * dim + j] - means[k * dim + j]) ** 2;
        if (distance < bestDistance) [best, bestDistance] = [k, distance];
      }
      classHits += Number(best === data.test.labels[i]);
      groupHits += Number(data.groupOf[best] === data.groupOf[data.test.labels[i]]);
    }
    assert.ok(groupHits / t > 0.95, `nearest-class-mean group accuracy ${groupHits / t}`);
    assert.ok(classHits / t > 10 / K && classHits / t < 0.8, `nearest-class-mean accuracy ${classHits / t}`);
    // Linear probe (λ = 10): clearly above chance, clearly below perfect (≈ 0.70 measured at several seeds).
    const fit = await fitHead(data.train, { lambda: 10, numClasses: K, tol: 1e-5 });
    const predicted = tf.tidy(() => tf.argMax(headLogits(fit, data.test.features), 1));
    const p = await predicted.data();
    tf.dispose(predicted);
    disposeHead(fit);
    const accuracy = Array.from(p).filter((k, i) => k === data.test.labels[i]).length / t;
    assert.ok(accuracy > 0.55 && accuracy < 0.85, `linear-probe test accuracy ${accuracy}`);
  });
});

Deno.test("makeFineGrainedFeatures() throws RangeError naming the bad option", () => {
  assert.throws(
    () => makeFineGrainedFeatures({ groups: 60 }),
    /groups = 60; use an integer in 1\.\.numClasses/,
  );
  assert.throws(() => makeFineGrainedFeatures({ labelNoise: { rate: 1.5 } }), /labelNoise\.rate = 1\.5/);
  assert.throws(() => makeFineGrainedFeatures({ dim: 8 }), /dim = 8; use an integer > shortcut\.dims/);
  assert.throws(() => makeFineGrainedFeatures({ separation: { class: -1 } }), RangeError);
  assert.throws(
    () => makeFineGrainedFeatures({ labelNoise: { mode: "sibling" as "uniform" } }),
    /labelNoise\.mode = "sibling"/,
  );
  assert.throws(() => makeFineGrainedFeatures({ perClass: { val: 0 } }), /size of val = 0/);
});
