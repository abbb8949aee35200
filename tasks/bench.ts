/**
 * `deno task bench [suite…]`: CARROT's benchmarks. Suites: head, influence, influence-direct, agreement,
 * backbone, experiment, debugging, detection (mislabel detection on image sets), reweight, consistency (why the
 * consistency term hurt), robustness and selection-evidence (default: all but detection, robustness and
 * selection-evidence, which materialise image sets or take about an hour and half an hour; `--only` picks the
 * last three's cells, `--shard`, `--rerun` and `--fresh` steer robustness, `--seeds` robustness and detection,
 * and `--fractions` and `--rankings` detection). Each prints throughput and the ratio to the reference figures in
 * `../shared/REFERENCE.md`; rerun those baselines side by side when comparing, since this machine type drifts 2–3×
 * (REFERENCE.md).
 */
import { z } from "zod";
import { releaseBackend, selectBackend } from "../lib/backend.ts";
import { listOf, numberList, parseCommandLine, runTask } from "./_cli.ts";
import { log } from "../lib/progress.ts";
import { benchBackbone } from "../bench/backbone.ts";
import { benchHead } from "../bench/head.ts";
import { benchDirectInfluence, benchInfluence } from "../bench/influence.ts";
import { benchAgreement } from "../bench/agreement.ts";
import { benchDebugging, benchExperiment } from "../bench/experiment.ts";
import { benchReweight } from "../bench/reweight.ts";
import { benchRobustness } from "../bench/robustness.ts";
import { type ExperimentMethod, experimentMethods } from "../lib/carrot/experiment.ts";
import { benchConsistency } from "../bench/consistency.ts";
import { benchSelectionEvidence } from "../bench/selection_evidence.ts";
import { benchDetection } from "../bench/detection.ts";
import { type SuspectRanking, suspectRankings } from "../lib/carrot/debug.ts";

interface SuiteOptions {
  dump?: string;
  only?: string;
  fresh?: boolean;
  shard?: string;
  rerun?: ExperimentMethod[];
  seeds?: number[];
  fractions?: number[];
  rankings?: SuspectRanking[];
}

const suites: Record<string, (options: SuiteOptions) => Promise<void>> = {
  head: benchHead,
  influence: benchInfluence,
  "influence-direct": benchDirectInfluence,
  agreement: benchAgreement,
  backbone: benchBackbone,
  experiment: benchExperiment,
  debugging: benchDebugging,
  detection: benchDetection,
  reweight: benchReweight,
  consistency: benchConsistency,
  robustness: async (options) => {
    await benchRobustness(options);
  },
  "selection-evidence": benchSelectionEvidence,
};
const slow = new Set(["robustness", "selection-evidence", "detection"]);

const Options = z.object({
  backend: z.enum(["auto", "webgpu", "wasm", "cpu"]).default("auto").describe("tfjs backend"),
  threads: z.number().int().min(1).optional().describe("WASM threads (default: all cores)"),
  dump: z.string().optional().describe(
    "head: write its two problems for the sklearn baseline (the non-trivial one here, REFERENCE §3's in ./reference)",
  ),
  only: z.string().optional().describe(
    "robustness, selection-evidence, detection: run only the cells whose id matches this regular expression",
  ),
  shard: z.string().regex(/^\d+\/\d+$/, "expected i/n").optional().describe(
    "robustness: run every n-th cell from the i-th (i/n)",
  ),
  rerun: listOf(z.enum(experimentMethods)).optional()
    .describe("robustness: recompute these rows (comma-separated methods) of stored cells"),
  fresh: z.boolean().default(false).describe("robustness: ignore stored cells"),
  seeds: numberList(z.number().int().min(0)).optional().describe(
    "detection: split seeds (comma-separated; default 0); robustness: run these seeds instead of each cell's own",
  ),
  fractions: numberList(z.number().gt(0).lt(1)).optional().describe(
    "detection: shares removed per class by each ranking's filter (comma-separated; default 0.2)",
  ),
  rankings: listOf(z.enum(suspectRankings as unknown as [SuspectRanking, ...SuspectRanking[]])).optional()
    .describe("detection: rankings to compute (comma-separated; default all)"),
  suites: z.array(z.enum(Object.keys(suites) as [string, ...string[]])).default([]).describe("suites to run"),
});
const values = parseCommandLine(Options, Deno.args, {
  task: "bench",
  summary: `Benchmarks; suites ${Object.keys(suites).join(", ")} (default: all but ${[...slow].join(", ")}).`,
  positionals: "suites",
});
await runTask("bench", async () => {
  await selectBackend(values.backend, { threads: values.threads });
  try {
    for (
      const name of values.suites.length ? values.suites : Object.keys(suites).filter((s) => !slow.has(s))
    ) {
      log(`== ${name} ==`);
      await suites[name]({
        dump: values.dump,
        only: values.only,
        fresh: values.fresh,
        shard: values.shard,
        rerun: values.rerun,
        seeds: values.seeds,
        fractions: values.fractions,
        rankings: values.rankings,
      });
    }
  } finally {
    releaseBackend();
  }
});
