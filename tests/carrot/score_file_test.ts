import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { join } from "node:path";
import { selectBackend } from "../../lib/backend.ts";
import { disposeHead, fitHead } from "../../lib/carrot/head.ts";
import { testInfluence } from "../../lib/carrot/influence.ts";
import { writeInfluenceMatrix } from "../../lib/carrot/score_file.ts";
import { readSafetensors, writeSafetensorsStreaming } from "../../lib/models/safetensors.ts";
import { randomProblem } from "../_problems.ts";
import { assertClose } from "../_assert.ts";

await selectBackend("wasm", { threads: 1, quiet: true });

Deno.test("writeInfluenceMatrix() streams the [test, train] influence matrix block by block to safetensors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { train, alpha } = randomProblem({ n: 70, dim: 5, numClasses: 3, lambda: 1, seed: 111 });
    const test = randomProblem({ n: 11, dim: 5, numClasses: 3, lambda: 1, seed: 112 }).train;
    const fit = await fitHead(train, { lambda: 1, alpha });
    const path = join(dir, "influence.safetensors");
    const top = await writeInfluenceMatrix(path, fit, train, test, { blockSize: 4, topK: 3 });
    const file = await readSafetensors(path);
    const matrix = file.tensors.get("influence")!;
    assert.deepEqual(matrix.shape, [11, 70]);
    assert.equal(file.metadata.layout, "[test, train]");
    const expected = new Float32Array(11 * 70);
    await testInfluence(fit, train, test, {
      blockSize: 11,
      onBlock: (_s, scores, b) => {
        for (let i = 0; i < 70; i++) for (let j = 0; j < b; j++) expected[j * 70 + i] = scores[i * b + j];
      },
    });
    assertClose(matrix.values as Float32Array, expected, { rtol: 1e-4, atol: 1e-7, what: "streamed matrix" });
    const row = Array.from((matrix.values as Float32Array).subarray(5 * 70, 6 * 70));
    assert.equal(top[5].proponents[0].index, row.indexOf(Math.min(...row)));
    disposeHead(fit);
    tf.dispose([train.features, test.features]);
    // a wrong byte count fails and leaves no file behind
    const bad = join(dir, "bad.safetensors");
    await assert.rejects(
      writeSafetensorsStreaming(
        bad,
        [{ name: "x", dtype: "F32", shape: [2, 2] }],
        (write) => write(new Float32Array(3)),
      ),
      /wrote 12 of the 16 declared bytes/,
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["influence.safetensors"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
