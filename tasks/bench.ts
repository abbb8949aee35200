/**
 * `deno task bench [suite…]`: CARROT's benchmarks. Suites: head, influence, agreement, backbone, experiment,
 * debugging, reweight, consistency (why the consistency term hurt), robustness (default: all but robustness, which takes about an hour; `--only <cell>` and
 * `--fresh` steer it). Each prints throughput and the
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
import { benchRobustness } from "../bench/robustness.ts";
import { benchConsistency } from "../bench/consistency.ts";

interface SuiteOptions {
  dump?: string;
  only?: string;
  fresh?: boolean;
  shard?: string;
}

const suites: Record<string, (options: SuiteOptions) => Promise<void>> = {
  head: benchHead,
  influence: benchInfluence,
  agreement: benchAgreement,
  backbone: benchBackbone,
  experiment: benchExperiment,
  debugging: benchDebugging,
  reweight: benchReweight,
  consistency: benchConsistency,
  robustness: async (options) => {
    await benchRobustness(options);
  },
};
const slow = new Set(["robustness"]);

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: {
    backend: { type: "string", default: "auto" },
    dump: { type: "string" },
    only: { type: "string" },
    shard: { type: "string" },
    threads: { type: "string" },
    fresh: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
  allowPositionals: true,
});
if (values.help) {
  console.log(
    `usage: deno task bench [--backend auto|wasm|webgpu|cpu] [--threads N] [--only CELL] [--shard i/n] [--fresh] [${
      Object.keys(suites).join("|")
    } ...]`,
  );
  Deno.exit(0);
}
const unknown = positionals.filter((s) => !(s in suites));
if (unknown.length) {
  console.error(`bench: unknown suite ${unknown.join(", ")}; known: ${Object.keys(suites).join(", ")}`);
  Deno.exit(2);
}
await selectBackend(values.backend as BackendPreference, {
  threads: values.threads === undefined ? undefined : Number(values.threads),
});
try {
  for (const name of positionals.length ? positionals : Object.keys(suites).filter((s) => !slow.has(s))) {
    log(`== ${name} ==`);
    await suites[name]({ dump: values.dump, only: values.only, fresh: values.fresh, shard: values.shard });
  }
} finally {
  releaseBackend();
}
