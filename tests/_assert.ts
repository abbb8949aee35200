/** Test helpers: tolerance comparison that reports the worst index, and fixture locations. */
import { AssertionError } from "node:assert/strict";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** Asserts |actual − expected| ≤ atol + rtol·|expected| elementwise; the message names the worst index. */
export function assertClose(
  actual: ArrayLike<number> | number,
  expected: ArrayLike<number> | number,
  { rtol = 0, atol = 0, what = "value" }: { rtol?: number; atol?: number; what?: string } = {},
): void {
  const a = typeof actual === "number" ? [actual] : actual;
  const e = typeof expected === "number" ? [expected] : expected;
  if (a.length !== e.length) {
    throw new AssertionError({ message: `${what}: length ${a.length} ≠ ${e.length}` });
  }
  let worst = -1, worstExcess = 0;
  for (let i = 0; i < a.length; i++) {
    const excess = Math.abs(a[i] - e[i]) - (atol + rtol * Math.abs(e[i]));
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) [worst, worstExcess] = [i, excess];
  }
  if (worst >= 0) {
    throw new AssertionError({
      message: `${what}: index ${worst}: got ${a[worst]}, expected ${e[worst]} (rtol ${rtol}, atol ${atol})`,
    });
  }
}

/** Max |a − b| over all entries. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** max_i |a_i − b_i| / max_i |b_i|: the largest error relative to the reference's scale. */
export function relMax(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    [num, den] = [Math.max(num, Math.abs(a[i] - b[i])), Math.max(den, Math.abs(b[i]))];
  }
  return num / den;
}

/** `../shared/fixtures/<sub>` when present, else the committed copy in `tests/fixtures/<sub>`, else undefined. */
export function fixturePath(sub: string): string | undefined {
  for (const base of ["../../shared/fixtures/", "./fixtures/"]) {
    const path = fileURLToPath(new URL(base + sub, import.meta.url));
    if (existsSync(path)) return path;
  }
  return undefined;
}
