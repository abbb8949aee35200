/**
 * The learning-rate schedule of fine-tuning: linear warm-up, then cosine decay (Loshchilov & Hutter, "SGDR:
 * Stochastic Gradient Descent with Warm Restarts", ICLR 2017, without restarts), per optimiser update.
 */

/** Schedule settings: peak η, floor η_min, warm-up updates W and total updates T. */
export interface CosineSchedule {
  /** Peak learning rate η, reached at the end of the warm-up. */
  base: number;
  /** Final learning rate η_min. */
  min: number;
  /** Warm-up updates W ≥ 0. */
  warmup: number;
  /** Total updates T ≥ 1. */
  total: number;
}

/**
 * η_t for update t = 0, 1, …, T − 1: η (t + 1)/W during the warm-up (t < W), then
 * η_min + ½ (η − η_min)(1 + cos(π (t − W) / (T − W))), which starts at η and approaches η_min at the last update.
 */
export function cosineLearningRate(t: number, s: CosineSchedule): number {
  if (t < s.warmup) return s.base * (t + 1) / s.warmup;
  const progress = (t - s.warmup) / Math.max(1, s.total - s.warmup);
  return s.min + 0.5 * (s.base - s.min) * (1 + Math.cos(Math.PI * progress));
}
