/**
 * `deno task train`: images → features → explained, reweighted classifier. The end-to-end pipeline lands with
 * the pipeline issue (#8); until then this entry point exists, says so, and exits non-zero.
 */
console.error(
  "deno task train: not yet — the end-to-end pipeline is issue #8 (see `issues list`). " +
    "Available now: the head and representer API in mod.ts (fitHead, explain), `deno task test`, `deno task bench`.",
);
Deno.exit(1);
