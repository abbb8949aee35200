/**
 * Plotly figure specs for CARROT's checks: scatter against the identity line (a computed quantity against its
 * ground truth), lines (trajectories, curves over K or λ) and grouped bars with error bars (mean ± std over
 * seeds). Pure functions from series to `PlotlyFigure`; `display.ts` shows them. Values are rounded to six
 * significant digits (float32 carries about seven) to keep notebooks small; NaN becomes a gap.
 */
import type { PlotlyFigure } from "./display.ts";

/** One data series. */
export interface Series {
  /** Legend name. */
  name: string;
  /** Abscissae (numbers) or categories (strings, for bars). */
  x: ArrayLike<number> | readonly string[];
  /** Ordinates, one per x. */
  y: ArrayLike<number>;
  /** Symmetric error bars ±error, one per x (e.g. the standard deviation over seeds). */
  error?: ArrayLike<number>;
  /** Hover text, one per x. */
  text?: readonly string[];
}

/** Titles, scales and size shared by the builders. */
export interface AxesOptions {
  /** Figure title. */
  title?: string;
  /** x-axis title. */
  xTitle?: string;
  /** y-axis title. */
  yTitle?: string;
  /** Logarithmic x axis (default false). */
  xLog?: boolean;
  /** Logarithmic y axis (default false). */
  yLog?: boolean;
  /** Height in pixels (default 420). */
  height?: number;
}

function compact(values: ArrayLike<number> | readonly string[]): (number | string | null)[] {
  return Array.from(
    values as ArrayLike<number | string>,
    (v) => typeof v === "string" ? v : Number.isFinite(v) ? Number(v.toPrecision(6)) : null,
  );
}

function checkLengths(series: Series, what: string): void {
  for (const [key, values] of [["y", series.y], ["error", series.error], ["text", series.text]] as const) {
    if (values && values.length !== series.x.length) {
      throw new RangeError(
        `${what}: series "${series.name}" has ${series.x.length} x values but ${values.length} ${key} values`,
      );
    }
  }
}

function trace(series: Series, what: string, fields: Record<string, unknown>): Record<string, unknown> {
  checkLengths(series, what);
  return {
    name: series.name,
    x: compact(series.x),
    y: compact(series.y),
    ...(series.error ? { error_y: { type: "data", array: compact(series.error), visible: true } } : {}),
    ...(series.text ? { text: [...series.text], hoverinfo: "x+y+text+name" } : {}),
    ...fields,
  };
}

function layout(options: AxesOptions, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const axis = (title: string | undefined, log: boolean | undefined) => ({
    title: { text: title ?? "" },
    // linear unless asked; "-" lets plotly detect categories (bar charts over named groups)
    type: log ? "log" : "-",
    zeroline: false,
  });
  return {
    title: { text: options.title ?? "" },
    xaxis: axis(options.xTitle, options.xLog),
    yaxis: axis(options.yTitle, options.yLog),
    height: options.height ?? 420,
    margin: { l: 70, r: 20, t: 50, b: 60 },
    legend: { orientation: "h", y: -0.2 },
    ...extra,
  };
}

/**
 * Markers, one trace per series; with `identity` a dashed y = x line over the joint range of all finite x and y
 * values, so that a computed quantity plotted against its ground truth falls on it when they agree.
 */
export function scatterFigure(
  series: readonly Series[],
  options: AxesOptions & { identity?: boolean } = {},
): PlotlyFigure {
  const data = series.map((s) => trace(s, "scatterFigure", { type: "scatter", mode: "markers" }));
  if (options.identity) {
    const values = series.flatMap((s) => [...Array.from(s.x as ArrayLike<number>), ...Array.from(s.y)])
      .filter(
        (v) => Number.isFinite(v) && (!(options.xLog || options.yLog) || v > 0),
      );
    if (values.length > 0) {
      const low = Math.min(...values), high = Math.max(...values);
      data.push({
        name: "y = x",
        x: compact([low, high]),
        y: compact([low, high]),
        type: "scatter",
        mode: "lines",
        line: { dash: "dash", color: "gray", width: 1 },
        hoverinfo: "skip",
      });
    }
  }
  return { data, layout: layout(options) };
}

/** Lines with markers, one trace per series (trajectories over steps, curves over K or λ). */
export function lineFigure(series: readonly Series[], options: AxesOptions = {}): PlotlyFigure {
  return {
    data: series.map((s) => trace(s, "lineFigure", { type: "scatter", mode: "lines+markers" })),
    layout: layout(options),
  };
}

/** Grouped bars, one colour per series, with error bars where a series has `error` (mean ± std over seeds). */
export function barFigure(series: readonly Series[], options: AxesOptions = {}): PlotlyFigure {
  return {
    data: series.map((s) => trace(s, "barFigure", { type: "bar" })),
    layout: layout(options, { barmode: "group" }),
  };
}
