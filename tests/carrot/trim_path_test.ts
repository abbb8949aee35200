import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { carrotReweight, describeCandidate } from "../../lib/carrot/carrot.ts";
import { crossFitReweight } from "../../lib/carrot/crossfit.ts";
import { effectiveSampleSizes } from "../../lib/carrot/reweight.ts";
import { gradedTrimAlpha } from "../../lib/carrot/trim.ts";
import { disposeHead } from "../../lib/carrot/head.ts";
import { assertClose } from "../_assert.ts";
import { assertScoredAlone, trimOptions, trimProblem } from "./_trim_candidates.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

Deno.test("carrotReweight(): trimPath runs the self-weighted γ = 0 path from the graded trim; its steps are candidates", async () => {
  const data = trimProblem(), rho = 0.3;
  const options = { ...trimOptions, outerSteps: 2, rho };
  const { lambda, numClasses, folds, trimFractions: fractions } = options;
  const before = tf.memory().numTensors;
  const run = await carrotReweight(data.train, data.val, { ...options, trimPath: true });
  const graded = gradedTrimAlpha(run.trimLosses!, data.train.labels, fractions);
  const steps = run.trimPath!.steps;
  // it starts at the graded trim of the out-of-fold ranking ...
  assert.deepEqual(steps[0].alpha, graded);
  // ... and is the path crossFitReweight takes from there, self-weighted at γ = 0 on the paths' folds
  const direct = await crossFitReweight(data.train, {
    lambda,
    numClasses,
    folds,
    rho,
    tol: trimOptions.tol,
    heldOutWeighting: "self",
    gamma: 0,
    outerSteps: 2,
    start: { alpha: graded, step: 0 },
  });
  assert.equal(steps.length, direct.trajectory.length);
  steps.forEach((entry, s) =>
    assertClose(entry.objective, direct.trajectory[s].objective, { rtol: 1e-4, what: `L_cf at step ${s}` })
  );
  const accepted = steps.filter((e) => e.step > 0 && e.accepted);
  assert.ok(accepted.length > 0, "no step from the graded trim was accepted at noise 0.4");
  for (let s = 1; s < steps.length; s++) {
    const alpha = steps[s].alpha;
    assert.ok(steps[s].objective <= steps[s - 1].objective, `step ${s}: L_cf increased`);
    // what the trim dropped stays dropped (exponentiated gradient), masses and the ESS floor hold
    assert.ok(graded.every((a, i) => a > 0 || alpha[i] === 0), `step ${s}: a dropped point came back`);
    const mass = new Float64Array(numClasses), count = new Float64Array(numClasses);
    data.train.labels.forEach((c, i) => [mass[c], count[c]] = [mass[c] + alpha[i], count[c] + 1]);
    mass.forEach((m, c) =>
      assert.ok(Math.abs(m - count[c]) < 1e-3 * count[c], `step ${s}: mass of class ${c}`)
    );
    const ess = effectiveSampleSizes(alpha, data.train.labels, numClasses);
    assert.ok(ess.every((e) => e >= rho - 1e-4), `step ${s}: ESS below ρ`);
  }
  // its accepted steps are the last candidates, labelled, each scored like any other
  const rows = run.selection.rows, first = rows.length - accepted.length;
  assert.deepEqual(
    rows.slice(first).map((r) => r.label),
    accepted.map((e) => ({ weighting: "self", gamma: 0, from: "graded trim", step: e.step })),
  );
  assert.equal(describeCandidate(rows[first].label), "self, γ 0, step 1 from the graded trim");
  await assertScoredAlone(run, data, accepted.map((_, c) => first + c), accepted.map((e) => e.alpha), {
    lambda,
    numClasses,
  });
  disposeHead(run.fit);
  // off (the default): no such path
  const off = await carrotReweight(data.train, data.val, options);
  assert.equal(off.trimPath, undefined);
  assert.ok(off.selection.rows.every((r) => r.label.from === undefined));
  disposeHead(off.fit);
  await assert.rejects(
    carrotReweight(data.train, data.val, { ...options, trimPath: true, trimFractions: [0.2] }),
    /trimPath needs the graded trim as a candidate/,
  );
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  tf.dispose([data.train.features, data.val.features, data.test.features]);
});
