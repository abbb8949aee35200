/**
 * Cooperative yielding for long numeric loops. On the WASM and CPU backends a tensor read resolves at once, so
 * `await t.data()` is a microtask and never lets the event loop run: a solver loop would hold off signal handlers
 * (Ctrl-C) and timers until it ends. Loops call `yieldToEventLoop()` once per iteration; it yields (one macrotask,
 * well under a millisecond) only when `intervalMs` of work have passed since the last yield.
 */

let last = performance.now();

/** Lets pending events run if more than `intervalMs` (default 100) have passed since the last yield. */
export async function yieldToEventLoop(intervalMs = 100): Promise<void> {
  if (performance.now() - last < intervalMs) return;
  await new Promise((resolve) => setTimeout(resolve, 0));
  last = performance.now();
}
