/**
 * `deno task notebooks [--exports dir] [name…]`: executes the notebooks of `notebooks/` headless with Deno's Jupyter
 * kernel, writes `runs/notebooks/<name>.ipynb` (with outputs) and exports each to `<dir>/<name>.html` (default
 * `notebooks/exports/`, committed) with the shared `<dir>/assets/` (see `lib/report/notebook_html.ts`): pages
 * that show the derivations typeset and the figures drawn without network access.
 *
 * Needs Debian's `jupyter-nbconvert` and `python3-nbclient`. The kernel is registered in a temporary
 * `JUPYTER_PATH` (argv: this deno, `jupyter --kernel --conn {connection_file}`), so nothing is written to
 * `~/.local`. A cell error fails the notebook at once; a run whose outputs Deno's kernel lost (the flaky-capture
 * pitfall of `../shared/STACK.md` §3, detected by `notebookOutputProblems`) is retried once. Prints each
 * notebook's wall time and exits non-zero when any notebook failed. Names select notebooks by prefix (`01`).
 */
import { z } from "zod";
import { notebookOutputProblems } from "../lib/report/notebook_outputs.ts";
import { ASSETS_DIR, exportAssets, notebookHtml } from "../lib/report/notebook_html.ts";
import { log } from "../lib/progress.ts";
import { InputError } from "../lib/errors.ts";
import { parseCommandLine, runTask, UsageError } from "./_cli.ts";

const root = new URL("..", import.meta.url).pathname;
const notebookDir = `${root}notebooks`, outDir = `${root}runs/notebooks`;
const KERNEL = "carrot-deno";

const Options = z.object({
  exports: z.string().default("notebooks/exports").describe(
    "folder of the HTML exports (and their assets/)",
  ),
  names: z.array(z.string().regex(/^[\w.-]+$/, "a notebook name or prefix, e.g. 01")).default([]).describe(
    "notebooks to run, by name prefix (default: all)",
  ),
});
const values = parseCommandLine(Options, Deno.args, {
  task: "notebooks",
  summary:
    "Executes notebooks/*.ipynb headless with Deno's Jupyter kernel and writes their offline HTML exports.",
  positionals: "names",
});
const names = values.names;

const available = [...Deno.readDirSync(notebookDir)].map((e) => e.name).filter((f) => f.endsWith(".ipynb"))
  .map((f) => f.slice(0, -".ipynb".length)).sort();
const selected = names.length === 0 ? available : available.filter((n) => names.some((p) => n.startsWith(p)));

async function run(command: string, args: string[], env: Record<string, string>) {
  try {
    const out = await new Deno.Command(command, { args, env, stdout: "piped", stderr: "piped" }).output();
    const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    return { ok: out.success, output: decode(out.stdout) + decode(out.stderr) };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new InputError(`\`${command}\` is not installed`, {
        hint: "install Debian's packages: apt-get install -y jupyter-nbconvert python3-nbclient",
      });
    }
    throw error;
  }
}

/** One headless execution of `name`; returns the problems found, or the nbconvert log on failure. */
async function execute(name: string, env: Record<string, string>) {
  const result = await run("jupyter", [
    "nbconvert",
    "--to",
    "notebook",
    "--execute",
    `--ExecutePreprocessor.kernel_name=${KERNEL}`,
    "--ExecutePreprocessor.timeout=600",
    "--output-dir",
    outDir,
    "--output",
    name,
    `${notebookDir}/${name}.ipynb`,
  ], env);
  if (!result.ok) return { failure: result.output };
  return notebookOutputProblems(JSON.parse(await Deno.readTextFile(`${outDir}/${name}.ipynb`)));
}

await runTask("notebooks", async () => {
  if (selected.length === 0) {
    throw new UsageError(`no notebook matches ${names.join(", ")}; available: ${available.join(", ")}`);
  }
  const jupyterPath = await Deno.makeTempDir({ prefix: "carrot-jupyter-" });
  await Deno.mkdir(`${jupyterPath}/kernels/${KERNEL}`, { recursive: true });
  await Deno.writeTextFile(
    `${jupyterPath}/kernels/${KERNEL}/kernel.json`,
    JSON.stringify({
      argv: [Deno.execPath(), "jupyter", "--kernel", "--conn", "{connection_file}"],
      display_name: "Deno (CARROT headless)",
      language: "typescript",
    }),
  );
  const env = { JUPYTER_PATH: jupyterPath, NO_COLOR: "1" }; // NO_COLOR: plain error traces in the log
  const exportDir = values.exports;
  await Deno.mkdir(outDir, { recursive: true });
  await Deno.mkdir(`${exportDir}/${ASSETS_DIR}`, { recursive: true });
  for (const [file, text] of Object.entries(await exportAssets())) {
    await Deno.writeTextFile(`${exportDir}/${ASSETS_DIR}/${file}`, text);
  }
  const failed: string[] = [];
  try {
    for (const name of selected) {
      const start = performance.now();
      let attempt = 1, result = await execute(name, env);
      if (!("failure" in result) && result.missing.length > 0) {
        log(`${name}: outputs lost (${result.missing.join("; ")}); retrying once`);
        attempt = 2;
        result = await execute(name, env);
      }
      const seconds = (performance.now() - start) / 1000;
      if ("failure" in result) {
        log(
          `${name}: FAILED after ${seconds.toFixed(1)} s\n${
            result.failure.trimEnd().split("\n").slice(-40).join("\n")
          }`,
        );
        failed.push(name);
        continue;
      }
      const problems = [...result.errors, ...result.missing];
      if (problems.length > 0) {
        log(`${name}: FAILED after ${seconds.toFixed(1)} s (attempt ${attempt}): ${problems.join("; ")}`);
        failed.push(name);
        continue;
      }
      const executed = JSON.parse(await Deno.readTextFile(`${outDir}/${name}.ipynb`));
      const exported = `${exportDir}/${name}.html`;
      await Deno.writeTextFile(exported, await notebookHtml(executed, name));
      const megabytes = (path: string) => (Deno.statSync(path).size / 2 ** 20).toFixed(2);
      log(
        `${name}: ok in ${seconds.toFixed(1)} s${attempt > 1 ? " (second attempt)" : ""} → ` +
          `runs/notebooks/${name}.ipynb (${megabytes(`${outDir}/${name}.ipynb`)} MB), ` +
          `${exported} (${megabytes(exported)} MB)`,
      );
    }
  } finally {
    await Deno.remove(jupyterPath, { recursive: true });
  }
  if (failed.length > 0) {
    throw new InputError(`${failed.length} of ${selected.length} notebooks failed: ${failed.join(", ")}`);
  }
});
