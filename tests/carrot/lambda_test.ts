import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { disposeHead } from "../../lib/carrot/head.ts";
import {
  defaultLambdaExtensionMinDecrease,
  defaultLambdaGrid,
  lambdaGridEdge,
  tuneLambda,
} from "../../lib/carrot/lambda.ts";
import { gateProblem } from "./_trim_candidates.ts";
import { makeFineGrainedFeatures } from "../../lib/data/synthetic_features.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

const data = () =>
  makeFineGrainedFeatures({
    numClasses: 8,
    groups: 2,
    dim: 16,
    perClass: { train: 25, val: 10, test: 20 },
    labelNoise: { rate: 0.3 },
    seed: 0,
  });

Deno.test("tuneLambda() extends the grid past the end where its best λ lies while the validation NLL falls by > 0.1%", async () => {
  const { train, val, test } = data();
  const inside = await tuneLambda(train, val, { grid: [0.1, 3, 100] });
  assert.deepEqual(inside.rows.map((r) => r.lambda), [0.1, 3, 100], "a λ inside the grid adds no value");
  disposeHead(inside.fit);
  for (const [grid, direction] of [[[1e4, 1e5, 1e6], "down"], [[1e-3, 1e-2, 1e-1], "up"]] as const) {
    const tuned = await tuneLambda(train, val, { grid });
    const lambdas = tuned.rows.map((r) => r.lambda), nll = tuned.rows.map((r) => r.nll);
    const at = lambdas.indexOf(tuned.lambda);
    assert.ok(
      tuned.lambda > 0.1 && tuned.lambda < 1e4,
      `${direction}: λ ${tuned.lambda} left the grid's end`,
    );
    assert.equal(tuned.fit.lambda, tuned.lambda);
    // the extension goes by the grid's ratio (10) and stops at the first value that does not lower the best NLL by
    // more than the margin; every other value tried has a higher NLL than the kept one
    const extension = direction === "down"
      ? lambdas.slice(0, lambdas.length - 3).reverse()
      : lambdas.slice(3);
    extension.forEach((lambda, j) => {
      const expected = direction === "down" ? 1e4 / 10 ** (j + 1) : 0.1 * 10 ** (j + 1);
      assert.ok(Math.abs(lambda / expected - 1) < 1e-9, `${direction}: value ${j + 1} is ${lambda}`);
    });
    assert.equal(extension.at(-1), direction === "down" ? lambdas[0] : lambdas.at(-1));
    const last = lambdas.indexOf(extension.at(-1)!);
    assert.ok(last !== at, `${direction}: it stopped one value past the kept λ`);
    assert.ok(
      nll[last] >= nll[at] * (1 - defaultLambdaExtensionMinDecrease),
      `${direction}: stopped by the margin`,
    );
    nll.forEach((value, i) =>
      i === last || assert.ok(value >= nll[at], `${direction}: λ ${lambdas[i]} is lower`)
    );
    assert.equal(lambdaGridEdge(tuned), undefined, `${direction}: no warning once the minimum is inside`);
    disposeHead(tuned.fit);
  }
  const capped = await tuneLambda(train, val, { grid: [1e4, 1e5, 1e6], extend: 2 });
  assert.deepEqual(capped.rows.map((r) => Number(r.lambda.toPrecision(12))), [100, 1000, 1e4, 1e5, 1e6]);
  assert.equal(capped.lambda, 100);
  assert.match(
    lambdaGridEdge(capped)!,
    /λ = 100 is the smallest value of the λ grid \(5 values.*--lambdaExtend/,
  );
  disposeHead(capped.fit);
  const fixed = await tuneLambda(train, val, { grid: [1e4, 1e5] }); // fewer than 3 values: never extended
  assert.deepEqual(fixed.rows.map((r) => r.lambda), [1e4, 1e5]);
  disposeHead(fixed.fit);
  await assert.rejects(() => tuneLambda(train, val, { extend: -1 }), /extend must be a non-negative integer/);
  tf.dispose([train.features, val.features, test.features]);
});

Deno.test("tuneLambda() on features scaled by c finds λ near c²·λ: L2-normalised embeddings get a tuned head", async () => {
  const { train, val, test } = data();
  const raw = await tuneLambda(train, val);
  const c = 0.01; // ‖h‖ ≈ 4 here; 0.04 after scaling, the scale of embeddings normalised to ‖h‖ = 1 in d ≈ 10³
  const scale = (x: tf.Tensor2D) => tf.mul(x, c) as tf.Tensor2D;
  const [scaledTrain, scaledVal] = [{ ...train, features: scale(train.features) }, {
    ...val,
    features: scale(val.features),
  }];
  const scaled = await tuneLambda(scaledTrain, scaledVal);
  const gridOnly = await tuneLambda(scaledTrain, scaledVal, { extend: 0 });
  const bestNll = (t: typeof raw) => t.rows.find((r) => r.lambda === t.lambda)!.nll;
  // the objective is invariant under h → c h, W → W / c, λ → c² λ but for the (unscaled) bias column
  const ratio = scaled.lambda / (c * c * raw.lambda);
  assert.ok(ratio > 1 / 3.2 && ratio < 3.2, `λ ${scaled.lambda} against c²λ ${c * c * raw.lambda}`);
  assert.ok(scaled.lambda < Math.min(...defaultLambdaGrid), "found below the default grid");
  assert.ok(Math.abs(bestNll(scaled) / bestNll(raw) - 1) < 0.03, `NLL ${bestNll(scaled)} vs ${bestNll(raw)}`);
  assert.ok(bestNll(gridOnly) > 1.2 * bestNll(raw), "without the extension the head is over-regularised");
  assert.match(lambdaGridEdge(gridOnly)!, /smallest value of the λ grid/);
  for (const t of [raw, scaled, gridOnly]) disposeHead(t.fit);
  tf.dispose([train.features, val.features, test.features, scaledTrain.features, scaledVal.features]);
});

Deno.test("tuneLambda() does not walk towards an unregularised head where the validation NLL is flat past the grid", async () => {
  // noise 0.4, 600 points in d = 16: the NLL falls by 10⁻⁶–10⁻⁴ per decade below λ = 0.01 towards the MLE's
  const { train, val, test } = gateProblem(0.4);
  const tuned = await tuneLambda(train, val);
  const rows = new Map(tuned.rows.map((r) => [Number(r.lambda.toPrecision(6)), r.nll]));
  assert.equal(Number(tuned.lambda.toPrecision(6)), 0.01, `λ ${tuned.lambda}`);
  assert.deepEqual([...rows.keys()].slice(0, 3), [0.00316228, 0.01, 0.0316228], "one value past 0.01 tried");
  const [below, kept] = [rows.get(0.00316228)!, rows.get(0.01)!];
  assert.ok(below < kept && below > kept * (1 - defaultLambdaExtensionMinDecrease), `${below} vs ${kept}`);
  assert.equal(lambdaGridEdge(tuned), undefined);
  disposeHead(tuned.fit);
  tf.dispose([train.features, val.features, test.features]);
});
