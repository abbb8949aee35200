/**
 * Small dense float64 linear algebra in plain TypeScript (private to `lib/carrot/`), for the pieces tfjs lacks:
 * Cholesky solves (exact-Hessian reference path), symmetric eigendecomposition (Kronecker-factored influence) and
 * eigenvalues of symmetric tridiagonal matrices (Lanczos estimates from CG). Matrices are row-major Float64Array.
 * The eigensolver is the classical Householder tridiagonalisation followed by the implicit QL method
 * (Wilkinson & Reinsch, Handbook for Automatic Computation II; EISPACK tred2/tql2).
 */

/** The Cholesky factor L (lower, row-major) of symmetric positive definite A `[n, n]`; throws if A is not SPD. */
export function choleskyFactor(a: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * n + j];
      const ri = i * n, rj = j * n;
      for (let k = 0; k < j; k++) s -= l[ri + k] * l[rj + k];
      if (i === j) {
        if (!(s > 0)) {
          throw new RangeError(`choleskySolve: matrix is not positive definite (pivot ${i} = ${s})`);
        }
        l[ri + i] = Math.sqrt(s);
      } else l[ri + j] = s / l[rj + j];
    }
  }
  return l;
}

/** Solves A X = B for symmetric positive definite A `[n, n]` and B `[n, m]` (row-major); throws if A is not SPD. */
export function choleskySolve(a: Float64Array, n: number, b: Float64Array, m = 1): Float64Array {
  const l = choleskyFactor(a, n);
  const x = Float64Array.from(b);
  for (let c = 0; c < m; c++) {
    for (let i = 0; i < n; i++) {
      let s = x[i * m + c];
      for (let k = 0; k < i; k++) s -= l[i * n + k] * x[k * m + c];
      x[i * m + c] = s / l[i * n + i];
    }
    for (let i = n - 1; i >= 0; i--) {
      let s = x[i * m + c];
      for (let k = i + 1; k < n; k++) s -= l[k * n + i] * x[k * m + c];
      x[i * m + c] = s / l[i * n + i];
    }
  }
  return x;
}

/** L⁻¹ of a lower-triangular L `[n, n]` (row-major), by forward substitution column by column. */
export function lowerTriangularInverse(l: Float64Array, n: number): Float64Array {
  const inv = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    inv[j * n + j] = 1 / l[j * n + j];
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      const ri = i * n;
      for (let k = j; k < i; k++) s -= l[ri + k] * inv[k * n + j];
      inv[ri + j] = s / l[ri + i];
    }
  }
  return inv;
}

/**
 * Householder reduction of symmetric V (in place, becomes the accumulated transform) to tridiagonal (d, e). V is held
 * transposed (V[a, b] at v[b·n + a]; the same array for the symmetric input), so that the O(n³) loops, which run
 * down columns in tred2, run along rows: the same arithmetic in the same order, about twice as fast at n ≈ 800.
 */
function tridiagonalize(v: Float64Array, n: number, d: Float64Array, e: Float64Array): void {
  for (let j = 0; j < n; j++) d[j] = v[j * n + n - 1];
  for (let i = n - 1; i > 0; i--) {
    let scale = 0, h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = v[j * n + i - 1];
        v[j * n + i] = 0;
        v[i * n + j] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j];
        v[i * n + j] = f;
        g = e[j] + v[j * n + j] * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += v[j * n + k] * d[k];
          e[k] += v[j * n + k] * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        f = d[j];
        g = e[j];
        for (let k = j; k <= i - 1; k++) v[j * n + k] -= f * e[k] + g * d[k];
        d[j] = v[j * n + i - 1];
        v[j * n + i] = 0;
      }
    }
    d[i] = h;
  }
  // accumulate the transformations
  for (let i = 0; i < n - 1; i++) {
    v[i * n + n - 1] = v[i * n + i];
    v[i * n + i] = 1;
    const h = d[i + 1];
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = v[(i + 1) * n + k] / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += v[(i + 1) * n + k] * v[j * n + k];
        for (let k = 0; k <= i; k++) v[j * n + k] -= g * d[k];
      }
    }
    for (let k = 0; k <= i; k++) v[(i + 1) * n + k] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = v[j * n + n - 1];
    v[j * n + n - 1] = 0;
  }
  v[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
}

/**
 * Implicit QL on the symmetric tridiagonal (d, e) with e[i] the entry between i−1 and i (e[0] unused): d becomes
 * the eigenvalues (ascending); when `v` (held transposed, as `tridiagonalize` leaves it) is given, its rows are
 * rotated into the eigenvectors.
 */
function tridiagonalQl(d: Float64Array, e: Float64Array, n: number, v?: Float64Array): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  let f = 0, tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n && Math.abs(e[m]) > eps * tst1) m++;
    if (m > l) {
      for (let iteration = 0; iteration < 60; iteration++) {
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        p = d[m];
        let c = 1, c2 = 1, c3 = 1, s = 0, s2 = 0;
        const el1 = e[l + 1];
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          if (v) {
            for (let k = 0; k < n; k++) {
              h = v[(i + 1) * n + k];
              v[(i + 1) * n + k] = s * v[i * n + k] + c * h;
              v[i * n + k] = c * v[i * n + k] - s * h;
            }
          }
        }
        p = -s * s2 * c3 * el1 * e[l] / dl1;
        e[l] = s * p;
        d[l] = c * p;
        if (!(Math.abs(e[l]) > eps * tst1)) break;
      }
    }
    d[l] += f;
    e[l] = 0;
  }
  // sort ascending, permuting eigenvectors alike
  for (let i = 0; i < n - 1; i++) {
    let k = i;
    for (let j = i + 1; j < n; j++) if (d[j] < d[k]) k = j;
    if (k !== i) {
      [d[k], d[i]] = [d[i], d[k]];
      if (v) { for (let j = 0; j < n; j++) [v[i * n + j], v[k * n + j]] = [v[k * n + j], v[i * n + j]]; }
    }
  }
}

/** Eigendecomposition A = Q diag(values) Qᵀ of symmetric A `[n, n]`; `vectors` holds Q (columns), ascending. */
export function symmetricEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const vectors = Float64Array.from(a);
  const values = new Float64Array(n), e = new Float64Array(n);
  tridiagonalize(vectors, n, values, e);
  tridiagonalQl(values, e, n, vectors);
  for (let i = 0; i < n; i++) { // back from the transposed layout: eigenvectors in columns
    for (let j = i + 1; j < n; j++) {
      [vectors[i * n + j], vectors[j * n + i]] = [vectors[j * n + i], vectors[i * n + j]];
    }
  }
  return { values, vectors };
}

/** Eigenvalues (ascending) of the symmetric tridiagonal matrix with `diagonal` [n] and `offDiagonal` [n−1]. */
export function tridiagonalEigenvalues(
  diagonal: ArrayLike<number>,
  offDiagonal: ArrayLike<number>,
): Float64Array {
  const n = diagonal.length;
  const d = Float64Array.from(diagonal), e = new Float64Array(n);
  for (let i = 1; i < n; i++) e[i] = offDiagonal[i - 1];
  tridiagonalQl(d, e, n);
  return d;
}
