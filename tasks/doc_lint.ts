/**
 * `deno task doc-lint`: `deno doc --lint mod.ts`, except the private-type-ref reports about tfjs's own tensor types
 * (Tensor2D & co. are declared inside the npm package and cannot be made public from here). Every other report
 * (missing JSDoc, private types of our own) fails the task.
 */
const tfjsTypes = /^(Tensor\dD|Tensor|Scalar|Variable|Rank|DataType|TensorLike)$/;
const out = await new Deno.Command(Deno.execPath(), {
  args: ["doc", "--lint", "mod.ts"],
  stdout: "piped",
  stderr: "piped",
})
  .output();
// deno-lint-ignore no-control-regex
const text = new TextDecoder().decode(out.stderr).replace(/\x1b\[[0-9;]*m/g, "");
const reports = text.split(/\n(?=error\[)/).filter((block) => block.startsWith("error["));
const kept = reports.filter((block) => {
  const referenced = block.match(/references private type '([^']+)'/)?.[1];
  return !(block.startsWith("error[private-type-ref]") && referenced && tfjsTypes.test(referenced));
});
for (const block of kept) console.error(block.trimEnd() + "\n");
console.error(
  `doc-lint: ${kept.length} problem(s) (${reports.length - kept.length} tfjs type references ignored)`,
);
Deno.exit(kept.length ? 1 : 0);
