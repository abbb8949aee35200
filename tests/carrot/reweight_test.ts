import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { constrainedStep, effectiveSampleSizes, reweight } from "../../lib/carrot/reweight.ts";
import { consistencyFromKernel, consistencyKernel } from "../../lib/carrot/consistency.ts";
import { disposeHead, fitHead } from "../../lib/carrot/head.ts";
import { lambdaGridEdge, tuneLambda } from "../../lib/carrot/lambda.ts";
import { metricsFromProbabilities } from "../../lib/carrot/metrics.ts";
import { makeFineGrainedFeatures } from "../../lib/data/synthetic_features.ts";
import { splitFeatures } from "../../lib/split.ts";
import { Random } from "../../lib/random.ts";
import { assertClose } from "../_assert.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

const small = (seed: number, rate = 0.3) =>
  makeFineGrainedFeatures({
    numClasses: 8,
    groups: 2,
    dim: 16,
    perClass: { train: 25, val: 10, test: 20 },
    labelNoise: { rate },
    seed,
  });

function massesAndEss(alpha: Float32Array, labels: Int32Array, k: number) {
  const mass = new Float64Array(k), count = new Float64Array(k);
  labels.forEach((c, i) => [mass[c], count[c]] = [mass[c] + alpha[i], count[c] + 1]);
  return { mass, count, ess: effectiveSampleSizes(alpha, labels, k) };
}

Deno.test("constrainedStep() keeps α ≥ 0, class masses n_c and ESS_c ≥ ρ n_c, and is the Euclidean projection", () => {
  const rng = new Random(1), n = 300, k = 5;
  const labels = Int32Array.from({ length: n }, (_, i) => i % k);
  let alpha: Float32Array = new Float32Array(n).fill(1);
  for (let step = 0; step < 30; step++) {
    const g = Float32Array.from({ length: n }, () => rng.normal() * (1 + step));
    alpha = constrainedStep(alpha, g, labels, k, 2, 0.6);
    const { mass, count, ess } = massesAndEss(alpha, labels, k);
    assert.ok(alpha.every((a) => a >= 0));
    assertClose(mass, count, { rtol: 1e-4, what: "class masses" });
    for (const e of ess) assert.ok(e >= 0.6 - 1e-4, `ESS ratio ${e} < ρ`);
  }
  // projection check: an in-ball candidate is untouched; an out-of-ball one lands on the sphere, along the ray
  const g = Float32Array.from({ length: n }, (_, i) => (i % 7) - 3);
  const free = constrainedStep(new Float32Array(n).fill(1), g, labels, k, 3, 0);
  const projected = constrainedStep(new Float32Array(n).fill(1), g, labels, k, 3, 0.9);
  for (let c = 0; c < k; c++) {
    const members = [...labels.keys()].filter((i) => labels[i] === c);
    const dev = Math.sqrt(members.reduce((s, i) => s + (free[i] - 1) ** 2, 0));
    const devP = Math.sqrt(members.reduce((s, i) => s + (projected[i] - 1) ** 2, 0));
    const radius = Math.sqrt(members.length * (1 / 0.9 - 1));
    assertClose(devP, Math.min(dev, radius), { rtol: 1e-4, what: "distance to uniform" });
    for (const i of members) {
      assertClose(projected[i] - 1, (free[i] - 1) * Math.min(1, radius / dev), { atol: 1e-5 });
    }
  }
});

Deno.test("reweight() with the exact estimator: L_val non-increasing, constraints hold at every step", async () => {
  const data = small(2);
  const seen: Float32Array[] = [];
  const result = await reweight(data.train, data.val, { lambda: 3, outerSteps: 8, rho: 0.7 });
  assert.equal(result.trajectory[0].step, 0);
  assert.equal(result.trajectory[0].essMin, 1);
  for (let s = 1; s < result.trajectory.length; s++) {
    const [prev, cur] = [result.trajectory[s - 1], result.trajectory[s]];
    assert.ok(cur.valLoss <= prev.valLoss, `step ${s}: L_val ${prev.valLoss} → ${cur.valLoss}`);
    assert.ok(cur.essMin >= 0.7 - 1e-4, `step ${s}: ESS ${cur.essMin}`);
  }
  assert.ok(result.trajectory.at(-1)!.valLoss < result.trajectory[0].valLoss, "RRO must lower L_val");
  seen.push(result.alpha);
  const { mass, count, ess } = massesAndEss(result.alpha, data.train.labels, 8);
  assertClose(mass, count, { rtol: 1e-4, what: "final masses" });
  assert.ok(Math.min(...ess) >= 0.7 - 1e-4);
  assert.ok(result.alpha.every((a) => a >= 0));
  assert.deepEqual(result.fit.alpha, result.alpha);
  // mislabeled points lose weight on average
  let noisy = 0, clean = 0;
  data.train.mislabeled.forEach((m, i) => m ? noisy += result.alpha[i] : clean += result.alpha[i]);
  const nNoisy = data.train.mislabeled.reduce((s, v) => s + v, 0);
  assert.ok(
    noisy / nNoisy < clean / (data.train.labels.length - nNoisy),
    "mislabeled points should be down-weighted",
  );
  disposeHead(result.fit);
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});

Deno.test("reweight(): inexact warm-started inner solves follow the exact run; the returned head is stationary", async () => {
  const data = small(3);
  const options = { lambda: 1, outerSteps: 6, rho: 0.5 };
  const exact = await reweight(data.train, data.val, { ...options, tol: 1e-7, cgTol: 1e-7 });
  const inexact = await reweight(data.train, data.val, options); // defaults: 1e-3 inside the loop, polished to 1e-6
  assert.equal(inexact.trajectory.length, exact.trajectory.length);
  let maxDiff = 0;
  inexact.alpha.forEach((a, i) => maxDiff = Math.max(maxDiff, Math.abs(a - exact.alpha[i])));
  assert.ok(maxDiff < 0.02, `max |α_inexact − α_exact| = ${maxDiff}`);
  assertClose(inexact.trajectory.at(-1)!.valLoss, exact.trajectory.at(-1)!.valLoss, { rtol: 2e-3 });
  assert.ok(
    inexact.fit.relativeGradNorm <= 1e-6,
    `returned head: relative gradient ${inexact.fit.relativeGradNorm}`,
  );
  assert.ok(inexact.fit.converged);
  [exact.fit, inexact.fit].forEach(disposeHead);
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});

Deno.test("reweight(): a step that fails with loose inner solves is retried with tighter ones, not a stop", async () => {
  // with small steps (η = 0.05) and solves to relative tolerance 0.1, a refit warm-started from W stops before it
  // moves: every halving of step 1 fails there (the code before the fix stopped at α ≡ 1, "no descent step"), so
  // the run must tighten (1e-3, 1e-5, 1e-6) and go on to where the exact run goes
  const data = small(3);
  const options = { lambda: 0.1, outerSteps: 3, rho: 0.5, stepSize: 0.05, tol: 0.1, cgTol: 0.1 };
  const loose = await reweight(data.train, data.val, options);
  const accepted = loose.trajectory.filter((e) => e.step > 0 && e.accepted);
  assert.ok(accepted.length > 0, `stopped at ${loose.stopReason} after ${loose.trajectory.length - 1} steps`);
  assert.ok(loose.trajectory.at(-1)!.valLoss < loose.trajectory[0].valLoss, "no descent at all");
  assert.ok(loose.alpha.some((a) => Math.abs(a - 1) > 1e-3), "α never moved");
  const exact = await reweight(data.train, data.val, { ...options, tol: 1e-7, cgTol: 1e-7 });
  assert.equal(loose.stopReason, "outer steps");
  assertClose(loose.trajectory.at(-1)!.valLoss, exact.trajectory.at(-1)!.valLoss, { rtol: 1e-2 });
  assert.ok(loose.fit.relativeGradNorm <= 1e-6);
  [loose.fit, exact.fit].forEach(disposeHead);
  tf.dispose([data.train.features, data.val.features, data.test.features]);
  // seed 6: the final refit at λ = 0.1 plateaus in ‖∇J‖ while J still falls; L-BFGS stopped it at relative
  // 4e-5–7e-5 ("precision floor") before its stall test also counted decreases of J and its line-updated logits
  // were refreshed every 16 steps
  const other = small(6);
  const polished = await reweight(other.train, other.val, options);
  assert.ok(polished.fit.relativeGradNorm <= 1e-6, `seed 6: relative ‖∇J‖ ${polished.fit.relativeGradNorm}`);
  disposeHead(polished.fit);
  tf.dispose([other.train.features, other.val.features, other.test.features]);
});

Deno.test("reweight() runs every estimator and the consistency term; options are validated", async () => {
  const data = small(3);
  for (const estimator of ["representer", "tracin", "trak"] as const) {
    const r = await reweight(data.train, data.val, { lambda: 3, outerSteps: 2, estimator });
    for (let s = 1; s < r.trajectory.length; s++) {
      assert.ok(
        r.trajectory[s].objective <= r.trajectory[s - 1].objective,
        `${estimator}: backtracking keeps F monotone`,
      );
    }
    disposeHead(r.fit);
  }
  const withR = await reweight(data.train, data.val, { lambda: 3, outerSteps: 3, gamma: 1 });
  assert.ok(withR.trajectory.every((e, s) => s === 0 || e.objective <= withR.trajectory[s - 1].objective));
  disposeHead(withR.fit);
  await assert.rejects(reweight(data.train, data.val, { lambda: 3, rho: 1.5 }), /rho must lie in \[0, 1\]/);
  await assert.rejects(reweight(data.train, data.val, { lambda: 3, gamma: -1 }), /gamma must be ≥ 0/);
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});

Deno.test("consistency gradient matches central finite differences of R(α) with the kernel held fixed", async () => {
  const data = small(4);
  const fit = await fitHead(data.train, { lambda: 2 });
  const b = consistencyKernel(fit, data.train, data.val);
  const rng = new Random(3);
  const alpha = Float32Array.from({ length: data.train.labels.length }, () => 0.5 + rng.uniform());
  const base = await consistencyFromKernel(b, alpha, data.val.labels, 8);
  assert.ok(Number.isFinite(base.value));
  for (const i of [0, 17, 101, 150]) {
    const h = 1e-2;
    const up = alpha.slice(), down = alpha.slice();
    up[i] += h;
    down[i] -= h;
    const fd = ((await consistencyFromKernel(b, up, data.val.labels, 8)).value -
      (await consistencyFromKernel(b, down, data.val.labels, 8)).value) / (2 * h);
    assertClose(base.gradient[i], fd, { atol: 1e-6, rtol: 2e-2, what: `∂R/∂α_${i}` });
  }
  b.dispose();
  disposeHead(fit);
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});

Deno.test("tuneLambda() picks the grid λ with the lowest validation NLL; splitFeatures() is stratified", async () => {
  const data = small(5, 0);
  const tuned = await tuneLambda(data.train, data.val, { grid: [0.1, 3, 100] });
  const best = tuned.rows.reduce((a, r) => (r.nll < a.nll ? r : a));
  assert.equal(tuned.lambda, best.lambda);
  assert.equal(tuned.fit.lambda, best.lambda);
  assert.deepEqual(tuned.rows.map((r) => r.lambda), [0.1, 3, 100]);
  assert.equal(tuned.lambda, 3, "this problem's optimum lies inside the grid");
  assert.equal(lambdaGridEdge(tuned), undefined);
  disposeHead(tuned.fit);
  // a grid far above the optimum, not extended: the smallest λ wins, and the warning names it and the way out
  const above = await tuneLambda(data.train, data.val, { grid: [1e4, 1e5, 1e6], extend: 0 });
  assert.equal(above.lambda, 1e4);
  assert.match(lambdaGridEdge(above)!, /λ = 1\.00e\+4 is the smallest value of the λ grid .*--lambdaGrid/);
  assert.equal(lambdaGridEdge({ lambda: 1e4, rows: above.rows.slice(0, 2) }), undefined, "2 values: no edge");
  disposeHead(above.fit);
  const split = splitFeatures(data.train, { perClass: 5 }, 1);
  assert.equal(split.val.labels.length, 40);
  for (let c = 0; c < 8; c++) assert.equal(split.val.labels.filter((y) => y === c).length, 5);
  assert.equal(split.train.labels.length + split.val.labels.length, data.train.labels.length);
  assert.deepEqual(splitFeatures(data.train, { perClass: 5 }, 1).valIndices, split.valIndices);
  tf.dispose([
    data.train.features,
    data.val.features,
    data.test.features,
    split.train.features,
    split.val.features,
  ]);
});

Deno.test("metricsFromProbabilities(): accuracy, per-class accuracy, 15-bin ECE and NLL by hand", () => {
  const p = Float32Array.from([0.9, 0.1, 0.6, 0.4, 0.3, 0.7, 0.2, 0.8]); // predictions 0, 0, 1, 1
  const m = metricsFromProbabilities(p, Int32Array.from([0, 1, 1, 1]), 2);
  assertClose(m.accuracy, 0.75, { atol: 1e-12 });
  assertClose(m.perClassAccuracy, (1 + 2 / 3) / 2, { atol: 1e-12 });
  // bins: 0.9 → bin 13 (acc 1), 0.6 → bin 9 (acc 0), 0.7 → bin 10 (acc 1), 0.8 → bin 12 (acc 1)
  assertClose(m.ece, (0.1 + 0.6 + 0.3 + 0.2) / 4, { atol: 1e-6 });
  assertClose(m.nll, -(Math.log(0.9) + Math.log(0.4) + Math.log(0.7) + Math.log(0.8)) / 4, { atol: 1e-6 });
});
