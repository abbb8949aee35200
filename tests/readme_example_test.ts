import assert from "node:assert/strict";

/** The code block that follows `<!-- readme-example -->` in the README. */
function readmeExample(): string {
  const readme = Deno.readTextFileSync(new URL("../README.md", import.meta.url));
  const match = readme.match(/<!-- readme-example -->\s*```ts\n([\s\S]*?)```/);
  assert.ok(match, "README.md: no ```ts block after <!-- readme-example -->");
  return match[1];
}

Deno.test("the README's library example runs as printed, ends by itself and shows CARROT ≥ ERM", async () => {
  const code = readmeExample();
  assert.match(code, /from "\.\/mod\.ts"/);
  const dir = Deno.makeTempDirSync();
  const script = `${dir}/example.ts`;
  Deno.writeTextFileSync(script, code.replace(`"./mod.ts"`, `"${new URL("../mod.ts", import.meta.url)}"`));
  try {
    const run = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--check", "-A", "--config", new URL("../deno.json", import.meta.url).pathname, script],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(300_000), // the script must end without releaseBackend()
    }).output();
    const out = new TextDecoder().decode(run.stdout);
    assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
    assert.match(out, /calibrated validation loss/); // the selection's reason
    const top1 = out.match(/test top-1 ERM ([\d.]+)% → CARROT ([\d.]+)%/);
    assert.ok(top1, out);
    const [erm, carrot] = [Number(top1[1]), Number(top1[2])];
    assert.ok(erm > 40 && erm < 80, `ERM ${erm}% (the problem's clean probe reaches about 70%)`);
    assert.ok(carrot >= erm, `CARROT ${carrot}% below ERM ${erm}% at 20% label noise`);
    assert.match(out, /ECE after T: ERM [\d.]+%, CARROT [\d.]+%/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
