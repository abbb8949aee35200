import assert from "node:assert/strict";
import { join } from "node:path";
import { backboneCard } from "../../lib/pipeline/features_input.ts";

Deno.test("backboneCard(): the probe accuracies of the card beside the weights, only when its SHA-256 matches", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const weights = join(dir, "w.safetensors");
    const card = {
      weights: { sha256: "abc" },
      linearProbe: { pretrained: { testAccuracy: 0.625 }, random: { testAccuracy: 0.1 } },
    };
    await Deno.writeTextFile(join(dir, "w.json"), JSON.stringify(card));
    assert.deepEqual(backboneCard(weights, "abc"), {
      path: join(dir, "w.json"),
      linearProbe: 0.625,
      randomProbe: 0.1,
    });
    assert.equal(backboneCard(weights, "other weights"), undefined, "a card of other weights is ignored");
    assert.equal(backboneCard(join(dir, "none.safetensors"), "abc"), undefined);
    assert.equal(backboneCard(undefined, "abc"), undefined);
    await Deno.writeTextFile(join(dir, "w.json"), "{ not json");
    assert.equal(backboneCard(weights, "abc"), undefined, "a file that is not a card is ignored");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
