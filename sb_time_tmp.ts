import { releaseBackend, selectBackend } from "./lib/backend.ts";
import { loadImageFeatures } from "./lib/pipeline/features_input.ts";
import { carrotReweight } from "./lib/carrot/carrot.ts";
import { disposeHead } from "./lib/carrot/head.ts";
import { evaluateHead } from "./lib/carrot/metrics.ts";
import { selectRows, stratifiedSplitIndices } from "./lib/split.ts";
await selectBackend("wasm", { threads: 2, quiet: true });
const all = await loadImageFeatures({ dataset: "synthbirds", dataRoot: "data/synthbirds", model: "vit_tiny_synth", weights: "data/weights/vit_tiny_synth.safetensors", cacheDir: "data/cache/features", batchSize: 32, skipBadImages: false });
const seed = Number(Deno.args[0] ?? 0);
const val = selectRows(all.val!, stratifiedSplitIndices(all.val!.labels, { fraction: 0.2 }, seed).train);
for (const opts of JSON.parse(Deno.args[1] ?? "[{}]")) {
  const t = performance.now();
  const run = await carrotReweight(all.train, val, { numClasses: 20, seed, ...opts });
  const te = await evaluateHead(run.fit, all.test);
  console.log(JSON.stringify(opts), `${((performance.now() - t) / 1000).toFixed(1)} s test ${(100 * te.accuracy).toFixed(1)} | ${run.selection.reason}`);
  disposeHead(run.fit);
}
releaseBackend();
