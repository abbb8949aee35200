/**
 * `deno task bench [suite…]`: CARROT's benchmarks. Suites: head, influence, agreement, backbone, experiment,
 * debugging, reweight (default: all). Each prints throughput and the
 * ratio to the reference figures in `../shared/REFERENCE.md`; rerun those baselines side by side when comparing,
 * since this machine type drifts 2–3× (REFERENCE.md).
 */
import { parseArgs } from "node:util";
import { type BackendPreference, releaseBackend, selectBackend } from "../lib/backend.ts";
import { log } from "../lib/progress.ts";
import { benchBackbone } from "../bench/backbone.ts";
import { benchHead } from "../bench/head.ts";
import { benchInfluence } from "../bench/influence.ts";
import { benchAgreement } from "../bench/agreement.ts";
import { benchDebugging, benchExperiment } from "../bench/experiment.ts";
import { benchReweight } from "../bench/reweight.ts";

const suites: Record<string, (options: { dump?: string }) => Promise<void>> = {
  head: benchHead,
  influence: benchInfluence,
  agreement: benchAgreement,
  backbone: benchBackbone,
  experiment: benchExperiment,
  debugging: benchDebugging,
  reweight: benchReweight,
};

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: {
    backend: { type: "string", default: "auto" },
    dump: { type: "string" },
    help: { type: "boolean", default: false },
  },
  allowPositionals: true,
});
if (values.help) {
  console.log(
    `usage: deno task bench [--backend auto|wasm|webgpu|cpu] [${Object.keys(suites).join("|")} ...]`,
  );
  Deno.exit(0);
}
const unknown = positionals.filter((s) => !(s in suites));
if (unknown.length) {
  console.error(`bench: unknown suite ${unknown.join(", ")}; known: ${Object.keys(suites).join(", ")}`);
  Deno.exit(2);
}
await selectBackend(values.backend as BackendPreference);
try {
  for (const name of positionals.length ? positionals : Object.keys(suites)) {
    log(`== ${name} ==`);
    await suites[name]({ dump: values.dump });
  }
} finally {
  releaseBackend();
}
