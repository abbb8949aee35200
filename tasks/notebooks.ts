/**
 * `deno task notebooks [name…]`: executes the notebooks of `notebooks/` headless with Deno's Jupyter kernel and
 * writes `runs/notebooks/<name>.ipynb` (with outputs) and `runs/notebooks/<name>.html`.
 *
 * Needs Debian's `jupyter-nbconvert` and `python3-nbclient`. The kernel is registered in a temporary
 * `JUPYTER_PATH` (argv: this deno, `jupyter --kernel --conn {connection_file}`), so nothing is written to
 * `~/.local`. A cell error fails the notebook at once; a run whose outputs Deno's kernel lost (the flaky-capture
 * pitfall of `../shared/STACK.md` §3, detected by `notebookOutputProblems`) is retried once. Prints each
 * notebook's wall time and exits non-zero when any notebook failed. Names select notebooks by prefix (`01`).
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { notebookOutputProblems } from "../lib/report/notebook_outputs.ts";
import { log } from "../lib/progress.ts";

const root = new URL("..", import.meta.url).pathname;
const notebookDir = `${root}notebooks`, outDir = `${root}runs/notebooks`;
const KERNEL = "carrot-deno";
/** nbconvert's upstream script URLs: Debian patches them to file:///usr/share/javascript/…, absent elsewhere. */
const HTML_SCRIPTS = [
  "--HTMLExporter.mathjax_url=https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/MathJax.js?config=TeX-AMS_CHTML-full,Safe",
  "--HTMLExporter.require_js_url=https://cdnjs.cloudflare.com/ajax/libs/require.js/2.1.10/require.min.js",
  "--HTMLExporter.jquery_url=https://cdnjs.cloudflare.com/ajax/libs/jquery/2.0.3/jquery.min.js",
];

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: { help: { type: "boolean", default: false } },
  allowPositionals: true,
});
if (values.help) {
  console.log("usage: deno task notebooks [name-prefix …]   (default: every notebooks/*.ipynb)");
  Deno.exit(0);
}
const names = z.array(z.string().regex(/^[\w.-]+$/, "a notebook name or prefix, e.g. 01")).parse(positionals);

const available = [...Deno.readDirSync(notebookDir)].map((e) => e.name).filter((f) => f.endsWith(".ipynb"))
  .map((f) => f.slice(0, -".ipynb".length)).sort();
const selected = names.length === 0 ? available : available.filter((n) => names.some((p) => n.startsWith(p)));
if (selected.length === 0) {
  console.error(
    `deno task notebooks: no notebook matches ${names.join(", ")}; available: ${available.join(", ")}`,
  );
  Deno.exit(2);
}

async function run(command: string, args: string[], env: Record<string, string>) {
  try {
    const out = await new Deno.Command(command, { args, env, stdout: "piped", stderr: "piped" }).output();
    const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    return { ok: out.success, output: decode(out.stdout) + decode(out.stderr) };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(
        `deno task notebooks: \`${command}\` is not installed; install Debian's packages: ` +
          "apt-get install -y jupyter-nbconvert python3-nbclient",
      );
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
await Deno.mkdir(outDir, { recursive: true });
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
    const html = await run("jupyter", [
      "nbconvert",
      "--to",
      "html",
      ...HTML_SCRIPTS,
      "--output-dir",
      outDir,
      `${outDir}/${name}.ipynb`,
    ], env);
    if (!html.ok) {
      log(`${name}: HTML export failed\n${html.output.trimEnd()}`);
      failed.push(name);
      continue;
    }
    const megabytes = (file: string) => (Deno.statSync(`${outDir}/${file}`).size / 2 ** 20).toFixed(1);
    log(
      `${name}: ok in ${seconds.toFixed(1)} s${
        attempt > 1 ? " (second attempt)" : ""
      } → runs/notebooks/${name}.ipynb ` +
        `(${megabytes(`${name}.ipynb`)} MB), .html (${megabytes(`${name}.html`)} MB)`,
    );
  }
} finally {
  await Deno.remove(jupyterPath, { recursive: true });
}
if (failed.length > 0) {
  log(`deno task notebooks: ${failed.length} of ${selected.length} failed: ${failed.join(", ")}`);
  Deno.exit(1);
}
