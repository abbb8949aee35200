import assert from "node:assert/strict";
import { resampleAbsPosEmbed } from "../../lib/models/pos_embed.ts";
import { Random } from "../../lib/random.ts";
import { assertClose } from "../_assert.ts";

/**
 * Dense [out, in] weights of PyTorch's antialiased bicubic (align_corners=False) along one axis, from its
 * definition: support s = 2·max(1, in/out), centre c = (o + ½)·in/out, taps i ∈ [⌊c − s + ½⌋, ⌊c + s + ½⌋) ∩
 * [0, in), weight K((i + ½ − c) / max(1, in/out)) with Keys' kernel a = −0.5, then normalised to sum to 1.
 */
function denseWeights(inSize: number, outSize: number): number[][] {
  const keys = (x: number) => {
    const t = Math.abs(x);
    return t < 1 ? 1.5 * t ** 3 - 2.5 * t ** 2 + 1 : t < 2 ? -0.5 * t ** 3 + 2.5 * t ** 2 - 4 * t + 2 : 0;
  };
  const scale = inSize / outSize, stretch = Math.max(1, scale), support = 2 * stretch;
  return Array.from({ length: outSize }, (_, o) => {
    const c = (o + 0.5) * scale;
    const row = Array.from({ length: inSize }, (_, i) => {
      const inside = i >= Math.floor(c - support + 0.5) && i < Math.floor(c + support + 0.5);
      return inside ? keys((i + 0.5 - c) / stretch) : 0;
    });
    const total = row.reduce((a, b) => a + b, 0);
    return row.map((w) => w / total);
  });
}

/** The non-separable float64 reference: out[y, x, d] = Σ_i Σ_j Wy[y][i] Wx[x][j] in[i, j, d], prefix copied. */
function reference(
  values: Float32Array,
  dim: number,
  from: [number, number],
  to: [number, number],
  prefix: number,
) {
  const wy = denseWeights(from[0], to[0]), wx = denseWeights(from[1], to[1]);
  const out = new Float64Array((prefix + to[0] * to[1]) * dim);
  for (let i = 0; i < prefix * dim; i++) out[i] = values[i];
  for (let y = 0; y < to[0]; y++) {
    for (let x = 0; x < to[1]; x++) {
      for (let i = 0; i < from[0]; i++) {
        for (let j = 0; j < from[1]; j++) {
          const w = wy[y][i] * wx[x][j];
          for (let d = 0; d < dim; d++) {
            out[(prefix + y * to[1] + x) * dim + d] += w * values[(prefix + i * from[1] + j) * dim + d];
          }
        }
      }
    }
  }
  return out;
}

Deno.test("resampleAbsPosEmbed() reproduces a hand-computed 1×2 → 1×4 upsampling", () => {
  // scale ½: centres 0.25, 0.75, 1.25, 1.75; K(0.25) = 111/128, K(1.25) = −9/128, K(0.75) = 29/128, so the
  // normalised outputs for the ramp [0, 1] are −9/102, 29/140, 111/140, 111/102 (the ramp is not kept at the
  // borders, where the taps outside the input are dropped)
  const out = resampleAbsPosEmbed(Float32Array.from([0, 1]), {
    dim: 1,
    from: [1, 2],
    to: [1, 4],
    prefixTokens: 0,
  });
  assertClose(out, [-9 / 102, 29 / 140, 111 / 140, 111 / 102], { atol: 1e-7, what: "1×4" });
});

Deno.test("resampleAbsPosEmbed() matches the float64 2-D definition, keeps prefix tokens and constants", () => {
  const rng = new Random(11);
  for (
    const [from, to, prefix] of [
      [[14, 14], [24, 24], 1], // 224 → 384 px, patch 16
      [[8, 8], [5, 5], 1], // downsampling: the antialias support widens
      [[37, 37], [16, 16], 1], // DINOv2 518 → 224 px, patch 14
      [[4, 6], [7, 3], 0], // non-square, no class token
    ] as [[number, number], [number, number], number][]
  ) {
    const dim = 3, n = (prefix + from[0] * from[1]) * dim;
    const values = Float32Array.from({ length: n }, () => rng.normal());
    const got = resampleAbsPosEmbed(values, { dim, from, to, prefixTokens: prefix });
    assertClose(got, reference(values, dim, from, to, prefix), { atol: 2e-6, what: `${from} → ${to}` });
    assert.deepEqual(Array.from(got.subarray(0, prefix * dim)), Array.from(values.subarray(0, prefix * dim)));
    const constant = resampleAbsPosEmbed(new Float32Array(n).fill(0.75), {
      dim,
      from,
      to,
      prefixTokens: prefix,
    });
    assertClose(constant, new Float32Array(constant.length).fill(0.75), { atol: 1e-6, what: "constant" });
  }
  const same = Float32Array.from([1, 2, 3, 4, 5]);
  assert.equal(resampleAbsPosEmbed(same, { dim: 1, from: [2, 2], to: [2, 2], prefixTokens: 1 }), same);
  assert.throws(
    () => resampleAbsPosEmbed(same, { dim: 2, from: [2, 2], to: [3, 3], prefixTokens: 1 }),
    /5 values, expected \(1 \+ 2×2\)×2 = 10/,
  );
});
