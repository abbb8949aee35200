/**
 * Issue 5 benchmark: forward throughput (images/s) of `vit_small_patch16_224` and `vit_base_patch16_224` with random
 * weights, batch 8 at 224×224, on the backend `tasks/bench.ts` selected: one warm-up pass (shader compilation on
 * WebGPU), then the median of up to 5 timed passes, fewer when a pass is slow (at most ~2 minutes of timed passes
 * per model). Compared with PyTorch CPU, REFERENCE.md §1 (same batch, 2 threads, median of 5 after 2 warm-ups).
 */
import * as tf from "@tensorflow/tfjs";
import { loadTimmModel, randomTimmWeights, TIMM_MODELS } from "../lib/models/registry.ts";
import { log } from "../lib/progress.ts";
import { timed, versus } from "./_timing.ts";

const batch = 8, budgetSeconds = 120;

/** REFERENCE.md §1: GFLOP per image and PyTorch CPU images/s with Debian's and SkylakeX's BLAS kernels. */
const models = [
  { name: "vit_small_patch16_224", gflop: 9.2, debian: 3.82, skylakeX: 8.14 },
  { name: "vit_base_patch16_224", gflop: 35.1, debian: 0.69, skylakeX: 4.49 },
];

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Prints images/s per model on the current backend and the ratio of batch time to PyTorch's. */
export async function benchBackbone(): Promise<void> {
  log(`backend ${tf.getBackend()}, batch ${batch}, 224×224, random weights`);
  for (const m of models) {
    const model = await loadTimmModel(m.name, randomTimmWeights(TIMM_MODELS[m.name].config, 0));
    const images = tf.randomNormal([batch, 224, 224, 3], 0, 1, "float32", 0) as tf.Tensor4D;
    const pass = async () => {
      const features = model.forwardFeatures(images);
      await features.data(); // waits for the device
      features.dispose();
    };
    const warm = (await timed(pass)).seconds;
    const runs = Math.max(1, Math.min(5, Math.floor(budgetSeconds / warm)));
    const seconds: number[] = [];
    for (let r = 0; r < runs; r++) seconds.push((await timed(pass)).seconds);
    const t = median(seconds);
    log(
      `${m.name}: ${(batch / t).toFixed(2)} img/s, ${(batch * m.gflop / t).toFixed(1)} GFLOP/s ` +
        `(warm-up ${warm.toFixed(1)} s, median of ${runs}: ${seconds.map((s) => s.toFixed(2)).join(", ")} s)`,
    );
    const perBatch = (imagesPerSecond: number) => Number((batch / imagesPerSecond).toFixed(2)); // PyTorch s/batch
    const pytorch = { what: "PyTorch CPU", debian: perBatch(m.debian), skylakeX: perBatch(m.skylakeX) };
    log(`  batch time ${versus(t, pytorch)}`);
    images.dispose();
    model.dispose();
  }
}
