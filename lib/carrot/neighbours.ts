/**
 * k-NN label disagreement: a detector of mislabelled training points that needs no head (Deep k-NN, Bahri et al.
 * 2020; SimiFeat, Zhu et al. 2022), offered to CARROT's selection beside the out-of-fold loss.
 *
 *   u_i = (h_i − h̄) / ‖h_i − h̄‖,   N_k(i) = the k training points j ≠ i with the largest u_iᵀ u_j,
 *   m_i = #{ j ∈ N_k(i) : y_j ≠ y_i }.
 *
 * The out-of-fold loss judges a point by linear heads fitted without it; m_i judges it by the labels of its
 * neighbours in feature space, which suits features whose classes are clusters a linear head separates badly
 * (pretrained image features) and suits the Gaussian classes of the synthetic generator worse — the selection on
 * val decides which detector's trims to use. Trimming by m_i uses the score
 *
 *   s_i = m_i + ℓ_i / (1 + max_j ℓ_j),
 *
 * whose second term lies in [0, 1): it orders only points with equal counts, by their out-of-fold loss ℓ_i.
 */
import * as tf from "@tensorflow/tfjs";
import type { LabeledFeatures } from "./labeled_features.ts";
import { readValues } from "./_reads.ts";
import { unitRows } from "./knn.ts";

/** Options of `neighbourDisagreement`. */
export interface NeighbourOptions {
  /** Bytes of one block of the n × n similarity matrix (default 64 MiB: under WebGPU's 128 MiB binding limit). */
  blockBytes?: number;
}

/**
 * m_i (see the module JSDoc) for every training point, with k' = min(k, n − 1) neighbours: the similarities are
 * computed in blocks of rows (memory O(block · n)), one read per block.
 */
export async function neighbourDisagreement(
  train: LabeledFeatures,
  k: number,
  options: NeighbourOptions = {},
): Promise<Int32Array> {
  const [n] = train.features.shape, labels = train.labels;
  if (!(Number.isInteger(k) && k >= 1)) {
    throw new RangeError(`neighbourDisagreement: k must be an integer ≥ 1, got ${k}`);
  }
  if (labels.length !== n) {
    throw new RangeError(`neighbourDisagreement: ${labels.length} labels for ${n} rows`);
  }
  const counts = new Int32Array(n), neighbours = Math.min(k, n - 1);
  if (neighbours < 1) return counts;
  const rows = Math.max(1, Math.floor((options.blockBytes ?? 64 * 2 ** 20) / (4 * n)));
  const unit = tf.tidy(() => unitRows(tf.sub(train.features, tf.mean(train.features, 0))));
  try {
    for (let start = 0; start < n; start += rows) {
      const size = Math.min(rows, n - start);
      const nearest = tf.tidy(() => {
        const similarity = tf.matMul(unit.slice([start, 0], [size, -1]), unit, false, true);
        // the point itself is pushed below every other (cosine similarities lie in [−1, 1])
        const self = tf.oneHot(tf.range(start, start + size, 1, "int32"), n).mul(4);
        return tf.topk(tf.sub(similarity, self), neighbours).indices;
      });
      const indices = (await readValues(nearest)) as Int32Array;
      nearest.dispose();
      for (let r = 0; r < size; r++) {
        const y = labels[start + r];
        let m = 0;
        for (let j = 0; j < neighbours; j++) m += Number(labels[indices[r * neighbours + j]] !== y);
        counts[start + r] = m;
      }
    }
  } finally {
    unit.dispose();
  }
  return counts;
}

/** s_i = m_i + ℓ_i / (1 + max_j ℓ_j): trimming scores that order by the count, then by the loss ℓ ≥ 0. */
export function neighbourTrimScores(counts: Int32Array, losses: ArrayLike<number>): Float64Array {
  if (counts.length !== losses.length) {
    throw new RangeError(`neighbourTrimScores: ${counts.length} counts for ${losses.length} losses`);
  }
  let max = 0;
  for (let i = 0; i < losses.length; i++) max = Math.max(max, losses[i]);
  return Float64Array.from(counts, (m, i) => m + losses[i] / (1 + max));
}
