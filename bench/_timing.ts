/** Benchmark helpers: wall time of async work, and the reference figures of `../shared/REFERENCE.md`. */

/** Runs `work` and returns its result with the wall time in seconds. */
export async function timed<T>(work: () => Promise<T>): Promise<{ result: T; seconds: number }> {
  const start = performance.now();
  const result = await work();
  return { result, seconds: (performance.now() - start) / 1000 };
}

/** A reference figure with both BLAS settings of REFERENCE.md (Debian default kernels, SkylakeX kernels). */
export interface Reference {
  what: string;
  debian: number;
  skylakeX: number;
}

/** "3.2 s  (ratio: 0.61× Debian-BLAS sklearn, 1.45× SkylakeX sklearn)": ratio = ours / reference. */
export function versus(seconds: number, reference: Reference): string {
  const r = (x: number) => `${(seconds / x).toFixed(2)}×`;
  return `${seconds.toFixed(2)} s  (ours / ${reference.what}: ${r(reference.debian)} of Debian-BLAS ` +
    `${reference.debian} s, ${r(reference.skylakeX)} of SkylakeX ${reference.skylakeX} s; < 1 means faster)`;
}
