import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { selectBackend } from "../../lib/backend.ts";
import { AdamW } from "../../lib/train/_adamw.ts";
import { assertClose } from "../_assert.ts";

Deno.test("AdamW.update() follows torch.optim.AdamW (decoupled decay, bias correction) and frees its temporaries", async () => {
  await selectBackend("cpu", { quiet: true });
  const settings = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
  const theta = tf.variable(tf.tensor1d([1, -2, 0.5]));
  const params = new Map([["w", theta]]);
  const optimizer = new AdamW(params, settings);
  const gradients = [[0.5, 0.1, -3], [-0.2, 0.1, 1]];
  // reference in float64, as torch's single-tensor AdamW writes it
  let ref = [1, -2, 0.5], m = [0, 0, 0], v = [0, 0, 0];
  const before = tf.memory().numTensors;
  for (const [t, g] of gradients.entries()) {
    const lr = 0.1, wd = 0.01, step = t + 1;
    const grad = tf.tensor1d(g);
    optimizer.update(params, new Map([["w", grad]]), () => ({ learningRate: lr, weightDecay: wd }));
    grad.dispose();
    ref = ref.map((p) => p * (1 - lr * wd));
    m = m.map((mi, i) => 0.9 * mi + 0.1 * g[i]);
    v = v.map((vi, i) => 0.999 * vi + 0.001 * g[i] * g[i]);
    const c1 = 1 - 0.9 ** step, c2 = Math.sqrt(1 - 0.999 ** step);
    ref = ref.map((p, i) => p - (lr / c1) * m[i] / (Math.sqrt(v[i]) / c2 + 1e-8));
    assertClose(await theta.data(), ref, { rtol: 1e-6, what: `θ after update ${step}` });
  }
  assert.equal(optimizer.step, 2);
  assertClose(await optimizer.m.get("w")!.data(), m, { rtol: 1e-6, what: "first moment" });
  assertClose(await optimizer.v.get("w")!.data(), v, { rtol: 1e-6, what: "second moment" });
  assert.equal(tf.memory().numTensors, before, "an update frees its temporaries");
  optimizer.dispose();
  theta.dispose();
});
