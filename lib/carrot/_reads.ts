/**
 * The one door from the backend to the CPU: every tensor read of `lib/carrot` goes through `readValues`.
 *
 * On WebGPU a read (`await t.data()`) is a round trip that costs about 13 ms whatever its size (map, copy, sync;
 * `../shared/STACK.md`), on a real GPU as on the llvmpipe adapter, so the solvers are designed around the number
 * of reads rather than the number of kernels: they keep their loop state on the device and read one small packed
 * tensor per iteration (L-BFGS) or per few iterations (block CG). Counting every read here makes that cost
 * visible: `readCount()` for the process, a `ReadTally` for one solver run (reported as `HeadFit.reads`,
 * `CgResult.reads`).
 */
import * as tf from "@tensorflow/tfjs";

/** A scoped read counter: pass it to `readValues` and it counts the reads made on its behalf. */
export interface ReadTally {
  /** Reads counted so far. */
  reads: number;
}

let total = 0;

/**
 * The values of `t` (not consumed), as one GPU→CPU read: increments the process-wide count and `tally`.
 * Float tensors come back as Float32Array, int32 as Int32Array, bool as Uint8Array.
 */
export async function readValues(
  t: tf.Tensor,
  tally?: ReadTally,
): Promise<Float32Array | Int32Array | Uint8Array> {
  total++;
  if (tally) tally.reads++;
  return await t.data();
}

/** The first value of `t` (not consumed), as one counted read. */
export async function readScalar(t: tf.Tensor, tally?: ReadTally): Promise<number> {
  return (await readValues(t, tally))[0];
}

/**
 * Several float tensors in ONE counted read: they are flattened and concatenated on the device, read once and
 * handed back as views, in order. `tensors` are not consumed.
 */
export async function readPacked(tensors: tf.Tensor[], tally?: ReadTally): Promise<Float32Array[]> {
  const packed = tf.tidy(() => tf.concat(tensors.map((t) => t.toFloat().reshape([-1]))));
  const values = (await readValues(packed, tally)) as Float32Array;
  packed.dispose();
  let offset = 0;
  return tensors.map((t) => values.subarray(offset, offset += t.size));
}

/** GPU→CPU reads made through `readValues` by this process so far (for tests and benchmarks: take differences). */
export function readCount(): number {
  return total;
}
