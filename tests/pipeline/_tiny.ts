/** A tiny random ViT and a tiny SynthBirds configuration in a temp dir: the whole pipeline in seconds. */
import { join } from "node:path";
import { randomTimmWeights, resolveTimmConfig, type TimmConfigInput } from "../../lib/models/registry.ts";
import { writeSafetensors } from "../../lib/models/safetensors.ts";
import type { TrainConfig } from "../../lib/pipeline/train.ts";

/** Writes the model files into `dir` and returns a full `TrainConfig` whose outputs all live below `dir`. */
export async function tinyTrainConfig(
  dir: string,
  overrides: Partial<TrainConfig> = {},
): Promise<TrainConfig> {
  const config = {
    architecture: "vit",
    imgSize: 32,
    patchSize: 8,
    embedDim: 32,
    depth: 1,
    numHeads: 2,
    mlpRatio: 2,
    numClasses: 0,
  };
  await Deno.writeTextFile(join(dir, "tiny.json"), JSON.stringify(config));
  await writeSafetensors(
    join(dir, "tiny.safetensors"),
    randomTimmWeights(resolveTimmConfig(config as TimmConfigInput).config, 1),
  );
  return {
    dataset: "synthbirds",
    dataRoot: join(dir, "birds"),
    synthBirds: { numClasses: 4, perClass: { train: 16, val: 6, test: 6 }, imageSize: 32 },
    model: join(dir, "tiny.json"),
    weights: join(dir, "tiny.safetensors"),
    cacheDir: join(dir, "cache"),
    runDir: join(dir, "run"),
    batchSize: 16,
    skipBadImages: false,
    seeds: 2,
    valFraction: 0.1,
    lambdaGrid: [1, 10],
    estimator: "influence",
    rho: 0.5,
    gamma: 10,
    stepSize: 1,
    outerSteps: 3,
    topK: 3,
    influenceMethod: "exact",
    faithfulnessMethods: ["representer", "random"],
    faithfulnessSample: 3,
    faithfulnessKs: [1, 3],
    ...overrides,
  };
}
