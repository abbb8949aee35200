import assert from "node:assert/strict";
import { selectImageDecoder } from "../../lib/data/images.ts";
import { encodePng } from "../../lib/data/png.ts";
import { Random } from "../../lib/random.ts";

Deno.test("encodePng() round-trips through both decoders, on smooth and noisy rows", async () => {
  const random = new Random(1);
  const width = 37, height = 23;
  const data = Uint8Array.from(
    { length: width * height * 3 },
    (_, i) => (i % 7 === 0 ? random.int(256) : (i * 3) % 256),
  );
  for (const name of ["sharp", "wasm"] as const) {
    const decoded = await (await selectImageDecoder(name)).decode(encodePng({ width, height, data }));
    assert.deepEqual([decoded.width, decoded.height], [width, height]);
    assert.deepEqual(decoded.data, data, name);
  }
  assert.throws(
    () => encodePng({ width: 2, height: 2, data: new Uint8Array(5) }),
    /5 bytes for a 2×2 RGB image/,
  );
});
