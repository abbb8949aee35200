/**
 * Checks an executed notebook (nbformat 4 JSON) for cell errors and for outputs that Deno's kernel lost.
 *
 * Deno's kernel sometimes publishes a cell's last outputs after it reports idle, and a headless client then drops
 * them (`../shared/STACK.md` §3). The `show…` helpers of `display.ts` number their outputs 1, 2, 3, … in
 * `metadata.carrot.output`, so a lost output leaves a gap in that sequence; a cell that calls a `show…` helper yet
 * has no output at all is also reported (that catches the loss of a notebook's very last output, which leaves no
 * gap). Lines that start with `//` are ignored, so commented-out code does not count as a call.
 */

/** What `notebookOutputProblems` found; both lists are empty for a complete, error-free run. */
export interface NotebookOutputProblems {
  /** One line per error output: `cell 7: RangeError: …`. */
  errors: string[];
  /** One line per lost output: a gap in the output numbers or a silent `show…` cell. */
  missing: string[];
}

interface Output {
  output_type?: string;
  ename?: string;
  evalue?: string;
  metadata?: { carrot?: { output?: number } };
}

interface Cell {
  cell_type?: string;
  source?: string | string[];
  outputs?: Output[];
}

const SHOW_CALL = /\bshow(?:Figure|Table|Markdown)?\s*\(/;

/** Errors and lost outputs of an executed notebook (see the module JSDoc); cells are numbered from 1. */
export function notebookOutputProblems(notebook: unknown): NotebookOutputProblems {
  const cells = (notebook as { cells?: Cell[] })?.cells;
  if (!Array.isArray(cells)) {
    throw new TypeError("notebookOutputProblems: not an nbformat 4 notebook (no cells)");
  }
  const errors: string[] = [], missing: string[] = [];
  let expected = 1;
  cells.forEach((cell, index) => {
    if (cell.cell_type !== "code") return;
    const outputs = cell.outputs ?? [];
    for (const output of outputs) {
      if (output.output_type === "error") errors.push(`cell ${index + 1}: ${output.ename}: ${output.evalue}`);
      const number = output.metadata?.carrot?.output;
      if (number === undefined) continue;
      if (number > expected) {
        const lost = number - expected === 1 ? `output ${expected}` : `outputs ${expected}–${number - 1}`;
        missing.push(`${lost} lost before cell ${index + 1}`);
      }
      expected = Math.max(expected, number + 1);
    }
    const source = Array.isArray(cell.source) ? cell.source.join("") : cell.source ?? "";
    const code = source.split("\n").filter((line) => !line.trimStart().startsWith("//")).join("\n");
    if (outputs.length === 0 && SHOW_CALL.test(code)) {
      missing.push(`cell ${index + 1} shows something but has no output`);
    }
  });
  return { errors, missing };
}
