/**
 * Showing figures and tables in a Deno Jupyter notebook, robust to headless execution.
 *
 * A figure is one `display_data` with two representations: `application/vnd.plotly.v1+json` (`{ data, layout }`,
 * rendered natively where a plotly renderer is installed) and a small `text/html` (a div and a
 * `Plotly.newPlot` call) for JupyterLab, classic Notebook and nbconvert's HTML export. plotly.js itself (10.1 MB)
 * travels once per kernel session: the first figure's HTML carries the bundle gzipped and base64-encoded
 * (about 2.6 MB) and a loader that defines `window.Plotly`; every later figure waits for it. Restart the kernel
 * and run all cells to regenerate a notebook whose first figure was re-run or cleared.
 *
 * Two pitfalls of Deno's kernel (measured in `../shared/STACK.md`) shape the helpers: it sometimes publishes a
 * cell's last outputs after reporting idle, so every `show…` awaits a short sleep after publishing; and plain
 * values come back with ANSI colour codes, so notebooks show results through these helpers, never as a cell's
 * last expression. Each output carries `metadata.carrot.output` = 1, 2, 3, … in display order, so that a
 * headless run can check that none was lost (`tasks/notebooks.ts`).
 *
 * The `show…` functions work only inside `deno jupyter`; the `…Bundle` and `…Table` functions are pure.
 */
import { createRequire } from "node:module";

/** A plotly figure as plotly.js takes it: traces and layout (https://plotly.com/javascript/reference/). */
export interface PlotlyFigure {
  /** The traces, e.g. `{ type: "scatter", x, y, mode: "markers", name }`. */
  data: Record<string, unknown>[];
  /** Axes, title, size, legend. */
  layout?: Record<string, unknown>;
}

/** One output's representations by MIME type, as Jupyter's `display_data` carries them. */
export type MimeBundle = Record<string, string | Record<string, unknown>>;

/** A table cell: numbers are formatted with `TableOptions.digits`, everything else with `String`. */
export type TableCell = string | number | boolean | null | undefined;

/** Options of the table helpers. */
export interface TableOptions {
  /** Columns in order (default: the keys of the first row). */
  columns?: readonly string[];
  /** Decimals of non-integer numbers, for all columns or per column (default 3). */
  digits?: number | Readonly<Record<string, number>>;
  /** A caption above the table. */
  caption?: string;
}

/** Options of `figureBundle` and `showFigure`. */
export interface FigureOptions {
  /** Height of the HTML figure in pixels (default: `layout.height`, else 420). */
  height?: number;
  /** Include the plotly.js loader in the HTML (default: only for the first figure of the kernel session). */
  includePlotly?: boolean;
  /** The figure div's id (default: `carrot-figure-<random UUID>`); give one for reproducible HTML. */
  id?: string;
}

/** The sleep after each output: long enough for the kernel to publish before it reports idle (STACK.md §3). */
const SETTLE_MS = 80;
/** The sleep after the output that carries plotly.js: large outputs need longer to flush. */
const SETTLE_LARGE_MS = 400;

let outputCount = 0;
let plotlySent = false;
let loaderSource: Promise<string> | undefined;

/** `value` as a JSON literal that is safe inside an HTML `<script>` element. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c").replace(/\u2028/g, "\\u2028").replace(
    /\u2029/g,
    "\\u2029",
  );
}

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let start = 0; start < bytes.length; start += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(start, start + 0x8000));
  }
  return btoa(binary);
}

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as BlobPart]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * The JavaScript that defines `window.carrotPlotly` (a promise of `window.Plotly`) from node_modules' plotly.js,
 * carried gzipped and base64-encoded (about 2.6 MB); read once per process. Figures of `figureBundle` wait for it.
 */
export function plotlyLoaderSource(): Promise<string> {
  loaderSource ??= (async () => {
    let path: string;
    try {
      path = createRequire(import.meta.url).resolve("plotly.js-dist/plotly.js");
    } catch (error) {
      const reason = (error as Error).message;
      throw new TypeError(
        `plotlyLoaderSource: cannot find plotly.js-dist/plotly.js in node_modules (${reason}); ` +
          "run `deno install` in the repository root",
      );
    }
    const packed = base64(await gzip(await Deno.readFile(path)));
    // The bundle is evaluated with AMD's `define` hidden (classic Notebook's require.js would capture it) and with
    // PlotlyConfig.MathJaxConfig "local", so that plotly leaves the notebook's MathJax settings alone.
    return `(() => {
  if (window.Plotly || window.carrotPlotly) return;
  const packed = "${packed}";
  const bytes = Uint8Array.from(atob(packed), (c) => c.charCodeAt(0));
  const source = new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).text();
  window.carrotPlotly = source.then((code) => {
    window.PlotlyConfig = Object.assign({ MathJaxConfig: "local" }, window.PlotlyConfig);
    const amd = window.define;
    window.define = undefined;
    try { (0, eval)(code); } finally { window.define = amd; }
    window.dispatchEvent(new Event("carrot-plotly"));
    return window.Plotly;
  });
})();`;
  })();
  return loaderSource;
}

/**
 * The MIME bundle of a figure: `application/vnd.plotly.v1+json`, `text/html` (a div plus `Plotly.newPlot`, waiting
 * for plotly.js when it is not loaded yet; with the loader when `includePlotly`) and a `text/plain` line.
 */
export async function figureBundle(figure: PlotlyFigure, options: FigureOptions = {}): Promise<MimeBundle> {
  if (!Array.isArray(figure.data)) {
    throw new TypeError("figureBundle: figure.data must be an array of traces");
  }
  const layout = figure.layout ?? {};
  const height = options.height ?? (typeof layout.height === "number" ? layout.height : 420);
  const id = options.id ?? `carrot-figure-${crypto.randomUUID()}`;
  const html = `<div id="${id}" style="width:100%;height:${height}px"></div>
<script>(() => {
  const figure = ${scriptJson({ data: figure.data, layout })};
  const draw = () => window.Plotly.newPlot("${id}", figure.data, figure.layout, { responsive: true });
  if (window.Plotly) draw();
  else if (window.carrotPlotly) window.carrotPlotly.then(draw);
  else window.addEventListener("carrot-plotly", draw, { once: true });
})();</script>`;
  const title = layout.title as { text?: string } | string | undefined;
  const name = typeof title === "string" ? title : title?.text ?? "untitled";
  return {
    "application/vnd.plotly.v1+json": { data: figure.data, layout },
    "text/html": options.includePlotly ? `<script>${await plotlyLoaderSource()}</script>\n${html}` : html,
    "text/plain": `Plotly figure: ${name} (${figure.data.length} trace${
      figure.data.length === 1 ? "" : "s"
    })`,
  };
}

function columnsOf(rows: readonly Readonly<Record<string, TableCell>>[], options: TableOptions): string[] {
  return [...(options.columns ?? (rows.length > 0 ? Object.keys(rows[0]) : []))];
}

function formatCell(value: TableCell, column: string, options: TableOptions): string {
  if (typeof value !== "number") return value === null || value === undefined ? "" : String(value);
  if (Number.isInteger(value)) return String(value);
  const digits = typeof options.digits === "number" ? options.digits : options.digits?.[column] ?? 3;
  return value.toFixed(digits);
}

/** A GitHub-flavoured markdown table of `rows` (`|` in cells escaped); see `TableOptions`. */
export function markdownTable(
  rows: readonly Readonly<Record<string, TableCell>>[],
  options: TableOptions = {},
): string {
  const columns = columnsOf(rows, options);
  const line = (cells: string[]) => `| ${cells.map((c) => c.replace(/\|/g, "\\|")).join(" | ")} |`;
  return [
    ...(options.caption ? [`**${options.caption}**`, ""] : []),
    line(columns),
    `|${columns.map(() => "---").join("|")}|`,
    ...rows.map((row) => line(columns.map((c) => formatCell(row[c], c, options)))),
  ].join("\n");
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** An HTML `<table>` of `rows` (numbers right-aligned, text escaped); see `TableOptions`. */
export function htmlTable(
  rows: readonly Readonly<Record<string, TableCell>>[],
  options: TableOptions = {},
): string {
  const columns = columnsOf(rows, options);
  const cell = (tag: string, value: TableCell, column: string) =>
    `<${tag}${typeof value === "number" ? ' style="text-align:right"' : ""}>${
      escapeHtml(formatCell(value, column, options))
    }</${tag}>`;
  return [
    "<table>",
    ...(options.caption ? [`<caption>${escapeHtml(options.caption)}</caption>`] : []),
    `<thead><tr>${columns.map((c) => cell("th", c, c)).join("")}</tr></thead>`,
    "<tbody>",
    ...rows.map((row) => `<tr>${columns.map((c) => cell("td", row[c], c)).join("")}</tr>`),
    "</tbody>",
    "</table>",
  ].join("\n");
}

/** The MIME bundle of a table: `text/html`, `text/markdown` and the markdown as `text/plain`. */
export function tableBundle(
  rows: readonly Readonly<Record<string, TableCell>>[],
  options: TableOptions = {},
): MimeBundle {
  const markdown = markdownTable(rows, options);
  return { "text/html": htmlTable(rows, options), "text/markdown": markdown, "text/plain": markdown };
}

/**
 * Publishes `bundle` as one `display_data` with `metadata.carrot.output` = its number in the session, then waits
 * `settleMs` so that the kernel publishes it before it reports the cell idle. Only inside `deno jupyter`.
 */
export async function show(bundle: MimeBundle, settleMs = SETTLE_MS): Promise<void> {
  await Deno.jupyter.broadcast("display_data", {
    data: bundle,
    metadata: { carrot: { output: ++outputCount } },
    transient: {},
  });
  await new Promise((resolve) => setTimeout(resolve, settleMs));
}

/** Shows a plotly figure (see `figureBundle`); the first figure of the session also loads plotly.js. */
export async function showFigure(figure: PlotlyFigure, options: FigureOptions = {}): Promise<void> {
  const includePlotly = options.includePlotly ?? !plotlySent;
  await show(
    await figureBundle(figure, { ...options, includePlotly }),
    includePlotly ? SETTLE_LARGE_MS : SETTLE_MS,
  );
  if (includePlotly) plotlySent = true;
}

/** Shows a table as HTML, with markdown for renderers without HTML (see `tableBundle`). */
export async function showTable(
  rows: readonly Readonly<Record<string, TableCell>>[],
  options: TableOptions = {},
): Promise<void> {
  await show(tableBundle(rows, options));
}

/** Shows markdown (LaTeX between `$…$` renders in Jupyter). */
export async function showMarkdown(markdown: string): Promise<void> {
  await show({ "text/markdown": markdown, "text/plain": markdown });
}
