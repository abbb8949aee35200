/**
 * A minimal PNG encoder for 8-bit RGB images (one IHDR, one zlib IDAT, IEND), so that SynthBirds and contact
 * sheets can be written without a native dependency. Each row takes the filter (None, Sub, Up, Average, Paeth)
 * with the smallest sum of absolute residuals, the heuristic the PNG specification recommends.
 * Reference: PNG specification, ISO/IEC 15948; chunks = length, type, data, CRC-32 of type and data.
 */
import { deflateSync } from "node:zlib";
import type { RgbImage } from "./images.ts";

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Encodes an RGB image as PNG bytes; `level` is zlib's compression level (default 6). */
export function encodePng(image: RgbImage, { level = 6 }: { level?: number } = {}): Uint8Array {
  const { width, height, data } = image;
  if (data.length !== width * height * 3) {
    throw new RangeError(
      `encodePng: ${data.length} bytes for a ${width}×${height} RGB image (expected ${width * height * 3})`,
    );
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, 2, 0, 0, 0], 8); // bit depth 8, colour type 2 (RGB), deflate, filter method 0, no interlace
  const stride = width * 3;
  const raw = new Uint8Array(height * (1 + stride));
  const candidates = Array.from({ length: 5 }, () => new Uint8Array(stride));
  const zero = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const row = data.subarray(y * stride, (y + 1) * stride);
    const up = y > 0 ? data.subarray((y - 1) * stride, y * stride) : zero;
    let best = 0, bestCost = Infinity;
    for (let filter = 0; filter < 5; filter++) {
      const out = candidates[filter];
      let cost = 0;
      for (let i = 0; i < stride; i++) {
        const a = i >= 3 ? row[i - 3] : 0, b = up[i], c = i >= 3 ? up[i - 3] : 0;
        const predictor = filter === 0
          ? 0
          : filter === 1
          ? a
          : filter === 2
          ? b
          : filter === 3
          ? (a + b) >> 1
          : paeth(a, b, c);
        const residual = (row[i] - predictor) & 0xff;
        out[i] = residual;
        cost += residual < 128 ? residual : 256 - residual;
      }
      if (cost < bestCost) [best, bestCost] = [filter, cost];
    }
    raw[y * (1 + stride)] = best;
    raw.set(candidates[best], y * (1 + stride) + 1);
  }
  const parts = [
    Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(raw, { level })),
    chunk("IEND", new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
