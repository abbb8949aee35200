/** Test-side float32 → F16 / BF16 encoders, written independently of the safetensors reader. */

/** float32 → IEEE binary16 bits, round to nearest even (written here, independently of the reader). */
export function toFloat16Bits(value: number): number {
  const f = new DataView(new ArrayBuffer(4));
  f.setFloat32(0, value, true);
  const x = f.getUint32(0, true), sign = (x >>> 16) & 0x8000, biased = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (biased === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const exponent = biased - 127 + 15;
  if (exponent >= 31) return sign | 0x7c00;
  const round = (bits: number, shift: number) => {
    const kept = bits >>> shift, rest = bits & ((1 << shift) - 1), half = 1 << (shift - 1);
    return rest > half || (rest === half && (kept & 1)) ? kept + 1 : kept;
  };
  if (exponent <= 0) {
    if (exponent < -10) return sign;
    mantissa |= 0x800000;
    return sign | round(mantissa, 14 - exponent);
  }
  return sign | round((exponent << 23) | mantissa, 13); // a carry into the exponent is the right answer
}

/** float32 → bfloat16 bits, round to nearest even. */
export function toBfloat16Bits(value: number): number {
  const f = new DataView(new ArrayBuffer(4));
  f.setFloat32(0, value, true);
  const x = f.getUint32(0, true);
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** binary16 bits → value, from the definition (sign · 2^(e−15) · 1.m, subnormals 2^−14 · 0.m). */
export function float16Value(h: number): number {
  const s = h >> 15 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
  if (e === 31) return m ? NaN : s * Infinity;
  return e ? s * 2 ** (e - 15) * (1 + m / 1024) : s * 2 ** -14 * (m / 1024);
}

/** bfloat16 bits → value: the upper half of a float32. */
export function bfloat16Value(h: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, h << 16, true);
  return view.getFloat32(0, true);
}
