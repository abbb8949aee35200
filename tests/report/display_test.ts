import assert from "node:assert/strict";
import { createRequire } from "node:module";
import {
  figureBundle,
  htmlTable,
  markdownTable,
  type PlotlyFigure,
  tableBundle,
} from "../../lib/report/display.ts";

const figure: PlotlyFigure = {
  data: [{ type: "scatter", x: [1, 2], y: [3, 4], name: "a" }],
  layout: { title: { text: "t </script><script>alert(1)</script>" }, height: 300 },
};

Deno.test("figureBundle() emits plotly JSON, a div that draws once plotly.js is there, and a text line", async () => {
  const bundle = await figureBundle(figure);
  assert.deepEqual(bundle["application/vnd.plotly.v1+json"], { data: figure.data, layout: figure.layout });
  const html = bundle["text/html"] as string;
  const id = html.match(/<div id="(carrot-figure-[0-9a-f-]+)" style="width:100%;height:300px">/)?.[1];
  assert.ok(id, html);
  assert.ok(html.includes(`Plotly.newPlot("${id}"`));
  assert.ok(
    html.includes('addEventListener("carrot-plotly"'),
    "waits for the loader when plotly.js is absent",
  );
  assert.equal(html.match(/<\/script>/g)?.length, 1, "the title cannot close the script element");
  assert.ok(!html.includes("DecompressionStream"), "no loader unless asked");
  assert.match(bundle["text/plain"] as string, /^Plotly figure: t .* \(1 trace\)$/);
});

Deno.test("figureBundle({ includePlotly }) carries node_modules' plotly.js, gzipped, exactly once", async () => {
  const html = (await figureBundle(figure, { includePlotly: true }))["text/html"] as string;
  const packed = html.match(/const packed = "([A-Za-z0-9+/=]+)";/)?.[1];
  assert.ok(packed, "the loader holds the base64 bundle");
  assert.equal(html.match(/const packed = /g)?.length, 1);
  const bytes = Uint8Array.from(atob(packed), (c) => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  const source = new Uint8Array(await new Response(stream).arrayBuffer());
  const original = await Deno.readFile(createRequire(import.meta.url).resolve("plotly.js-dist/plotly.js"));
  assert.equal(source.length, original.length);
  assert.deepEqual(source, original);
  assert.ok(
    packed.length < original.length / 3,
    `gzip+base64 is ${packed.length} B for ${original.length} B`,
  );
});

Deno.test("markdownTable() and htmlTable() format numbers per column and escape cells", () => {
  const rows = [{ name: "a|b", x: 0.123456, n: 3, flag: true }, { name: "<c>", x: NaN, n: -1, flag: null }];
  assert.equal(
    markdownTable(rows, { digits: { x: 2 }, caption: "cap" }),
    [
      "**cap**",
      "",
      "| name | x | n | flag |",
      "|---|---|---|---|",
      "| a\\|b | 0.12 | 3 | true |",
      "| <c> | NaN | -1 |  |",
    ].join("\n"),
  );
  const html = htmlTable(rows, { columns: ["name", "x"], digits: 1 });
  assert.ok(html.includes("<td>&lt;c&gt;</td>"), html);
  assert.ok(html.includes('<td style="text-align:right">0.1</td>'), html);
  assert.ok(!html.includes("flag"));
  assert.deepEqual(Object.keys(tableBundle(rows)).sort(), ["text/html", "text/markdown", "text/plain"]);
});
