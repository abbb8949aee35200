import assert from "node:assert/strict";
import { choleskySolve, symmetricEigen, tridiagonalEigenvalues } from "../../lib/carrot/_linalg.ts";
import { Random } from "../../lib/random.ts";
import { assertClose } from "../_assert.ts";

function randomSymmetric(n: number, seed: number): Float64Array {
  const rng = new Random(seed), a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) a[i * n + j] = a[j * n + i] = rng.normal();
  return a;
}

Deno.test("symmetricEigen() reconstructs A = Q Λ Qᵀ with orthonormal Q (sizes 1..40, repeated eigenvalues)", () => {
  const cases = [1, 2, 3, 7, 40].map((n) => [n, randomSymmetric(n, n)] as const);
  const repeated = new Float64Array(16);
  [2, 2, 5, 5].forEach((v, i) => repeated[i * 4 + i] = v);
  for (const [n, a] of [...cases, [4, repeated] as const]) {
    const { values, vectors: q } = symmetricEigen(a, n);
    for (let i = 1; i < n; i++) assert.ok(values[i] >= values[i - 1], "ascending");
    const rebuilt = new Float64Array(n * n), gram = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        for (let k = 0; k < n; k++) {
          rebuilt[i * n + j] += q[i * n + k] * values[k] * q[j * n + k];
          gram[i * n + j] += q[k * n + i] * q[k * n + j];
        }
      }
    }
    assertClose(rebuilt, a, { atol: 1e-10, what: `Q Λ Qᵀ, n=${n}` });
    assertClose(gram, Array.from({ length: n * n }, (_, t) => t % (n + 1) === 0 ? 1 : 0), {
      atol: 1e-10,
      what: "QᵀQ",
    });
  }
});

Deno.test("tridiagonalEigenvalues() equals the known spectrum 2 − 2cos(kπ/(n+1)) of the path Laplacian", () => {
  const n = 30;
  const values = tridiagonalEigenvalues(new Float64Array(n).fill(2), new Float64Array(n - 1).fill(-1));
  const expected = Array.from({ length: n }, (_, k) => 2 - 2 * Math.cos((k + 1) * Math.PI / (n + 1)));
  assertClose(values, expected, { atol: 1e-12 });
});

Deno.test("choleskySolve() solves SPD systems with several right-hand sides and rejects indefinite ones", () => {
  const n = 12, rng = new Random(3);
  const b = randomSymmetric(n, 4);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) for (let k = 0; k < n; k++) a[i * n + j] += b[i * n + k] * b[j * n + k];
  }
  for (let i = 0; i < n; i++) a[i * n + i] += 0.5;
  const x = Float64Array.from({ length: n * 2 }, () => rng.normal());
  const rhs = new Float64Array(n * 2);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 2; c++) for (let k = 0; k < n; k++) rhs[i * 2 + c] += a[i * n + k] * x[k * 2 + c];
  }
  assertClose(choleskySolve(a, n, rhs, 2), x, { atol: 1e-9 });
  assert.throws(
    () => choleskySolve(Float64Array.from([1, 2, 2, 1]), 2, Float64Array.from([1, 1])),
    /not positive definite/,
  );
});
