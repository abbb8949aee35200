import assert from "node:assert/strict";
import { cosineLearningRate } from "../../lib/train/_schedule.ts";
import { assertClose } from "../_assert.ts";

Deno.test("cosineLearningRate() warms up linearly to η, then decays by a half cosine towards η_min", () => {
  const s = { base: 1e-3, min: 1e-5, warmup: 4, total: 14 };
  const rates = Array.from({ length: s.total }, (_, t) => cosineLearningRate(t, s));
  assertClose(rates.slice(0, 4), [2.5e-4, 5e-4, 7.5e-4, 1e-3], { rtol: 1e-12 });
  assert.equal(rates[4], 1e-3, "the cosine starts at η");
  assertClose(rates[9], (1e-3 + 1e-5) / 2, { rtol: 1e-12, what: "half-way down" });
  for (let t = 5; t < s.total; t++) assert.ok(rates[t] < rates[t - 1], `decreasing at ${t}`);
  assert.ok(rates[s.total - 1] > s.min && rates[s.total - 1] < 1.1e-4);
  assert.equal(cosineLearningRate(0, { ...s, warmup: 0 }), 1e-3, "no warm-up");
});
