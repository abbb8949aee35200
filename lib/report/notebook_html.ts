/**
 * Static HTML exports of executed notebooks that render offline, written by `deno task notebooks`.
 *
 * Markdown (cells and `text/markdown` outputs) is rendered with `marked`; its `$…$` and `$$…$$` are typeset
 * server-side by KaTeX (HTML plus MathML), so the page needs no MathJax and no network. Like Jupyter, the math is
 * cut out before the markdown is parsed (and put back after), so that `_`, `*` and `\\` inside it stay TeX. Plotly
 * outputs are drawn from their `application/vnd.plotly.v1+json` data by `figureBundle`'s HTML; plotly.js and the
 * KaTeX stylesheet (fonts inlined) are two shared files, `exportAssets`, that each page loads from `assets/`
 * next to it. Each page records the SHA-256 of its notebook's cells (`notebookSourceHash`) in a
 * `<meta name="carrot-notebook-source">`, so that a stale export can be detected.
 */
import { Buffer } from "node:buffer";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import katex from "katex";
import { Marked } from "marked";
import { figureBundle, type PlotlyFigure, plotlyLoaderSource } from "./display.ts";

/** The folder, relative to an export, of the shared files of `exportAssets`. */
export const ASSETS_DIR = "assets";

/** nbformat's multi-line string: one string, or lines to concatenate. */
export type Multiline = string | string[];

/** One output of a code cell, as nbformat 4 stores it (the fields the export reads). */
export interface NotebookOutput {
  /** `stream`, `display_data`, `execute_result` or `error`. */
  output_type: string;
  /** A stream's name: `stdout` or `stderr`. */
  name?: string;
  /** A stream's text. */
  text?: Multiline;
  /** Representations by MIME type (JSON types such as plotly's as objects). */
  data?: Record<string, Multiline | Record<string, unknown>>;
  /** An error's class name. */
  ename?: string;
  /** An error's message. */
  evalue?: string;
  /** An error's trace, lines with ANSI colours. */
  traceback?: string[];
}

/** One cell of a notebook (the fields the export reads). */
export interface NotebookCell {
  /** `markdown`, `code` or `raw` (raw cells are not exported). */
  cell_type: string;
  /** The cell's markdown or code. */
  source: Multiline;
  /** A code cell's `In [n]` number, `null` when not run. */
  execution_count?: number | null;
  /** A code cell's outputs. */
  outputs?: NotebookOutput[];
}

/** The part of an nbformat 4 notebook that the export reads. */
export interface Notebook {
  /** Markdown, code and raw cells in order. */
  cells: NotebookCell[];
}

const marked = new Marked({ gfm: true, async: false });
/** Code spans and fenced blocks: their `$` is not math. */
const CODE = /(`{3,}[\s\S]*?`{3,}|`[^`\n]*`)/;
/** An escaped dollar (left to markdown), display math, or inline math. */
const MATH = /\\\$|\$\$([\s\S]+?)\$\$|\$((?:\\[\s\S]|[^\\$])+?)\$/g;
const PLACEHOLDER = /\uE000(\d+)\uE001/g;
// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

const join = (text: Multiline | undefined) => Array.isArray(text) ? text.join("") : text ?? "";
const escapeHtml = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * Markdown to HTML with `$…$` (inline) and `$$…$$` (display) typeset by KaTeX; `\$` is a literal dollar and
 * dollars inside code spans and fenced blocks are left alone. Throws a `SyntaxError` naming the TeX that KaTeX
 * cannot parse.
 */
export function markdownToHtml(markdown: string): string {
  const math: string[] = [];
  const text = markdown.split(CODE).map((part, index) =>
    index % 2 === 1 ? part : part.replace(MATH, (whole, display?: string, inline?: string) => {
      if (display === undefined && inline === undefined) return whole;
      const tex = display ?? inline!;
      try {
        math.push(katex.renderToString(tex, {
          displayMode: display !== undefined,
          output: "htmlAndMathml",
          throwOnError: true,
        }));
      } catch (error) {
        throw new SyntaxError(`markdownToHtml: KaTeX cannot render ${whole}: ${(error as Error).message}`);
      }
      return `\uE000${math.length - 1}\uE001`;
    })
  ).join("");
  return (marked.parse(text) as string).replace(PLACEHOLDER, (_, index: string) => math[Number(index)]);
}

/** The SHA-256 (hex) of a notebook's cell types and sources: outputs and metadata do not count. */
export async function notebookSourceHash(notebook: Notebook): Promise<string> {
  const cells = JSON.stringify(notebook.cells.map((cell) => [cell.cell_type, join(cell.source)]));
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(cells));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function outputHtml(output: NotebookOutput, id: string): Promise<string> {
  if (output.output_type === "stream") {
    return `<pre class="stream ${output.name ?? ""}">${
      escapeHtml(join(output.text).replace(ANSI, ""))
    }</pre>`;
  }
  if (output.output_type === "error") {
    const trace = (output.traceback ?? [`${output.ename}: ${output.evalue}`]).join("\n").replace(ANSI, "");
    return `<pre class="error">${escapeHtml(trace)}</pre>`;
  }
  const data = output.data ?? {};
  const plotly = data["application/vnd.plotly.v1+json"];
  if (plotly && typeof plotly === "object" && !Array.isArray(plotly)) {
    return (await figureBundle(plotly as unknown as PlotlyFigure, { id, includePlotly: false }))[
      "text/html"
    ] as string;
  }
  if (data["text/html"] !== undefined) return join(data["text/html"] as Multiline);
  if (data["text/markdown"] !== undefined) {
    return `<div class="markdown">${markdownToHtml(join(data["text/markdown"] as Multiline))}</div>`;
  }
  if (data["image/svg+xml"] !== undefined) return join(data["image/svg+xml"] as Multiline);
  if (data["image/png"] !== undefined) {
    return `<img alt="" src="data:image/png;base64,${join(data["image/png"] as Multiline).trim()}">`;
  }
  return `<pre>${escapeHtml(join(data["text/plain"] as Multiline).replace(ANSI, ""))}</pre>`;
}

const STYLE = `body{font:16px/1.5 system-ui,sans-serif;color:#1f2328;margin:0}
main{max-width:1000px;margin:0 auto;padding:24px}
pre{background:#f6f8fa;padding:8px 12px;overflow-x:auto;font-size:13px;line-height:1.4}
.markdown code{background:#f6f8fa;padding:0 3px}
.cell{margin:16px 0}.prompt{color:#6e7781;font:12px monospace}
.outputs{border-left:3px solid #d0d7de;padding-left:12px}.outputs pre{background:none}
.error{color:#b3261e}.katex-display{overflow-x:auto;overflow-y:hidden}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #d0d7de;padding:3px 8px}
caption{font-weight:600;text-align:left}`;

/**
 * A standalone HTML page of an executed notebook: markdown cells rendered (math by KaTeX), code cells with their
 * prompt and outputs (plotly figures drawn from their JSON, tables as HTML, ANSI colours stripped). It loads
 * `assets/katex.css` and, when it has figures, `assets/plotly.js` (see `exportAssets`).
 */
export async function notebookHtml(notebook: Notebook, title: string): Promise<string> {
  const cells: string[] = [];
  let figures = 0;
  for (const cell of notebook.cells) {
    const source = join(cell.source);
    if (cell.cell_type === "markdown") {
      cells.push(`<section class="cell markdown">${markdownToHtml(source)}</section>`);
      continue;
    }
    if (cell.cell_type !== "code") continue;
    const outputs: string[] = [];
    for (const output of cell.outputs ?? []) {
      const isFigure = output.data?.["application/vnd.plotly.v1+json"] !== undefined;
      outputs.push(await outputHtml(output, `figure-${figures + 1}`));
      if (isFigure) figures++;
    }
    cells.push(`<section class="cell code">
<div class="prompt">In [${cell.execution_count ?? " "}]:</div>
<pre class="source"><code>${escapeHtml(source)}</code></pre>${
      outputs.length > 0 ? `\n<div class="outputs">\n${outputs.join("\n")}\n</div>` : ""
    }
</section>`);
  }
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="carrot-notebook-source" content="${await notebookSourceHash(notebook)}">
<title>${escapeHtml(title)}</title>
<link rel="stylesheet" href="${ASSETS_DIR}/katex.css">${
    figures > 0 ? `\n<script src="${ASSETS_DIR}/plotly.js"></script>` : ""
  }
<style>
${STYLE}
</style>
</head>
<body>
<main>
${cells.join("\n")}
</main>
</body>
</html>
`;
}

/**
 * The shared files of the exports, by name under `assets/`: `katex.css` (KaTeX's stylesheet with its woff2 fonts
 * inlined as data URLs, about 0.4 MB) and `plotly.js` (`plotlyLoaderSource`, about 2.6 MB).
 */
export async function exportAssets(): Promise<Record<string, string>> {
  const cssPath = createRequire(import.meta.url).resolve("katex/dist/katex.min.css");
  const css = await Deno.readTextFile(cssPath);
  const fontDir = `${dirname(cssPath)}/fonts/`;
  const fonts = new Map<string, string>();
  for (const [, file] of css.matchAll(/url\(fonts\/([\w-]+\.woff2)\)/g)) {
    fonts.set(file, Buffer.from(await Deno.readFile(fontDir + file)).toString("base64"));
  }
  const katexCss = css.replace(
    /src:url\(fonts\/([\w-]+\.woff2)\) format\("woff2"\)[^;}]*/g,
    (_, file: string) => `src:url(data:font/woff2;base64,${fonts.get(file)}) format("woff2")`,
  );
  if (katexCss.includes("url(fonts/")) throw new Error(`exportAssets: unexpected font URLs in ${cssPath}`);
  return { "katex.css": katexCss, "plotly.js": await plotlyLoaderSource() };
}
