/**
 * `deno task train`: one command from images to an explained, reweighted classifier (lib/pipeline/train.ts).
 * Options come from the command line and an optional JSON config file (`--config run.json`; command-line values
 * win), are validated with zod by `tasks/_cli.ts` (unknown keys and bad values are rejected with the name of the
 * field, exit 2), printed, and saved in the run directory. `--help` lists every option with its default. Bad input
 * found later (a missing dataset root, a truncated weights file) prints one line and exits 1; nothing is written
 * under `runs/` before every input has been read.
 */
import { basename, join } from "node:path";
import { existsSync } from "node:fs";
import { z } from "zod";
import { type BackendPreference, releaseBackend, selectBackend } from "../lib/backend.ts";
import { DATASET_NAMES } from "../lib/data/dataset.ts";
import { defaultLambdaExtension, defaultLambdaGrid } from "../lib/carrot/lambda.ts";
import { defaultCarrotGammas } from "../lib/carrot/carrot.ts";
import { runTraining, type TrainConfig } from "../lib/pipeline/train.ts";
import { NO_VALIDATION_DATA } from "../lib/pipeline/features_input.ts";
import { log } from "../lib/progress.ts";
import { listOf, numberList, parseCommandLine, runTask, UsageError } from "./_cli.ts";

const DEFAULT_WEIGHTS = "data/weights/vit_tiny_synth.safetensors";

/** Every option with its default and help text. */
const schema = z.object({
  dataset: z.enum([...DATASET_NAMES, "features"] as unknown as [string, ...string[]]).default("synthbirds")
    .describe("dataset layout, or 'features' for --features files"),
  dataRoot: z.string().default("data/synthbirds").describe(
    "dataset root (SynthBirds is materialised there once)",
  ),
  model: z.string().default("vit_tiny_synth").describe(
    "registered timm model name, a .json timm config, or a timm hub folder (config.json + model.safetensors)",
  ),
  weights: z.string().optional().describe(
    "timm safetensors weights (default: <model>/model.safetensors for a timm hub folder, else " +
      `${DEFAULT_WEIGHTS})`,
  ),
  features: listOf(z.string()).optional()
    .describe(
      "precomputed features train,val,test (.safetensors with 'features' and 'labels'; val may be empty)",
    ),
  backend: z.enum(["auto", "webgpu", "wasm", "cpu"]).default("auto").describe("tfjs backend"),
  seeds: z.coerce.number().int().min(1).default(3).describe("number of seeds (0..seeds-1)"),
  valFraction: z.coerce.number().min(0).lt(1).default(0.1).describe(
    "validation share carved from train when there is no validation split; not used when the dataset has a " +
      "val split or --features names a val file; 0 without one is refused",
  ),
  lambdaGrid: numberList(z.number().positive()).default([...defaultLambdaGrid]).describe(
    "λ grid for the ERM head (tuned on val)",
  ),
  lambdaExtend: z.coerce.number().int().min(0).default(defaultLambdaExtension).describe(
    "λ values tried past the grid's end where the best λ lies, while each lowers the validation NLL by more than 0.1% (0: the grid alone)",
  ),
  method: z.enum(["carrot", "rro"]).default("carrot").describe(
    "reweighting: carrot (cross-fitted influence descent, selection on val, fallback to ERM) or rro (the " +
      "original bilevel descent on L_val; overfits small validation sets)",
  ),
  estimator: z.enum(["influence", "representer", "tracin", "trak"]).default("influence").describe(
    "RRO gradient estimator (--method rro)",
  ),
  rho: z.coerce.number().min(0).max(1).optional().describe(
    "ESS floor ρ, 0 disables (default 0.3 carrot, 0.5 rro)",
  ),
  gammas: numberList(z.number().min(0)).default([...defaultCarrotGammas]).describe(
    "consistency weights γ; carrot runs its paths per γ and its selection picks (0 alone halves the paths' cost); rro uses the first",
  ),
  stepSize: z.coerce.number().positive().optional().describe(
    "step η, the largest log-change of any α per step (default 3 carrot, 1 rro)",
  ),
  outerSteps: z.coerce.number().int().min(0).optional().describe(
    "outer steps (default 4 per path for carrot — the library default is 6 — and 20 for rro)",
  ),
  maxOuterSteps: z.coerce.number().int().min(0).optional().describe(
    "carrot: cap on the steps of a path that keeps running while its last step is the best on val (default " +
      "outerSteps: off)",
  ),
  trimSplits: z.coerce.number().int().min(1).optional().describe(
    "carrot: fold assignments whose out-of-fold losses are averaged to rank points for trimming (default 1)",
  ),
  gradedTrim: z.boolean().optional().describe(
    "carrot: also offer the mean of the trims at 10/20/30% (a point's weight falls in steps with its loss rank) " +
      "as a candidate (default on; --gradedTrim false: the hard trims only)",
  ),
  neighbourK: z.coerce.number().int().min(0).optional().describe(
    "carrot: k of the trims by k-NN label disagreement, offered beside those by out-of-fold loss (default 0: " +
      "none; 30 was measured, README)",
  ),
  inSampleTrim: z.boolean().optional().describe(
    "carrot: also offer the trims (10/20/30% and graded) ranked by the ERM head's in-sample losses, what " +
      "small-loss filtering ranks by (default off: measured in session 17 and failed its rule, README)",
  ),
  selfInfluenceTrim: z.boolean().optional().describe(
    "carrot: also offer the trims (10/20/30% and graded) ranked by the ERM head's EK-FAC self-influence, the " +
      "attribution score (default on since session 26, when it held its rule; README)",
  ),
  refinedTrim: z.boolean().optional().describe(
    "carrot: rank the trims by the out-of-fold losses of fold heads refitted at the first graded trim's α " +
      "(cleaner judges; default off: measured in session 19 and failed its rule, README)",
  ),
  gradedIncumbent: z.boolean().optional().describe(
    "carrot: where the fold heads' errors show label noise (q̂ > 2 s.e.), make the graded trim the incumbent " +
      "the selection must beat, with ERM's veto (default off: measured in session 20 and failed its rule, README)",
  ),
  trimPath: z.boolean().optional().describe(
    "carrot: one more cross-fitted path, self-weighted at γ = 0, starting at the graded trim's α, its steps offered " +
      "as candidates (default off: measured in session 24 and failed its rule, README)",
  ),
  averageVeto: z.boolean().optional().describe(
    "carrot: the best candidate alone replaces the top-k mean when it beats it on val by z s.e. (default on since " +
      'session 23; --averageVeto false keeps the mean; README "The average veto")',
  ),
  averageTop: z.coerce.number().int().min(1).optional().describe(
    "carrot: refit at the mean α of the k candidates with the lowest calibrated val loss instead of the best " +
      "alone, kept only if it beats ERM by z s.e. (default 3; 1: the best alone)",
  ),
  bootstrapAverage: z.coerce.number().int().min(0).optional().describe(
    "carrot: instead of the top-k mean, refit at the mean α of all candidates weighted by how often each is the " +
      "lowest on this many class-stratified resamples of val (default 0: off; 1000 was measured in session 18 " +
      "and missed its rule, README)",
  ),
  validationPath: z.boolean().default(true).describe(
    "carrot: also run RRO on half of val and let the other half choose between its head and the selection's, " +
      "where that half holds ≥ 5 images per class (--validationPath false: the selection alone)",
  ),
  folds: z.coerce.number().int().min(2).default(3).describe(
    "folds of CARROT's cross-fitted objective (the library default is 5; 3 keeps the default run within 180 s)",
  ),
  z: z.coerce.number().min(0).default(1).describe(
    "standard errors CARROT's validation gain must exceed to replace ERM (else α = 1 is kept)",
  ),
  topK: z.coerce.number().int().min(1).default(10).describe("supporters/opposers per test image"),
  influenceMethod: z.enum(["auto", "direct", "exact", "ekfac"]).default("ekfac").describe(
    "test influence: EK-FAC, or exact by block CG (exact), a Cholesky factor of H (direct), or whichever costs less (auto)",
  ),
  faithfulnessMethods: listOf(z.string())
    .default(["representer", "influence", "random"]).describe("methods compared by remove/keep top-K"),
  faithfulnessSample: z.coerce.number().int().min(1).default(4).describe(
    "test points sampled for faithfulness (4 keeps the default run within 180 s; use more for a study)",
  ),
  faithfulnessKs: numberList(z.number().int().positive())
    .default([1, 5, 20]).describe("K values of remove/keep top-K"),
  batchSize: z.coerce.number().int().min(1).default(32).describe("images per backbone batch"),
  cacheDir: z.string().default("data/cache/features").describe("feature cache folder"),
  name: z.string().optional().describe("run name (default <dataset>-<model>)"),
  skipBadImages: z.boolean().default(false).describe("skip unreadable images (listed in metrics.json)"),
}).strict();

/** The options as the pipeline takes them; usage problems (caught before anything is read) throw `UsageError`. */
function trainConfig(): TrainConfig {
  const options = parseCommandLine(schema, Deno.args, {
    task: "train",
    summary: "Features → ERM head → CARROT reweighting → explanations, influence and faithfulness → report.",
    configFile: true,
  });
  // checked before anything is loaded or written; a dataset whose val split is only known once loaded is refused
  // by runTraining, also before the run folder exists
  if (options.valFraction === 0 && options.dataset === "features" && !options.features?.[1]) {
    throw new UsageError(NO_VALIDATION_DATA);
  }
  const hubFolder = existsSync(join(options.model, "config.json"));
  const weights = options.weights ?? (hubFolder ? undefined : DEFAULT_WEIGHTS);
  if (options.dataset !== "features" && weights !== undefined && !existsSync(weights)) {
    throw new UsageError(
      `weights ${weights} not found`,
      "pass --weights path/to/model.safetensors (timm weights: the model's Hugging Face page, file " +
        "model.safetensors), --model <a timm hub folder>, or --dataset features --features …",
    );
  }
  // a features run names its files (and their SHA-256, in the provenance), not a backbone that never ran
  const { model, weights: _, ...rest } = options;
  const features = options.dataset === "features";
  const source = features ? basename(options.features?.[0] ?? "", ".safetensors") : basename(model);
  return {
    ...rest,
    ...(features ? {} : { model, weights }),
    dataset: options.dataset as TrainConfig["dataset"],
    faithfulnessMethods: options.faithfulnessMethods as TrainConfig["faithfulnessMethods"],
    runDir: join("runs", options.name ?? `${options.dataset}-${source}`),
  };
}

await runTask("train", async () => {
  const config = trainConfig();
  log(`config: ${JSON.stringify(config)}`);
  await selectBackend(config.backend as BackendPreference);
  let interrupted = false;
  Deno.addSignalListener("SIGINT", () => {
    if (interrupted) Deno.exit(130);
    interrupted = true;
    log(
      "interrupted: the feature cache keeps every finished shard; rerun the same command to resume (Ctrl-C again to quit now)",
    );
    releaseBackend();
    Deno.exit(130);
  });
  try {
    const result = await runTraining(config);
    const s = result.summary;
    const pct = (m: { mean: number; std: number }) =>
      `${(100 * m.mean).toFixed(1)} ± ${(100 * m.std).toFixed(1)}%`;
    log(
      `done: test top-1 ERM ${pct(s.erm.accuracy)} → CARROT ${pct(s.carrot.accuracy)}; ` +
        `report ${join(config.runDir, "report.html")}`,
    );
  } finally {
    releaseBackend();
  }
});
