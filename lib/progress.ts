/**
 * The one place in `lib/` that prints: stage lines and progress bars on stderr.
 *
 * A `Progress` bar redraws in place on a terminal and prints a line every few seconds otherwise (CI logs stay
 * readable). Library functions take an optional `onProgress(done, total)` callback and never print themselves;
 * tasks connect that callback to a bar.
 */

const encoder = new TextEncoder();

/** A sink for log lines; replace it (e.g. in tests or notebooks) with `setLogSink`. */
export type LogSink = (line: string) => void;

let sink: LogSink = (line) => Deno.stderr.writeSync(encoder.encode(line + "\n"));

/** Redirects every line that `log` and `Progress` print; returns the previous sink. */
export function setLogSink(next: LogSink): LogSink {
  const previous = sink;
  sink = next;
  return previous;
}

/** Prints one line on stderr (through the current sink). */
export function log(line: string): void {
  sink(line);
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s` : `${Math.floor(m / 60)}h${m % 60}m`;
}

/** A progress bar with rate and ETA: `label [#####.....] 120/500 32.1 it/s ETA 11.8s` (or `4.2 s/it` when slow). */
export class Progress {
  readonly #label: string;
  readonly #total: number;
  readonly #unit: string;
  readonly #start: number;
  readonly #tty: boolean;
  #last: number;
  #done = 0;
  #finished = false;

  /**
   * `total` items of `unit` (e.g. "img"), timed from `start` (a `performance.now()` value; default now); the bar
   * prints nothing until the first `update`.
   */
  constructor(label: string, total: number, unit = "it", start = performance.now()) {
    this.#start = start;
    this.#label = label;
    this.#total = total;
    this.#unit = unit;
    this.#tty = sink === defaultSinkRef && Deno.stderr.isTerminal();
    this.#last = this.#start; // a bar that completes within the first interval prints only its final line
  }

  /** Sets the number of completed items and redraws at most every 100 ms (TTY) or 5 s (log). */
  update(done: number): void {
    this.#done = done;
    const now = performance.now();
    if (now - this.#last < (this.#tty ? 100 : 5000) && done < this.#total) return;
    this.#last = now;
    this.#draw(done >= this.#total);
  }

  /**
   * Prints the final line with the total time, at `done` items (default: all, or fewer for work that stopped
   * early); once, even after an `update` that completed the bar.
   */
  finish(done = this.#total): void {
    this.#done = done;
    this.#draw(true);
  }

  #draw(final: boolean): void {
    if (this.#finished) return;
    this.#finished = final;
    const elapsed = (performance.now() - this.#start) / 1000;
    const rate = this.#done / Math.max(elapsed, 1e-9);
    const eta = (this.#total - this.#done) / rate;
    const width = 24;
    const filled = Math.round(width * Math.min(1, this.#done / Math.max(this.#total, 1)));
    const bar = "#".repeat(filled) + ".".repeat(width - filled);
    const tail = final ? `in ${formatSeconds(elapsed)}` : `ETA ${formatSeconds(eta)}`;
    // slow work reads better as seconds per item: "12.3 s/refit" rather than "0.1 refit/s"
    const speed = rate > 0 && rate < 1
      ? `${(1 / rate).toFixed(1)} s/${this.#unit}`
      : `${rate.toFixed(1)} ${this.#unit}/s`;
    const line = `${this.#label} [${bar}] ${this.#done}/${this.#total} ${speed} ${tail}`;
    if (this.#tty) {
      Deno.stderr.writeSync(encoder.encode(`\r\x1b[2K${line}${final ? "\n" : ""}`));
    } else {
      sink(line);
    }
  }
}

const defaultSinkRef = sink;

/**
 * Runs `work` with an `onProgress(done, total)` that drives a progress bar (created on the first call, so the
 * total comes from the library), and closes the bar at the count reached (work such as RRO may stop early).
 */
export async function withProgress<T>(
  label: string,
  unit: string,
  work: (onProgress: (done: number, total: number) => void) => Promise<T>,
): Promise<T> {
  let bar: Progress | undefined, reached = 0;
  const start = performance.now(); // rate and ETA count the work before the first callback too
  const value = await work((done, total) => {
    bar ??= new Progress(label, total, unit, start);
    reached = done;
    bar.update(done);
  });
  bar?.finish(reached);
  return value;
}
