/**
 * Loss trimming: the zeroth-order reweighting that CARROT's selection weighs against its influence paths.
 *
 *   α_i = 0 for the ⌊q n_c⌉ points of each class c with the highest loss ℓ_i,  α_i = s_c otherwise,
 *
 * with s_c = 1 (plain small-loss filtering, Han et al. 2018's "small-loss trick" on a fixed head) or, with
 * `keepClassMass`, s_c = n_c / (n_c − ⌊q n_c⌉) so that Σ_{i∈c} α_i = n_c as on RRO's and L_cf's paths (λ then
 * regularises the same mass). CARROT trims by the out-of-fold losses of its cross-fitted heads at α ≡ 1: a point is
 * judged by heads that never saw it, so memorising a mislabelled point cannot hide it.
 *
 * Graded trimming averages the mass-keeping trims over a set Q of fractions,
 *
 *   α^graded = (1/|Q|) Σ_{q∈Q} α^trim(q),
 *
 * so that a point's weight falls in steps with its loss rank within its class (with Q = {0.1, 0.2, 0.3}: 0 in the
 * top 10%, then about 1/3, 2/3 and 1, times the mass factors). Where the ranking finds mislabelled points only
 * with moderate precision, the points ranked just above a hard cut are neither surely clean nor surely not; a
 * weight between 0 and 1 hedges them, and the noise rate, which decides where a hard cut belongs, need not be
 * known.
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

/** The mean of the mass-keeping trims at every fraction of `fractions` (see the module JSDoc). */
export function gradedTrimAlpha(
  losses: ArrayLike<number>,
  labels: Int32Array,
  fractions: readonly number[],
): Float32Array {
  if (fractions.length === 0) throw new RangeError("gradedTrimAlpha: fractions is empty");
  return meanAlpha(
    fractions.map((fraction) => lossTrimAlpha(losses, labels, fraction, { keepClassMass: true })),
  );
}

/** (1/R) Σ_r α^(r), summed in order (for trims already computed; `gradedTrimAlpha` is its use on trims). */
export function meanAlpha(alphas: readonly Float32Array[]): Float32Array {
  const alpha = new Float32Array(alphas[0].length);
  for (const a of alphas) a.forEach((value, i) => alpha[i] += value / alphas.length);
  return alpha;
}
