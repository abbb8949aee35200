/**
 * Loss trimming: the zeroth-order reweighting that CARROT's selection weighs against its influence paths.
 *
 *   α_i = 0 for the ⌊q n_c⌉ points of each class c with the highest loss ℓ_i,  α_i = s_c otherwise,
 *
 * with s_c = 1 (plain small-loss filtering, Han et al. 2018's "small-loss trick" on a fixed head) or, with
 * `keepClassMass`, s_c = n_c / (n_c − ⌊q n_c⌉) so that Σ_{i∈c} α_i = n_c as on RRO's and L_cf's paths (λ then
 * regularises the same mass). CARROT trims by the out-of-fold losses of its cross-fitted heads at α ≡ 1: a point is
 * judged by heads that never saw it, so memorising a mislabelled point cannot hide it.
 */

/** Options of `lossTrimAlpha`. */
export interface TrimOptions {
  /** Rescale the kept points of each class so that the class keeps its mass n_c (default false). */
  keepClassMass?: boolean;
}

/** α that drops the fraction q ∈ [0, 1) of highest-loss points of every class (see the module JSDoc). */
export function lossTrimAlpha(
  losses: ArrayLike<number>,
  labels: Int32Array,
  fraction: number,
  options: TrimOptions = {},
): Float32Array {
  if (losses.length !== labels.length) {
    throw new RangeError(`lossTrimAlpha: ${losses.length} losses for ${labels.length} labels`);
  }
  if (!(fraction >= 0 && fraction < 1)) {
    throw new RangeError(`lossTrimAlpha: fraction must lie in [0, 1), got ${fraction}`);
  }
  const byClass = new Map<number, number[]>();
  labels.forEach((c, i) => byClass.has(c) ? byClass.get(c)!.push(i) : byClass.set(c, [i]));
  const alpha = new Float32Array(labels.length).fill(1);
  for (const members of byClass.values()) {
    const dropped = Math.round(fraction * members.length);
    if (dropped === members.length) continue; // a class is never emptied
    const kept = options.keepClassMass ? members.length / (members.length - dropped) : 1;
    const order = [...members].sort((a, b) => losses[b] - losses[a]);
    order.forEach((i, rank) => alpha[i] = rank < dropped ? 0 : kept);
  }
  return alpha;
}
