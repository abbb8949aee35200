/**
 * `deno task gpu-kit`: the kit builds (without the Deno binary and the .debs, to stay fast), has the documented
 * layout within its size budget, and its `run.sh` runs the bundled entry offline — an empty DENO_DIR, `--cached-only
 * --no-remote --no-npm --deny-net`, from a folder with no node_modules or deno.json above it — on the WASM backend
 * with `--quick`, printing every section and writing the results JSON. A stand-in Python checks what the kit hands
 * to the PyTorch reference and answers it.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const repo = resolve(import.meta.dirname!, "..");
const decoder = new TextDecoder();

/**
 * A stand-in for `python3` with torch and timm (there is none here): answers the kit's import probe, checks the
 * weights and images the kit hands to `gpu_kit_torch.py`, writes zero features and the JSON report line. It tests
 * the kit's side of the PyTorch comparison, not the Python script.
 */
const FAKE_PYTHON = `
const args = Deno.args;
if (args[0] === "-c") {
  console.log("0.0+fake 0.0+fake False fake-device");
  Deno.exit(0);
}
const get = (k) => args[args.indexOf("--" + k) + 1];
const st = Deno.readFileSync(get("weights"));
const n = Number(new DataView(st.buffer).getBigUint64(0, true));
const header = JSON.parse(new TextDecoder().decode(st.subarray(8, 8 + n)));
const end = Math.max(...Object.entries(header).filter(([k]) => k !== "__metadata__").map(([, v]) => v.data_offsets[1]));
if (8 + n + end !== st.length) throw new Error("weights: the header does not cover the file");
const count = Number(get("count"));
if (Deno.statSync(get("images")).size !== count * 3 * 224 * 224 * 4) throw new Error("images: wrong size");
const d = header["norm.weight"].shape[0];
Deno.writeFileSync(get("out"), new Uint8Array(count * d * 4));
const bench = Object.fromEntries(get("bench").split(",").map((b) => [b, 1]));
console.log(JSON.stringify({ torch: "fake", timm: "fake", device: "fake", featureShape: [count, d], imagesPerSecond: bench }));
`;

async function buildKit(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", join(repo, "deno.json"), join(repo, "tasks/gpu_kit.ts"), ...args],
    cwd: repo,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, text: decoder.decode(out.stdout) + decoder.decode(out.stderr) };
}

function sizeOf(dir: string): number {
  return (readdirSync(dir, { recursive: true }) as string[]).map((f) => statSync(join(dir, f)))
    .filter((s) => s.isFile()).reduce((sum, s) => sum + s.size, 0);
}

Deno.test("gpu-kit: the kit builds with its layout and runs offline on WASM (--quick)", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "gpu-kit-test-" });
  try {
    const kit = join(dir, "kit");
    await t.step("refuses to replace a folder that is not a kit", async () => {
      const other = join(dir, "not-a-kit");
      mkdirSync(other);
      writeFileSync(join(other, "precious.txt"), "x");
      const run = await buildKit(["--out", other, "--skipDeno", "--skipDebs"]);
      assert.equal(run.code, 1, run.text);
      assert.match(run.text, /is not a kit/);
      assert.ok(existsSync(join(other, "precious.txt")));
    });

    await t.step("builds: layout, manifest, size", async () => {
      const run = await buildKit(["--out", kit, "--skipDeno", "--skipDebs", "--cache", join(dir, "cache")]);
      assert.equal(run.code, 0, run.text);
      for (
        const f of [
          "run.sh",
          "kit.env",
          "gpu_kit.bundle.js",
          "gpu_kit_torch.py",
          "wasm/tfjs-backend-wasm.wasm",
          "wasm/tfjs-backend-wasm-simd.wasm",
          "manifest.json",
          "README.txt",
          "VERSION",
        ]
      ) assert.ok(existsSync(join(kit, f)), `${f} missing from the kit`);
      assert.ok(!existsSync(join(kit, "deno.xz")) && !existsSync(join(kit, "debs")), "--skipDeno/--skipDebs");
      assert.ok(!existsSync(join(kit, "node_modules")));
      const manifest = JSON.parse(readFileSync(join(kit, "manifest.json"), "utf8"));
      assert.equal(manifest.deno, Deno.version.deno);
      assert.equal(manifest.files["gpu_kit.bundle.js"].bytes, statSync(join(kit, "gpu_kit.bundle.js")).size);
      assert.ok(sizeOf(kit) <= 60 * 2 ** 20, `kit is ${sizeOf(kit)} bytes`);
      assert.match(run.text, /kit: .* MiB in \d+ files/);
    });

    await t.step("run.sh runs the bundle offline and prints every section", async () => {
      const results = join(dir, "results");
      writeFileSync(join(dir, "fake_python.js"), FAKE_PYTHON);
      const python = join(dir, "python");
      writeFileSync(
        python,
        `#!/bin/sh\nexec "${Deno.execPath()}" run -A "${join(dir, "fake_python.js")}" "$@"\n`,
      );
      Deno.chmodSync(python, 0o755);
      const out = await new Deno.Command("bash", {
        args: [
          join(kit, "run.sh"),
          ...["--quick", "--backend", "wasm", "--models", "vit_tiny_patch16_224", "--python", python],
        ],
        cwd: dir,
        env: { KIT_DENO: Deno.execPath(), OUT: results, KIT_BUDGET: "300" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = decoder.decode(out.stdout) + decoder.decode(out.stderr);
      assert.equal(out.code, 0, text);
      const sections = [...text.matchAll(/^== ([a-z ]+?)(?::.*)? ==$/gm)].map((m) => m[1]);
      assert.deepEqual(sections, [
        "host",
        "loaders",
        "deno",
        "run",
        "adapter",
        "backbone",
        "torch reference",
        "head",
        "summary",
        "done",
      ], text);
      assert.match(text, /^debs: none in the kit/m);
      assert.match(text, /^backend: wasm /m);
      assert.match(text, /^vit_tiny_patch16_224 batch 2: [\d.]+ img\/s/m);
      assert.match(text, /^torch 0\.0\+fake 0\.0\+fake False fake-device$/m);
      assert.match(
        text,
        /^vit_tiny_patch16_224: features max\|ours − torch\| [\d.e+-]+ \(max\|torch\| 0\.000, 4 images\)$/m,
      );
      assert.match(text, /^ {2}PyTorch fp32 \(fake\) batch 2: 1\.00 img\/s; ours \/ PyTorch = [\d.]+$/m);
      for (
        const stage of [
          "fitHead",
          "validationAlphaGradient \\(CG\\)",
          "explain top-10",
          "EK-FAC testInfluence top-10",
          "EK-FAC validationAlphaGradient",
          "RRO 3 steps",
          "CARROT default \\(carrotReweight\\)",
        ]
      ) assert.match(text, new RegExp(`^${stage}: [\\d.]+ s; reads`, "m"));
      assert.match(text, /^ {2}test top-1 ERM [\d.]+% → CARROT [\d.]+%$/m);
      assert.match(text, /^reads: (not counted|counted)/m);
      assert.match(text, /^== done: exit 0 /m);
      const json = JSON.parse(readFileSync(join(results, "gpu_kit_results.json"), "utf8"));
      assert.equal(json.backend.active, "wasm");
      assert.ok(json.backbone[0].imagesPerSecond > 0);
      assert.equal(json.head.length, 7);
      assert.ok(json.carrot.carrotTop1 > 0 && json.carrot.ermTop1 > 0);
      assert.equal(json.torch.models[0].sameLength, true);
      assert.ok(json.torch.models[0].maxAbsDiff > 0);
      assert.ok(json.finishedAt);
      assert.ok(existsSync(join(results, "gpu_kit.log")));
    });

    await t.step("fails when the kit is over --maxMiB", async () => {
      const run = await buildKit([
        "--out",
        join(dir, "small"),
        "--skipDeno",
        "--skipDebs",
        "--noCheck",
        "--maxMiB",
        "1",
      ]);
      assert.equal(run.code, 1, run.text);
      assert.match(run.text, /over --maxMiB 1/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
