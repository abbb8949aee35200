import assert from "node:assert/strict";
import { notebookOutputProblems } from "../../lib/report/notebook_outputs.ts";

const shown = (n: number) => ({ output_type: "display_data", data: {}, metadata: { carrot: { output: n } } });
const cell = (source: string | string[], ...outputs: unknown[]) => ({ cell_type: "code", source, outputs });
const markdown = { cell_type: "markdown", source: "await show(x)" };

Deno.test("notebookOutputProblems() accepts a complete run", () => {
  const notebook = {
    cells: [
      markdown,
      cell("const a = 1;"),
      cell("await showFigure(f);\nawait showTable(t);", shown(1), shown(2)),
      cell("// await showMarkdown('not run')"),
      cell(["await show", "Markdown(`done`);"], shown(3)), // nbformat may split source into lines,
    ],
  };
  assert.deepEqual(notebookOutputProblems(notebook), { errors: [], missing: [] });
});

Deno.test("notebookOutputProblems() reports gaps, silent show cells and errors by cell", () => {
  const notebook = {
    cells: [
      cell("await showTable(t);", shown(1)),
      cell("for (const x of xs) await showFigure(x);", shown(2), shown(5)),
      cell("await showMarkdown(`end`);"),
      cell("throw new RangeError('bad');", { output_type: "error", ename: "RangeError", evalue: "bad" }),
    ],
  };
  assert.deepEqual(notebookOutputProblems(notebook), {
    errors: ["cell 4: RangeError: bad"],
    missing: ["outputs 3–4 lost before cell 2", "cell 3 shows something but has no output"],
  });
});

Deno.test("notebookOutputProblems() refuses what is not a notebook", () => {
  assert.throws(() => notebookOutputProblems({ worksheets: [] }), TypeError);
});
