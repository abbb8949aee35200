import assert from "node:assert/strict";
import {
  exportAssets,
  markdownToHtml,
  type Notebook,
  notebookHtml,
  notebookSourceHash,
} from "../../lib/report/notebook_html.ts";

Deno.test("markdownToHtml() typesets $…$ and $$…$$ with KaTeX, leaving markdown around them", () => {
  const html = markdownToHtml(
    "**Loss** $\\ell_i = -\\log p_{i,y_i}$ and $a_1 * b_2 * c$:\n$$\n\\frac{\\lambda}{2}\\lVert W\\rVert_F^2\n$$",
  );
  assert.equal(html.match(/<span class="katex">/g)?.length, 3, html);
  assert.equal(html.match(/<span class="katex-display">/g)?.length, 1, html);
  assert.ok(html.startsWith('<p><strong>Loss</strong> <span class="katex">'), html);
  assert.ok(html.includes('</span> and <span class="katex">'), html);
  assert.ok(html.includes('<annotation encoding="application/x-tex">a_1 * b_2 * c</annotation>'), html);
  assert.ok(!html.includes("<em>"), "markdown emphasis does not reach into the math");
  assert.ok(html.includes("<math"), "MathML for readers and browsers without KaTeX's CSS");
});

Deno.test("markdownToHtml() leaves \\$ and dollars in code alone", () => {
  const html = markdownToHtml("costs \\$5 and \\$6; `echo $HOME $PATH`\n\n```sh\nx=$a$b\n```");
  assert.ok(!html.includes("katex"), html);
  assert.ok(html.includes("costs $5 and $6; <code>echo $HOME $PATH</code>"), html);
  assert.ok(html.includes("x=$a$b"), html);
});

Deno.test("markdownToHtml() names the formula KaTeX cannot parse", () => {
  assert.throws(() => markdownToHtml("fine $x$, broken $\\frac{1}{$"), {
    name: "SyntaxError",
    message: /^markdownToHtml: KaTeX cannot render \$\\frac\{1\}\{\$: /,
  });
});

const notebook: Notebook = {
  cells: [
    { cell_type: "markdown", source: ["# Title\n", "With $x^2$."] },
    {
      cell_type: "code",
      source: "await showFigure(f);",
      execution_count: 3,
      outputs: [
        { output_type: "stream", name: "stdout", text: ["\x1b[33m3\x1b[39m <b>\n"] },
        {
          output_type: "display_data",
          data: {
            "application/vnd.plotly.v1+json": { data: [{ type: "bar", x: ["a"], y: [1] }], layout: {} },
            "text/html": "<script>/* 2.6 MB of plotly.js */</script>",
          },
        },
        { output_type: "display_data", data: { "text/html": "<table><tr><td>1</td></tr></table>" } },
        { output_type: "display_data", data: { "text/markdown": "$\\alpha$ fitted", "text/plain": "alpha" } },
        {
          output_type: "error",
          ename: "RangeError",
          evalue: "bad",
          traceback: ["\x1b[31mRangeError\x1b[0m: bad"],
        },
      ],
    },
    { cell_type: "raw", source: "not shown" },
  ],
};

Deno.test("notebookHtml() renders cells and outputs and records the notebook's source hash", async () => {
  const html = await notebookHtml(notebook, "demo <1>");
  assert.ok(html.includes("<title>demo &lt;1&gt;</title>"));
  assert.ok(
    html.includes(`<meta name="carrot-notebook-source" content="${await notebookSourceHash(notebook)}">`),
  );
  assert.ok(html.includes('<link rel="stylesheet" href="assets/katex.css">'));
  assert.ok(html.includes('<script src="assets/plotly.js"></script>'), "a page with figures loads plotly.js");
  assert.ok(html.includes("<h1>Title</h1>") && html.includes('<span class="katex">'), "markdown and math");
  assert.ok(html.includes('<div class="prompt">In [3]:</div>'));
  assert.ok(html.includes('<pre class="stream stdout">3 &lt;b&gt;\n</pre>'), "ANSI stripped, text escaped");
  assert.ok(
    html.includes('<div id="figure-1" style="width:100%;height:420px"></div>'),
    "figure from its JSON",
  );
  assert.ok(!html.includes("2.6 MB of plotly.js"), "the figure's own HTML is not used");
  assert.ok(html.includes("<table><tr><td>1</td></tr></table>"));
  assert.ok(html.includes('<div class="markdown"><p><span class="katex">'), "markdown outputs get math too");
  assert.ok(html.includes('<pre class="error">RangeError: bad</pre>'));
  assert.ok(!html.includes("not shown"));
  assert.equal(await notebookHtml(notebook, "demo <1>"), html, "reproducible");
  const plain = await notebookHtml({ cells: [notebook.cells[0]] }, "no figures");
  assert.ok(!plain.includes("plotly.js"));
});

Deno.test("notebookSourceHash() depends on the cells' sources only", async () => {
  const hash = await notebookSourceHash(notebook);
  assert.match(hash, /^[0-9a-f]{64}$/);
  const cleared = { cells: notebook.cells.map((c) => ({ ...c, outputs: [], execution_count: null })) };
  assert.equal(await notebookSourceHash(cleared), hash);
  const edited = {
    cells: [{ ...notebook.cells[0], source: "# Title\nWith $x^3$." }, ...notebook.cells.slice(1)],
  };
  assert.notEqual(await notebookSourceHash(edited), hash);
});

Deno.test("exportAssets() inlines KaTeX's woff2 fonts and carries the plotly.js loader", async () => {
  const assets = await exportAssets();
  assert.deepEqual(Object.keys(assets).sort(), ["katex.css", "plotly.js"]);
  assert.ok(!assets["katex.css"].includes("url(fonts/"));
  assert.ok((assets["katex.css"].match(/url\(data:font\/woff2;base64,/g)?.length ?? 0) >= 19);
  assert.ok(assets["plotly.js"].includes("window.carrotPlotly"));
});
