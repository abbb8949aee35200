import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { releaseBackend, selectBackend } from "../lib/backend.ts";
import { setLogSink } from "../lib/progress.ts";

Deno.test("selectBackend('auto') never takes a fallback adapter and says why", async () => {
  const lines: string[] = [];
  const previous = setLogSink((line) => lines.push(line));
  try {
    const choice = await selectBackend("auto", { threads: 2 });
    assert.equal(tf.getBackend(), choice.backend);
    const adapter = await (navigator as { gpu?: GPU }).gpu?.requestAdapter();
    const info = adapter?.info as (GPUAdapterInfo & { isFallbackAdapter?: boolean }) | undefined;
    const real = adapter && !(adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter &&
      !info?.isFallbackAdapter &&
      !/llvmpipe|lavapipe|swiftshader/i.test(info?.description ?? "");
    assert.equal(choice.backend, real ? "webgpu" : "wasm", choice.reason);
    if (!real) assert.match(choice.reason, adapter ? /only a fallback adapter/ : /no WebGPU adapter/);
    assert.equal(lines.length, 1);
    assert.match(lines[0], new RegExp(`^backend: ${choice.backend} \\(`));
    if (choice.backend === "wasm") {
      // the shim must really run two threads on this 2-core machine (tfjs would silently cap at cores / 2)
      assert.equal(choice.threads, Math.min(2, navigator.hardwareConcurrency) > 1 ? 2 : 1, choice.reason);
      const a = tf.tensor2d([[1, 2], [3, 4]]);
      assert.deepEqual(Array.from(await tf.matMul(a, a).data()), [7, 10, 15, 22]);
      a.dispose();
    }
    // idempotent: the same preference returns the same choice without logging again
    assert.equal(await selectBackend("auto"), choice);
    assert.equal(lines.length, 1);
  } finally {
    setLogSink(previous);
    releaseBackend();
  }
});

Deno.test("selectBackend() honours explicit preferences and results agree across backends", async () => {
  const previous = setLogSink(() => {});
  try {
    const a = [[1.5, -2, 0.25], [3, 0.5, -1]];
    const results: number[][] = [];
    const adapter = await (navigator as { gpu?: GPU }).gpu?.requestAdapter();
    for (const preference of ["cpu", "wasm", ...(adapter ? ["webgpu" as const] : [])] as const) {
      const choice = await selectBackend(preference, { threads: 1 });
      assert.equal(choice.backend, preference);
      assert.equal(tf.getBackend(), preference);
      const x = tf.tensor2d(a);
      const y = tf.matMul(x, x.transpose());
      results.push(Array.from(await y.data()));
      tf.dispose([x, y]);
    }
    for (const r of results) assert.deepEqual(r, results[0]);
  } finally {
    setLogSink(previous);
  }
});

Deno.test("a script on threaded WASM exits by itself, without releaseBackend()", async () => {
  const dir = Deno.makeTempDirSync();
  const script = `${dir}/no_release.ts`;
  Deno.writeTextFileSync(
    script,
    `import * as tf from "@tensorflow/tfjs";\n` +
      `import { selectBackend } from "${new URL("../lib/backend.ts", import.meta.url)}";\n` +
      // WASM kernels (no native BLAS), so that the product runs on the pthread pool
      `const choice = await selectBackend("wasm", { threads: 2, blas: "off", quiet: true });\n` +
      `const a = tf.randomNormal([256, 256], 0, 1, "float32", 1);\n` +
      `await new Promise((done) => setTimeout(done, 100));\n` +
      `console.log(JSON.stringify({ threads: choice.threads, sum: (await tf.matMul(a, a).sum().data())[0] }));\n`,
  );
  const config = new URL("../deno.json", import.meta.url).pathname;
  try {
    const run = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--config", config, script],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(90_000), // before the fix the process never ended
    }).output();
    assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
    const out = JSON.parse(new TextDecoder().decode(run.stdout));
    assert.equal(out.threads, navigator.hardwareConcurrency > 1 ? 2 : 1);
    assert.ok(Number.isFinite(out.sum));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
