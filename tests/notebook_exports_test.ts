/**
 * The committed HTML exports of the notebooks (`notebooks/exports/`, written by `deno task notebooks`): one per
 * notebook, made from its current cells, loading nothing from the network; and, opened from a file:// URL in
 * headless Chromium (Debian's `chromium`, installed by .ci/run) with DNS disabled, every formula typeset by KaTeX
 * (no raw `$` or TeX command left in the rendered text outside code), every plotly figure drawn, no error.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { type Notebook, notebookSourceHash } from "../lib/report/notebook_html.ts";

const root = new URL("..", import.meta.url).pathname;
const exportDir = `${root}notebooks/exports`;
const names = [...Deno.readDirSync(`${root}notebooks`)].map((e) => e.name).filter((f) => f.endsWith(".ipynb"))
  .map((f) => f.slice(0, -".ipynb".length)).sort();
const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(existsSync);

Deno.test("every notebook has an export made from its current cells that loads only local assets", async () => {
  for (const asset of ["katex.css", "plotly.js"]) {
    assert.ok(existsSync(`${exportDir}/assets/${asset}`), asset);
  }
  for (const name of names) {
    const path = `${exportDir}/${name}.html`;
    assert.ok(existsSync(path), `${path} is missing: run deno task notebooks`);
    const html = await Deno.readTextFile(path);
    const notebook: Notebook = JSON.parse(await Deno.readTextFile(`${root}notebooks/${name}.ipynb`));
    assert.equal(
      html.match(/<meta name="carrot-notebook-source" content="([0-9a-f]{64})">/)?.[1],
      await notebookSourceHash(notebook),
      `${name}.html is stale: notebooks/${name}.ipynb changed since; run deno task notebooks`,
    );
    const remote = html.match(/<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="(?!assets\/|data:)[^"]*"/g);
    assert.equal(remote, null, `${name}.html loads ${remote?.join(", ")}`);
  }
});

/**
 * Runs before the page's own scripts: records errors (also failed loads and console.error), then, once every
 * figure has an svg (or after 20 s of virtual time), appends its findings as `<pre id="carrot-check">`.
 */
const PROBE = `<script>(() => {
  const problems = [];
  addEventListener("error", (e) => problems.push(e.message || "failed to load " + (e.target.src || e.target.href)), true);
  addEventListener("unhandledrejection", (e) => problems.push("unhandled rejection: " + e.reason));
  const consoleError = console.error;
  console.error = (...args) => { problems.push("console.error: " + args.join(" ")); consoleError(...args); };
  addEventListener("load", async () => {
    const figures = [...document.querySelectorAll('div[id^="figure-"]')];
    const drawn = () => figures.filter((f) => f.matches(".js-plotly-plot") && f.querySelector("svg.main-svg"));
    for (let i = 0; i < 200 && drawn().length < figures.length; i++) await new Promise((r) => setTimeout(r, 100));
    await document.fonts.ready;
    for (const code of document.querySelectorAll("pre, code")) code.style.display = "none";
    const text = document.body.innerText;
    const report = {
      figures: figures.length,
      drawn: drawn().length,
      katex: document.querySelectorAll(".katex .katex-html").length,
      mathml: document.querySelectorAll(".katex math").length,
      katexFonts: [...document.fonts].filter((f) => f.family.includes("KaTeX") && f.status === "loaded").length,
      rawTex: [...new Set(text.match(/\\$+|\\\\[A-Za-z]+/g) ?? [])],
      problems,
    };
    const pre = document.createElement("pre");
    pre.id = "carrot-check";
    pre.textContent = encodeURIComponent(JSON.stringify(report));
    document.body.append(pre);
  });
})();</script>`;

/** Chromium's `--dump-dom` of `url`, offline (every host name unresolvable), and its log lines. */
async function dumpDom(url: string): Promise<{ dom: string; log: string }> {
  const profile = await Deno.makeTempDir();
  try {
    const out = await new Deno.Command(chromium!, {
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        `--user-data-dir=${profile}`,
        "--virtual-time-budget=30000",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        url,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { dom: new TextDecoder().decode(out.stdout), log: new TextDecoder().decode(out.stderr) };
  } finally {
    await Deno.remove(profile, { recursive: true });
  }
}

for (const name of names) {
  Deno.test({
    name: `notebooks/exports/${name}.html renders its math and figures offline in headless Chromium` +
      (chromium ? "" : " (skipped: no chromium; apt-get install chromium)"),
    ignore: !chromium,
  }, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const html = await Deno.readTextFile(`${exportDir}/${name}.html`);
      await Deno.symlink(`${exportDir}/assets`, `${dir}/assets`);
      await Deno.writeTextFile(`${dir}/${name}.html`, html.replace("<head>", `<head>\n${PROBE}`));
      const { dom, log } = await dumpDom(`file://${dir}/${name}.html`);
      const found = dom.match(/<pre id="carrot-check">([^<]*)<\/pre>/)?.[1];
      assert.ok(found, `the probe did not report; Chromium's log:\n${log}`);
      const report = JSON.parse(decodeURIComponent(found));
      const expectedFigures = html.match(/Plotly\.newPlot\(/g)?.length ?? 0;
      assert.ok(expectedFigures > 0, "every notebook draws figures");
      assert.deepEqual(
        { figures: report.figures, drawn: report.drawn, rawTex: report.rawTex, problems: report.problems },
        { figures: expectedFigures, drawn: expectedFigures, rawTex: [], problems: [] },
      );
      assert.ok(report.katex > 10, `${report.katex} KaTeX formulas`);
      assert.equal(report.mathml, report.katex, "each formula carries MathML too");
      assert.ok(report.katexFonts > 0, "KaTeX's fonts load from assets/katex.css");
      const uncaught = log.split("\n").filter((line) => /CONSOLE.*Uncaught/.test(line));
      assert.deepEqual(uncaught, []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
