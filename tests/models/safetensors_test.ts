import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  readSafetensors,
  readSafetensorsHeader,
  streamSafetensors,
  type TensorData,
  writeSafetensors,
} from "../../lib/models/safetensors.ts";
import { Random } from "../../lib/random.ts";
import { backboneFixture } from "./_fixtures.ts";
import { bfloat16Value, float16Value, toBfloat16Bits, toFloat16Bits } from "./_half.ts";

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "carrot-safetensors-" });
}

/** A file with an arbitrary header (object or raw text) and data bytes, with a correct length prefix. */
function rawFile(path: string, header: unknown, data: Uint8Array, lengthOverride?: bigint): void {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const bytes = new Uint8Array(8 + json.length + data.length);
  new DataView(bytes.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true);
  bytes.set(json, 8);
  bytes.set(data, 8 + json.length);
  writeFileSync(path, bytes);
}

Deno.test("writeSafetensors() and readSafetensors() round-trip every dtype, scalars, empty tensors and metadata", async () => {
  const dir = await tempDir();
  const path = join(dir, "all.safetensors");
  const tensors: Record<string, TensorData> = {
    f64: { dtype: "F64", shape: [2, 3], values: Float64Array.from([1.5, -2, 1e300, 0, Math.PI, -0]) },
    f32: { dtype: "F32", shape: [3], values: Float32Array.from([1, -2.5, 3e-30]) },
    i64: { dtype: "I64", shape: [2], values: BigInt64Array.from([-(2n ** 62n), 7n]) },
    u64: { dtype: "U64", shape: [1], values: BigUint64Array.from([2n ** 63n + 5n]) },
    i32: { dtype: "I32", shape: [2, 2], values: Int32Array.from([-1, 2, 2 ** 31 - 1, -(2 ** 31)]) },
    u32: { dtype: "U32", shape: [1], values: Uint32Array.from([2 ** 32 - 1]) },
    i16: { dtype: "I16", shape: [3], values: Int16Array.from([-32768, 0, 32767]) },
    u16: { dtype: "U16", shape: [1], values: Uint16Array.from([65535]) },
    i8: { dtype: "I8", shape: [2], values: Int8Array.from([-128, 127]) },
    u8: { dtype: "U8", shape: [1, 1, 3], values: Uint8Array.from([0, 128, 255]) },
    bool: { dtype: "BOOL", shape: [2], values: Uint8Array.from([1, 0]) },
    scalar: { dtype: "F32", shape: [], values: Float32Array.from([42]) },
    empty: { dtype: "F32", shape: [0, 4], values: new Float32Array(0) },
  };
  await writeSafetensors(path, tensors, { metadata: { format: "pt", note: "ünïcode" } });
  const { metadata, tensors: back } = await readSafetensors(path);
  assert.deepEqual(metadata, { format: "pt", note: "ünïcode" });
  assert.deepEqual([...back.keys()].sort(), Object.keys(tensors).sort());
  for (const [name, t] of Object.entries(tensors)) {
    const got = back.get(name)!;
    assert.equal(got.dtype, t.dtype, name);
    assert.deepEqual(got.shape, t.shape, name);
    assert.equal(got.values.constructor, t.values.constructor, name);
    assert.deepEqual(
      Array.from(got.values as ArrayLike<unknown>),
      Array.from(t.values as ArrayLike<unknown>),
      name,
    );
  }
  const header = await readSafetensorsHeader(path);
  assert.equal(header.dataStart % 8, 0, "the data section starts on an 8-byte boundary");
  assert.deepEqual(
    [...header.entries.keys()],
    [...header.entries.keys()].sort(),
    "tensors are stored in name order",
  );
  assert.deepEqual(readdirSync(dir), ["all.safetensors"], "no temporary file is left");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("readSafetensors() widens F16 and BF16 to the float32 values their bits encode", async () => {
  const dir = await tempDir();
  const path = join(dir, "half.safetensors");
  const patterns = Uint16Array.from({ length: 65536 }, (_, i) => i);
  await writeSafetensors(path, {
    half: { dtype: "F16", shape: [65536], values: patterns },
    brain: { dtype: "BF16", shape: [256, 256], values: patterns },
  });
  const { tensors } = await readSafetensors(path);
  const half = tensors.get("half")!.values as Float32Array,
    brain = tensors.get("brain")!.values as Float32Array;
  assert.ok(half instanceof Float32Array && brain instanceof Float32Array);
  for (let h = 0; h < 65536; h++) {
    const want = float16Value(h);
    assert.ok(
      Object.is(half[h], want) || (Number.isNaN(want) && Number.isNaN(half[h])),
      `F16 ${h}: ${half[h]} ≠ ${want}`,
    );
    const bf = bfloat16Value(h);
    assert.ok(Object.is(brain[h], bf) || (Number.isNaN(bf) && Number.isNaN(brain[h])), `BF16 ${h}`);
  }
  // F32 data written as F16 / BF16 comes back within half an ulp (2⁻¹¹ and 2⁻⁸ relative)
  const rng = new Random(3);
  const x = Float32Array.from({ length: 4096 }, () => rng.normal() * 10 ** (rng.uniform() * 4 - 2));
  await writeSafetensors(path, {
    f16: { dtype: "F16", shape: [4096], values: Uint16Array.from(x, toFloat16Bits) },
    bf16: { dtype: "BF16", shape: [4096], values: Uint16Array.from(x, toBfloat16Bits) },
  });
  const rounded = (await readSafetensors(path)).tensors;
  const f16 = rounded.get("f16")!.values as Float32Array, bf16 = rounded.get("bf16")!.values as Float32Array;
  x.forEach((v, i) => {
    assert.ok(Math.abs(f16[i] - v) <= 2 ** -11 * Math.abs(v) + 2 ** -25, `F16 of ${v}: ${f16[i]}`);
    assert.ok(Math.abs(bf16[i] - v) <= 2 ** -8 * Math.abs(v), `BF16 of ${v}: ${bf16[i]}`);
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("streamSafetensors() reads each selected tensor once, in file order, and hashes the whole file", async () => {
  const fixture = backboneFixture("vit");
  const dir = await tempDir();
  const path = fixture?.weights ?? join(dir, "w.safetensors");
  if (!fixture) {
    await writeSafetensors(path, {
      b: { dtype: "F32", shape: [2], values: Float32Array.from([1, 2]) },
      a: { dtype: "F64", shape: [1], values: Float64Array.from([3]) },
    });
  }
  const seen: string[] = [];
  const { header, sha256 } = await streamSafetensors(path, {
    select: (h) => [...h.entries.keys()].slice(0, 2),
    onTensor: (name) => void seen.push(name),
    sha256: true,
  });
  assert.deepEqual(seen, [...header.entries.keys()].slice(0, 2));
  assert.equal(sha256, createHash("sha256").update(readFileSync(path)).digest("hex"));
  const offsets = [...header.entries.values()].map((e) => e.begin);
  assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b));
  await assert.rejects(
    streamSafetensors(path, { select: () => ["no.such.tensor"], onTensor: () => {} }),
    (e: Error) => e instanceof RangeError && e.message.includes(`no tensor "no.such.tensor"`),
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("readSafetensorsHeader() names the file and the problem for every malformed file", async () => {
  const dir = await tempDir();
  const f32 = (begin: number, end: number, shape = [(end - begin) / 4]) => ({
    dtype: "F32",
    shape,
    data_offsets: [begin, end],
  });
  const cases: [string, (path: string) => void, RegExp, ErrorConstructor][] = [
    ["shorter than 8 bytes", (p) => writeFileSync(p, new Uint8Array(5)), /truncated: 5 bytes/, RangeError],
    [
      "header length beyond the end",
      (p) => rawFile(p, { a: f32(0, 4) }, new Uint8Array(4), 1000n),
      /truncated or not safetensors: the header length says 1000 bytes/,
      RangeError,
    ],
    ["header not JSON", (p) => rawFile(p, "{not json", new Uint8Array(0)), /not valid UTF-8 JSON/, TypeError],
    ["header a JSON array", (p) => rawFile(p, "[1, 2]", new Uint8Array(0)), /not a JSON object/, TypeError],
    [
      "unknown dtype",
      (p) => rawFile(p, { a: { dtype: "F8_E4M3", shape: [4], data_offsets: [0, 4] } }, new Uint8Array(4)),
      /tensor "a" has unknown dtype "F8_E4M3"/,
      TypeError,
    ],
    [
      "offsets out of range (truncated data)",
      (p) => rawFile(p, { a: f32(0, 4), b: f32(4, 16) }, new Uint8Array(10)),
      /tensor "b" data_offsets \[4, 16\] are out of range: the data section has 10 bytes/,
      RangeError,
    ],
    [
      "overlapping tensors",
      (p) => rawFile(p, { a: f32(0, 8), b: f32(4, 12) }, new Uint8Array(12)),
      /tensor "b" \[4, 12\] overlaps "a"/,
      RangeError,
    ],
    [
      "a gap between tensors",
      (p) => rawFile(p, { a: f32(0, 4), b: f32(8, 12) }, new Uint8Array(12)),
      /4 unreferenced bytes between "a" and "b"/,
      RangeError,
    ],
    [
      "trailing bytes",
      (p) => rawFile(p, { a: f32(0, 4) }, new Uint8Array(12)),
      /cover 4 bytes but the data section has 12/,
      RangeError,
    ],
    [
      "byte count not dtype × shape",
      (p) => rawFile(p, { a: f32(0, 12, [2, 2]) }, new Uint8Array(12)),
      /tensor "a" F32 \[2, 2\] needs 16 bytes but data_offsets \[0, 12\] span 12/,
      RangeError,
    ],
    [
      "reversed offsets",
      (p) => rawFile(p, { a: { dtype: "F32", shape: [1], data_offsets: [4, 0] } }, new Uint8Array(4)),
      /invalid data_offsets \[4,0\]/,
      RangeError,
    ],
    [
      "metadata that is not string → string",
      (p) => rawFile(p, { __metadata__: { n: 3 }, a: f32(0, 4) }, new Uint8Array(4)),
      /__metadata__ must map strings to strings/,
      TypeError,
    ],
  ];
  for (const [what, make, message, type] of cases) {
    const path = join(dir, what.replaceAll(" ", "_") + ".safetensors");
    make(path);
    await assert.rejects(readSafetensorsHeader(path), (e: Error) => {
      assert.ok(e instanceof type, `${what}: ${e.constructor.name} ${e.message}`);
      assert.match(e.message, message, what);
      assert.ok(e.message.startsWith(path), `${what}: the message names the file: ${e.message}`);
      return true;
    });
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("writeSafetensors() refuses mismatched arrays and leaves no file behind", async () => {
  const dir = await tempDir();
  const path = join(dir, "bad.safetensors");
  await assert.rejects(
    writeSafetensors(path, { a: { dtype: "F16", shape: [2], values: Float32Array.from([1, 2]) } }),
    (e: Error) =>
      e instanceof TypeError && /"a" is F16, which takes a Uint16Array, got Float32Array/.test(e.message),
  );
  await assert.rejects(
    writeSafetensors(path, { a: { dtype: "F32", shape: [2, 2], values: new Float32Array(3) } }),
    (e: Error) => e instanceof RangeError && /"a" has 3 values for shape \[2, 2\]/.test(e.message),
  );
  assert.deepEqual(readdirSync(dir), []);
  // an existing file is replaced whole
  await writeSafetensors(path, { a: { dtype: "F32", shape: [1], values: Float32Array.from([1]) } });
  await writeSafetensors(path, { b: { dtype: "I32", shape: [1], values: Int32Array.from([2]) } });
  assert.deepEqual([...(await readSafetensors(path)).tensors.keys()], ["b"]);
  assert.deepEqual(readdirSync(dir), ["bad.safetensors"]);
  await Deno.remove(dir, { recursive: true });
});
