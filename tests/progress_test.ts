import assert from "node:assert/strict";
import { Progress, setLogSink, withProgress } from "../lib/progress.ts";

Deno.test("Progress prints its final line once, with rate and total time", async () => {
  const lines: string[] = [];
  const previous = setLogSink((line) => lines.push(line));
  try {
    const bar = new Progress("images", 3, "img");
    bar.update(1); // within 5 s of the start on a log sink: nothing
    bar.update(3); // complete: the final line
    bar.finish(); // already final: nothing more
    const stopped = new Progress("steps", 20, "step");
    stopped.update(3);
    stopped.finish(3); // work that ended early
  } finally {
    setLogSink(previous);
  }
  // a slow bar reports seconds per item
  const slow = new Progress("fits", 2, "fit");
  setLogSink((line) => lines.push(line));
  try {
    await new Promise((resolve) => setTimeout(resolve, 1100));
    slow.finish(1);
  } finally {
    setLogSink(previous);
  }
  assert.equal(lines.length, 3, lines.join("\n"));
  assert.match(lines[2], /^fits \[#{12}\.{12}\] 1\/2 1\.\d s\/fit in 1\.\ds$/);
  assert.match(lines[0], /^images \[#{24}\] 3\/3 [\d.]+ img\/s in [\d.]+s$/);
  assert.match(lines[1], /^steps \[#{4}\.{20}\] 3\/20 [\d.]+ step\/s in [\d.]+s$/);
});

Deno.test("withProgress times the work from its start and closes the bar where the work stopped", async () => {
  const lines: string[] = [];
  const previous = setLogSink((line) => lines.push(line));
  let value: string;
  try {
    value = await withProgress("steps", "step", async (onProgress) => {
      await new Promise((resolve) => setTimeout(resolve, 1100)); // set-up before the first step
      onProgress(1, 4);
      return "result";
    });
  } finally {
    setLogSink(previous);
  }
  assert.equal(value, "result");
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(lines[0], /^steps \[#{6}\.{18}\] 1\/4 1\.\d s\/step in 1\.\ds$/);
});
