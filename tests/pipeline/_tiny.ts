/** A tiny random ViT and a tiny SynthBirds configuration in a temp dir: the whole pipeline in seconds. */
import { join } from "node:path";
import { randomTimmWeights, resolveTimmConfig, type TimmConfigInput } from "../../lib/models/registry.ts";
import { writeSafetensors } from "../../lib/models/safetensors.ts";
import { Random } from "../../lib/random.ts";
import type { TrainConfig } from "../../lib/pipeline/train.ts";

/** Writes the model files into `dir` and returns a full `TrainConfig` whose outputs all live below `dir`. */
export async function tinyTrainConfig(
  dir: string,
  overrides: Partial<TrainConfig> = {},
): Promise<TrainConfig & { model: string; weights: string }> {
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
    method: "carrot",
    estimator: "influence",
    gammas: [0],
    folds: 3,
    z: 1,
    outerSteps: 2,
    topK: 3,
    influenceMethod: "exact",
    faithfulnessMethods: ["representer", "random"],
    faithfulnessSample: 3,
    faithfulnessKs: [1, 3],
    ...overrides,
  };
}

/**
 * Writes `<name>.safetensors` feature files (a "features" [N, 8] F32 tensor around per-class means, "labels" [N]
 * I32) with `perClass[c]` rows of class c into `dir`, and returns the path; with `flipped` > 0 every k-th row whose
 * k = round(1 / flipped) is labelled as the next class (label noise).
 */
export async function tinyFeatureFile(
  dir: string,
  name: string,
  perClass: number[],
  seed = 0,
  flipped = 0,
): Promise<string> {
  const rng = new Random(seed), dim = 8;
  const mean = (c: number, j: number) => 3 * Math.sin(1 + 7 * c + 3 * j); // the same means in every file
  const classes = Int32Array.from(perClass.flatMap((n, c) => Array<number>(n).fill(c)));
  const values = Float32Array.from(
    { length: classes.length * dim },
    (_, q) => mean(classes[Math.floor(q / dim)], q % dim) + rng.normal(),
  );
  const every = flipped > 0 ? Math.round(1 / flipped) : 0;
  const labels = classes.map((c, i) => every > 0 && i % every === every - 1 ? (c + 1) % perClass.length : c);
  const path = join(dir, `${name}.safetensors`);
  await writeSafetensors(path, {
    features: { dtype: "F32", shape: [labels.length, dim], values },
    labels: { dtype: "I32", shape: [labels.length], values: labels },
  });
  return path;
}
