/**
 * The notebooks of `notebooks/`: committed with outputs cleared, and (where Debian's jupyter-nbconvert and
 * python3-nbclient are installed) executed headless by `deno task notebooks` without errors or lost outputs and
 * exported to HTML (into a temporary folder: the committed exports are checked by `notebook_exports_test.ts`).
 */
import assert from "node:assert/strict";
import { notebookOutputProblems } from "../lib/report/notebook_outputs.ts";

const root = new URL("..", import.meta.url).pathname;
const names = [...Deno.readDirSync(`${root}notebooks`)].map((e) => e.name).filter((f) => f.endsWith(".ipynb"))
  .map((f) => f.slice(0, -".ipynb".length)).sort();

function jupyterInstalled(): boolean {
  try {
    return new Deno.Command("jupyter", { args: ["nbconvert", "--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}
const installed = jupyterInstalled();

Deno.test("notebooks are committed with outputs cleared, for Deno's kernel", () => {
  for (
    const required of [
      "01_theorem_a_representer",
      "02_theorem_b_influence",
      "03_rank_agreement",
      "04_main_experiments",
    ]
  ) {
    assert.ok(names.includes(required), `notebooks/${required}.ipynb is missing`);
  }
  for (const name of names) {
    const notebook = JSON.parse(Deno.readTextFileSync(`${root}notebooks/${name}.ipynb`));
    assert.equal(notebook.metadata.kernelspec.name, "deno", name);
    for (const [index, cell] of notebook.cells.entries()) {
      if (cell.cell_type !== "code") continue;
      assert.deepEqual(
        [cell.outputs, cell.execution_count],
        [[], null],
        `${name} cell ${index + 1} has outputs`,
      );
    }
  }
});

Deno.test({
  name: installed
    ? "deno task notebooks executes every notebook headless with the Deno kernel"
    : "deno task notebooks — IGNORED: jupyter is not installed (apt-get install jupyter-nbconvert python3-nbclient)",
  ignore: !installed,
  async fn() {
    const exportDir = await Deno.makeTempDir();
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["task", "notebooks", "--exports", exportDir],
        cwd: root,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const log = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.ok(out.success, log);
      for (const name of names) {
        const executed = JSON.parse(await Deno.readTextFile(`${root}runs/notebooks/${name}.ipynb`));
        assert.deepEqual(notebookOutputProblems(executed), { errors: [], missing: [] }, name);
        assert.ok((await Deno.stat(`${exportDir}/${name}.html`)).size > 0, `${name}.html`);
      }
    } finally {
      await Deno.remove(exportDir, { recursive: true });
    }
  },
});
