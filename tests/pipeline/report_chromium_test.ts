/**
 * Opens a generated report.html in headless Chromium (Debian's `chromium`, installed by .ci/run) and checks that
 * every plotly figure rendered (one `.main-svg` per figure) and that the page logged no console errors; saves a
 * screenshot to runs/report_screenshot.png.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { selectBackend } from "../../lib/backend.ts";
import { runTraining } from "../../lib/pipeline/train.ts";
import { tinyTrainConfig } from "./_tiny.ts";
import { setLogSink } from "../../lib/progress.ts";

const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(existsSync);

async function chrome(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const profile = await Deno.makeTempDir();
  const flags = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    `--user-data-dir=${profile}`,
  ];
  const out = await new Deno.Command(chromium!, {
    args: [...flags, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  await Deno.remove(profile, { recursive: true }).catch(() => {});
  return { stdout: new TextDecoder().decode(out.stdout), stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test({
  name: "report.html renders every plotly figure in headless Chromium without console errors" +
    (chromium ? "" : " (skipped: no chromium; apt-get install chromium)"),
  ignore: !chromium,
}, async () => {
  await selectBackend("wasm", { threads: 1, quiet: true });
  const dir = await Deno.makeTempDir();
  const previous = setLogSink(() => {});
  try {
    const runDir = join(dir, "run");
    await runTraining(await tinyTrainConfig(dir, { outerSteps: 2, influenceMethod: "ekfac" }));
    const url = `file://${resolve(runDir, "report.html")}`;
    const dom = await chrome([
      "--virtual-time-budget=20000",
      "--enable-logging=stderr",
      "--v=0",
      "--dump-dom",
      url,
    ]);
    const figures = (dom.stdout.match(/class="plot-container plotly"/g) ?? []).length;
    const rendered = (dom.stdout.match(/class="main-svg"/g) ?? []).length;
    assert.equal(
      figures,
      6,
      "six figures: accuracy, trajectory, α per class, faithfulness, α by ground truth, detection",
    );
    assert.ok(rendered >= figures, `${rendered} .main-svg for ${figures} figures`);
    const errors = dom.stderr.split("\n").filter((l) => /CONSOLE.*(Error|error)|Uncaught/.test(l));
    assert.deepEqual(errors, [], errors.join("\n"));
    mkdirSync("runs", { recursive: true });
    await chrome([
      "--virtual-time-budget=20000",
      "--window-size=1200,2400",
      `--screenshot=${resolve("runs/report_screenshot.png")}`,
      url,
    ]);
    assert.ok(existsSync("runs/report_screenshot.png"));
  } finally {
    setLogSink(previous);
    await Deno.remove(dir, { recursive: true });
  }
});
