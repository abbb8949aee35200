import { selectBackend } from "../../lib/backend.ts";
import { selfInfluence } from "../../lib/carrot/influence.ts";
import { assertDetectorOption } from "./_trim_candidates.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

Deno.test("carrotReweight(): selfInfluenceTrim offers the trims by the ERM head's self-influence, graded one included", () =>
  assertDetectorOption({
    option: "selfInfluenceTrim",
    weighting: "self-influence-trim",
    described: {
      4: "trim 10% by self-influence (ERM head, EK-FAC)",
      6: "graded trim (mean of the trims at 10%/30%) by self-influence (ERM head, EK-FAC)",
    },
    scores: (run) => run.selfInfluences,
    reference: (erm, train) => selfInfluence(erm, train, train, { method: "ekfac" }),
    tolerance: { rtol: 1e-3, atol: 1e-5 },
  }));
