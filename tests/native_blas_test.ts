import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { releaseBackend, selectBackend } from "../lib/backend.ts";
import { disableNativeBlas, enableNativeBlas, nativeBlasStatus, nativeVectors } from "../lib/native_blas.ts";
import { twoLoopDirection } from "../lib/carrot/_lbfgs_vectors.ts";
import { Random } from "../lib/random.ts";

const choice = await selectBackend("wasm", { threads: 2, quiet: true });
const available = choice.nativeBlas === true;
// a visible skip where no OpenBLAS is installed (CI installs libopenblas0)
const ignore = !available;

/** C = op(A) op(B) in float64 with NumPy broadcasting of the outer dimensions; row-major values. */
function referenceProduct(
  a: { shape: number[]; values: Float32Array },
  b: { shape: number[]; values: Float32Array },
  transposeA: boolean,
  transposeB: boolean,
): Float64Array {
  const [a0, a1] = a.shape.slice(-2), [b0, b1] = b.shape.slice(-2);
  const m = transposeA ? a1 : a0, k = transposeA ? a0 : a1, n = transposeB ? b0 : b1;
  const rank = Math.max(a.shape.length, b.shape.length) - 2;
  // outer shapes padded on the left with 1s to the same rank
  const padA = [...Array(rank - (a.shape.length - 2)).fill(1), ...a.shape.slice(0, -2)];
  const padB = [...Array(rank - (b.shape.length - 2)).fill(1), ...b.shape.slice(0, -2)];
  const outer = padA.map((x, i) => Math.max(x, padB[i]));
  const total = outer.reduce((x, y) => x * y, 1);
  const out = new Float64Array(total * m * n);
  for (let t = 0; t < total; t++) {
    const coordinates: number[] = [];
    for (let i = rank - 1, rest = t; i >= 0; i--) {
      coordinates[i] = rest % outer[i];
      rest = Math.floor(rest / outer[i]);
    }
    const flat = (pad: number[]) =>
      pad.reduce((index, size, i) => index * size + (size === 1 ? 0 : coordinates[i]), 0);
    const oa = flat(padA) * m * k, ob = flat(padB) * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (let l = 0; l < k; l++) {
          const x = a.values[oa + (transposeA ? l * m + i : i * k + l)];
          const y = b.values[ob + (transposeB ? j * k + l : l * n + j)];
          sum += x * y;
        }
        out[t * m * n + i * n + j] = sum;
      }
    }
  }
  return out;
}

function randomTensor(shape: number[], rng: Random) {
  const values = Float32Array.from({ length: shape.reduce((x, y) => x * y, 1) }, () => rng.normal());
  return { shape, values, tensor: tf.tensor(values, shape) };
}

Deno.test({
  name: "native BLAS matMul equals a float64 product for every transpose, batch and broadcast form",
  ignore,
  fn: async () => {
    assert.ok(nativeBlasStatus().active, nativeBlasStatus().description);
    const rng = new Random(3);
    // [a shape, b shape] as stored; transposes are applied on top
    const cases: [number[], number[]][] = [
      [[7, 5], [5, 3]],
      [[1, 9], [9, 1]], // a dot product
      [[6, 1], [1, 4]], // k = 1
      [[4, 5, 6], [4, 6, 3]], // batched
      [[1, 5, 6], [4, 6, 3]], // A broadcast over the batch
      [[4, 5, 6], [6, 3]], // B broadcast (rank 2)
      [[2, 3, 5, 6], [2, 3, 6, 2]], // rank 4
      [[2, 1, 3, 4], [1, 3, 4, 2]], // broadcast from both sides
      [[3, 1, 2, 5], [4, 5, 2]], // and across ranks
      [[300, 70], [70, 130]], // large enough for OpenBLAS's threaded kernels
    ];
    const before = tf.memory().numTensors;
    for (const [sa, sb] of cases) {
      for (const transposeA of [false, true]) {
        for (const transposeB of [false, true]) {
          const shapeA = transposeA ? [...sa.slice(0, -2), sa.at(-1)!, sa.at(-2)!] : sa;
          const shapeB = transposeB ? [...sb.slice(0, -2), sb.at(-1)!, sb.at(-2)!] : sb;
          const a = randomTensor(shapeA, rng), b = randomTensor(shapeB, rng);
          const product = tf.matMul(a.tensor, b.tensor, transposeA, transposeB);
          const expected = referenceProduct(a, b, transposeA, transposeB);
          const got = await product.data();
          const what = `${shapeA}${transposeA ? "ᵀ" : ""} · ${shapeB}${transposeB ? "ᵀ" : ""}`;
          assert.equal(got.length, expected.length, what);
          const k = transposeA ? shapeA.at(-2)! : shapeA.at(-1)!;
          for (let i = 0; i < got.length; i++) {
            assert.ok(Math.abs(got[i] - expected[i]) <= 1e-5 * (Math.sqrt(k) + Math.abs(expected[i])), what);
          }
          const outer = tf.backend_util.assertAndGetBroadcastShape(shapeA.slice(0, -2), shapeB.slice(0, -2));
          assert.deepEqual(
            product.shape,
            [
              ...outer,
              transposeA ? shapeA.at(-1)! : shapeA.at(-2)!,
              transposeB ? shapeB.at(-2)! : shapeB.at(-1)!,
            ],
          );
          tf.dispose([a.tensor, b.tensor, product]);
        }
      }
    }
    assert.equal(tf.memory().numTensors, before, "tensors leaked");
  },
});

Deno.test({
  name: "native BLAS: empty products are zeros, gradients flow, off restores the WASM kernel",
  ignore,
  fn: async () => {
    const rng = new Random(4);
    // an empty inner dimension sums nothing (tfjs-wasm's own kernel leaves such an output unset: XNNPACK
    // refuses k = 0); an empty outer one is an empty result; mismatched inner dimensions are refused
    const empty = tf.matMul(tf.zeros([3, 0]), tf.zeros([0, 2]));
    assert.deepEqual(Array.from(await empty.data()), [0, 0, 0, 0, 0, 0]);
    const none = tf.matMul(tf.zeros([0, 3, 4]), tf.zeros([4, 2]));
    assert.deepEqual(none.shape, [0, 3, 2]);
    assert.throws(() => tf.matMul(tf.zeros([2, 3]), tf.zeros([4, 2])), /inner/);
    // the gradient of Σ (A B) ⊙ C: ∂/∂A = C Bᵀ and ∂/∂B = Aᵀ C, themselves products on the native kernel
    const x = randomTensor([5, 4], rng), y = randomTensor([4, 3], rng), c = randomTensor([5, 3], rng);
    const [gx, gy] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(tf.matMul(p, q), c.tensor)))([
      x.tensor,
      y.tensor,
    ]);
    const expectX = referenceProduct(c, y, false, true), expectY = referenceProduct(x, c, true, false);
    (await gx.data()).forEach((v, i) => assert.ok(Math.abs(v - expectX[i]) < 1e-5, `∂/∂A[${i}]`));
    (await gy.data()).forEach((v, i) => assert.ok(Math.abs(v - expectY[i]) < 1e-5, `∂/∂B[${i}]`));
    // off puts tfjs-wasm's kernel back; on again routes to the library
    const native = tf.getKernel(tf.BatchMatMul, "wasm")!.kernelFunc;
    assert.equal(enableNativeBlas({ library: "off" }).active, false);
    const wasm = tf.getKernel(tf.BatchMatMul, "wasm")!.kernelFunc;
    assert.notEqual(wasm, native);
    const viaWasm = await tf.matMul(x.tensor, y.tensor).data();
    assert.equal(enableNativeBlas().active, true);
    disableNativeBlas();
    assert.equal(tf.getKernel(tf.BatchMatMul, "wasm")!.kernelFunc, wasm);
    assert.equal(nativeBlasStatus().active, false);
    assert.equal(enableNativeBlas().active, true);
    assert.notEqual(tf.getKernel(tf.BatchMatMul, "wasm")!.kernelFunc, wasm);
    const viaBlas = await tf.matMul(x.tensor, y.tensor).data();
    viaBlas.forEach((v, i) => assert.ok(Math.abs(v - viaWasm[i]) < 1e-5));
    tf.dispose([empty, none, x.tensor, y.tensor, c.tensor, gx, gy]);
  },
});

Deno.test({
  name: "native BLAS: a library that does not load leaves the WASM kernel and names the path",
  ignore,
  fn: async () => {
    const status = enableNativeBlas({ library: "/nonexistent/libopenblas.so.0" });
    assert.equal(status.active, false);
    assert.match(
      status.description,
      /\/nonexistent\/libopenblas\.so\.0: .*WASM|WASM kernels\. Tried \/nonexistent/,
    );
    const m = tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]]));
    assert.deepEqual(Array.from(await m.data()), [11]);
    m.dispose();
    assert.equal(enableNativeBlas().active, true, "the default library loads again");
  },
});

Deno.test("native BLAS: without --allow-ffi the status says so and nothing changes", async () => {
  const dir = Deno.makeTempDirSync();
  const script = `${dir}/status.ts`;
  Deno.writeTextFileSync(
    script,
    `import { enableNativeBlas } from "${new URL("../lib/native_blas.ts", import.meta.url)}";\n` +
      // a library named, so that CARROT_BLAS=off in the caller's environment cannot decide the answer
      `console.log(JSON.stringify(enableNativeBlas({ library: "libopenblas.so.0" })));\n`,
  );
  const config = new URL("../deno.json", import.meta.url).pathname;
  const run = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "--allow-env", "--allow-read", "--config", config, script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  Deno.removeSync(dir, { recursive: true });
  const out = new TextDecoder().decode(run.stdout);
  assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
  assert.deepEqual(JSON.parse(out), {
    active: false,
    description: "no native BLAS: needs --allow-ffi; WASM kernels",
  });
});

Deno.test({
  name:
    "native vectors: copy, dot, axpy and scale equal float64 arithmetic; the two-loop recursion equals its tfjs-ops form and a float64 reference",
  ignore,
  fn: async () => {
    const vectors = nativeVectors();
    assert.ok(vectors, "native vectors on tfjs-wasm with OpenBLAS");
    const rng = new Random(5);
    const before = tf.memory().numTensors;
    const x = randomTensor([37, 11], rng), y = randomTensor([37, 11], rng);
    const f64 = (v: Float32Array) => Float64Array.from(v);
    const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
      let sum = 0;
      for (let i = 0; i < a.length; i++) sum += a[i] * b[i];
      return sum;
    };
    // float32 inputs: the sum is exact to float32 rounding of Σ|x_i y_i| at least
    const magnitude = dot(x.values.map(Math.abs), y.values.map(Math.abs));
    assert.ok(Math.abs(vectors.dot(x.tensor, y.tensor) - dot(x.values, y.values)) < 1e-6 * magnitude);
    const z = vectors.copy(y.tensor);
    assert.notEqual(z.dataId, y.tensor.dataId);
    vectors.axpy(-0.75, x.tensor, z);
    vectors.scale(2, z);
    const expected = f64(y.values).map((v, i) => 2 * (v - 0.75 * x.values[i]));
    (await z.data()).forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-5, `axpy/scale [${i}]`));
    assert.deepEqual(await y.tensor.data(), y.values, "the copy's source is untouched");
    const short = tf.zeros([3]);
    assert.throws(() => vectors.dot(x.tensor, short), /sizes/);
    short.dispose();

    // the two-loop recursion: m = 4 pairs with sᵀy > 0, γ and a diagonal preconditioner M⁻¹ = diag(p)
    const shape = [6, 9], size = 54, m = 4;
    const pairs = Array.from({ length: m }, () => {
      const s = randomTensor(shape, rng);
      const yv = s.values.map((v) => 2 * v + 0.3 * rng.normal()); // y ≈ 2s: positive curvature
      return { s, y: { values: yv, tensor: tf.tensor2d(yv, [6, 9]) } };
    });
    const history = pairs.map(({ s, y }) => ({
      s: s.tensor as tf.Tensor2D,
      y: y.tensor,
      rho: 1 / dot(s.values, y.values),
    }));
    const g = randomTensor(shape, rng);
    const p = Float32Array.from({ length: size }, () => 0.5 + rng.uniform());
    const pTensor = tf.tensor2d(p, [6, 9]);
    const gammaValue = 0.4, c = 1.5;
    const gamma = tf.scalar(gammaValue);
    const reference = (() => { // float64, written out
      const q = f64(g.values), a: number[] = [];
      for (let i = m - 1; i >= 0; i--) {
        a[i] = history[i].rho * dot(pairs[i].s.values, q);
        q.forEach((_, j) => q[j] -= a[i] * pairs[i].y.values[j]);
      }
      q.forEach((_, j) => q[j] *= gammaValue * p[j]);
      for (let i = 0; i < m; i++) {
        const b = history[i].rho * dot(pairs[i].y.values, q);
        q.forEach((_, j) => q[j] += (a[i] - b) * pairs[i].s.values[j]);
      }
      return q.map((v) => -c * v);
    })();
    const preconditioner = (v: tf.Tensor2D) => tf.mul(v, pTensor) as tf.Tensor2D;
    const scale = Math.sqrt(dot(reference, reference) / size);
    for (const native of [true, false]) {
      const d = twoLoopDirection(g.tensor as tf.Tensor2D, history, { gamma, preconditioner, c, native });
      (await d.data()).forEach((v, j) =>
        assert.ok(
          Math.abs(v - reference[j]) < 1e-5 * scale,
          `native ${native} [${j}]: ${v} vs ${reference[j]}`,
        )
      );
      d.dispose();
    }
    assert.deepEqual(await g.tensor.data(), g.values, "the gradient is untouched");
    tf.dispose([x.tensor, y.tensor, z, g.tensor, pTensor, gamma, ...history.flatMap((h) => [h.s, h.y])]);
    assert.equal(tf.memory().numTensors, before, "tensors leaked");
  },
});

Deno.test("native BLAS tests release the backend", () => {
  releaseBackend();
});
