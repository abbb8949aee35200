/**
 * Resampling of absolute position embeddings to a new patch grid, as timm's `resample_abs_pos_embed` does when a
 * checkpoint trained at one resolution is loaded at another: the prefix tokens (class, registers) are kept, the
 * patch grid is resized with `F.interpolate(mode="bicubic", antialias=True, align_corners=False)`.
 *
 * PyTorch's antialiased bicubic is Pillow's separable filter: Keys' cubic with a = −0.5 (not the −0.75 of the
 * plain bicubic path), support 2·max(1, in/out) input pixels around the centre (o + ½)·in/out − ½, taps outside
 * the input dropped and the remaining weights renormalised to sum to 1.
 */

/** Keys' cubic convolution kernel with a = −0.5 (Pillow's and PyTorch's antialias bicubic). */
function cubic(x: number): number {
  const a = -0.5, t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}

/** Per output index: the first input index and the normalised tap weights (PyTorch `_compute_weights_aa`). */
function axisWeights(inSize: number, outSize: number): { start: number; weights: Float64Array }[] {
  const scale = inSize / outSize;
  const support = scale >= 1 ? 2 * scale : 2;
  const invScale = scale >= 1 ? 1 / scale : 1;
  return Array.from({ length: outSize }, (_, o) => {
    const center = scale * (o + 0.5);
    const start = Math.max(Math.trunc(center - support + 0.5), 0);
    const stop = Math.min(Math.trunc(center + support + 0.5), inSize);
    const weights = Float64Array.from(
      { length: stop - start },
      (_, j) => cubic((j + start - center + 0.5) * invScale),
    );
    const total = weights.reduce((s, w) => s + w, 0);
    if (total !== 0) weights.forEach((w, j) => (weights[j] = w / total));
    return { start, weights };
  });
}

/** Where a position embedding comes from and goes to. */
export interface PosEmbedResample {
  /** Embedding width D. */
  dim: number;
  /** Patch grid [rows, cols] of the stored embedding. */
  from: [number, number];
  /** Patch grid [rows, cols] wanted. */
  to: [number, number];
  /** Tokens before the grid that are copied unchanged (1 for a class token, 0 for none). */
  prefixTokens: number;
}

/**
 * Resamples a position embedding `[prefixTokens + from₀·from₁, D]` (row-major, the batch dimension of timm's
 * `[1, T, D]` dropped) to `[prefixTokens + to₀·to₁, D]`:
 * out[y, x] = Σ_i Σ_j wy[y][i] · wx[x][j] · in[i, j] with the antialiased bicubic weights above, accumulated in
 * float64. Returns the input unchanged when the grids are equal (as timm does). Throws a `RangeError` when
 * `values` does not have the stated size.
 */
export function resampleAbsPosEmbed(values: Float32Array, spec: PosEmbedResample): Float32Array {
  const { dim, from, to, prefixTokens } = spec;
  const expected = (prefixTokens + from[0] * from[1]) * dim;
  if (values.length !== expected) {
    throw new RangeError(
      `resampleAbsPosEmbed: ${values.length} values, expected (${prefixTokens} + ${from[0]}×${
        from[1]
      })×${dim} ` +
        `= ${expected}`,
    );
  }
  if (from[0] === to[0] && from[1] === to[1]) return values;
  const grid = values.subarray(prefixTokens * dim);
  // horizontal pass: [from₀, from₁, D] → [from₀, to₁, D]
  const wx = axisWeights(from[1], to[1]);
  const rows = new Float64Array(from[0] * to[1] * dim);
  for (let y = 0; y < from[0]; y++) {
    for (let x = 0; x < to[1]; x++) {
      const { start, weights } = wx[x], out = (y * to[1] + x) * dim;
      weights.forEach((w, j) => {
        const src = (y * from[1] + start + j) * dim;
        for (let d = 0; d < dim; d++) rows[out + d] += w * grid[src + d];
      });
    }
  }
  // vertical pass: [from₀, to₁, D] → [to₀, to₁, D]
  const wy = axisWeights(from[0], to[0]);
  const result = new Float32Array((prefixTokens + to[0] * to[1]) * dim);
  result.set(values.subarray(0, prefixTokens * dim));
  const acc = new Float64Array(dim);
  for (let y = 0; y < to[0]; y++) {
    const { start, weights } = wy[y];
    for (let x = 0; x < to[1]; x++) {
      acc.fill(0);
      weights.forEach((w, i) => {
        const src = ((start + i) * to[1] + x) * dim;
        for (let d = 0; d < dim; d++) acc[d] += w * rows[src + d];
      });
      result.set(acc, (prefixTokens + y * to[1] + x) * dim);
    }
  }
  return result;
}
