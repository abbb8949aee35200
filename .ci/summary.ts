/** Prints "N passed, N failed, N skipped" from a `deno test --junit-path` report (counts of <testcase> elements). */
const xml = Deno.readTextFileSync(Deno.args[0]);
const cases = xml.match(/<testcase\b[\s\S]*?(?:\/>|<\/testcase>)/g) ?? [];
let failed = 0, skipped = 0;
for (const c of cases) {
  if (/<(failure|error)\b/.test(c)) failed++;
  else if (/<skipped\b/.test(c)) skipped++;
}
console.log(`${cases.length - failed - skipped} passed, ${failed} failed, ${skipped} skipped`);
