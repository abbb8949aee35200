/**
 * Synthetic fine-grained features with ground truth: the fast testbed for attribution, influence and
 * reweighting.
 *
 * Classes sit in groups (like bird families). A point of true class c in group g has features x ∈ R^d,
 * written as d_s = d − `shortcut.dims` semantic coordinates followed by `shortcut.dims` shortcut coordinates:
 *
 *   semantic:  x = μ_g + δ_c + ν U z + ε,    z ~ N(0, I_r), ε ~ N(0, I)
 *   shortcut:  x = ε,  plus s·u_c on train points flagged `shortcut`
 *
 * with group centres μ_g ~ N(0, (S_g² / 2d_s) I) and class offsets δ_c ~ N(0, (S_c² / 2d_s) I), so that
 * E‖μ_g − μ_h‖² = S_g² (`separation.group`) and sibling means are S_c (`separation.class`) apart on average;
 * U [d_s, r] has orthonormal columns shared by all classes (nuisance: pose, light, background), ν =
 * `nuisance.scale`; u_c is a random unit vector per class and s = `shortcut.strength`. All scales are in
 * units of the isotropic noise (std 1 per coordinate). The axes are not rotated: a linear head with an L2
 * penalty is rotation invariant, so this loses nothing and keeps the shortcut coordinates easy to find
 * (`shortcutColumns`).
 *
 * Only the train split is corrupted. Label noise flips y_i with probability `labelNoise.rate`; in
 * "within-group" mode the new label is a random sibling (same group) with probability
 * `labelNoise.withinGroupShare`, else a random class of another group; in "uniform" mode it is any other
 * class. The shortcut encodes the *true* class (a property of the photo, like a background that came with the
 * species, not of the annotator). Val and test keep their true labels and carry no shortcut, so whatever a
 * head learns from the shortcut cannot help there.
 *
 * Determinism: separate `Random` streams (derived from `seed`) draw the class structure, each split's points,
 * the flips and the shortcut flags, so changing `labelNoise` changes only the train labels, and changing
 * `shortcut.rate` or `shortcut.strength` only the shortcut coordinates of train points: experiments across
 * noise rates are paired on the same features, and the points flipped at a lower rate are a subset of those
 * flipped at a higher one.
 *
 * Defaults were chosen for difficulty alone, not for any attribution or reweighting method. Group centres 12
 * apart make the group obvious (nearest class mean finds it for > 99% of test points); siblings 3.5 apart,
 * against unit noise plus a rank-4 nuisance of std 4, make the class within a group hard. Measured with clean
 * labels (seeds 0–2, `fitHead`, λ = 10 to 30): 69–74% test accuracy for the linear head, 44–48% for nearest
 * class mean, 2% chance; with 20% / 40% within-group noise the head gets 58–63% / 44–50%. Default noise 0.2
 * is the middle of the studied range 0–0.4, so that `makeFineGrainedFeatures({ seed })` has ground-truth
 * flags to find; studies pass the rate. The default shortcut (10% of train points, norm 5 in 8 coordinates)
 * identifies the class of a flagged point about 89% of the time from its shortcut coordinates alone, yet
 * moves the clean test accuracy by only about 1 point.
 */
import * as tf from "@tensorflow/tfjs";
import type { LabeledFeatures } from "../carrot/labeled_features.ts";
import { Random } from "../random.ts";

/** Names of the three splits. */
export type SplitName = "train" | "val" | "test";

/** Options of `makeFineGrainedFeatures`; every field has a documented default. */
export interface FineGrainedOptions {
  /** Start from a named preset (`"cub"`: `cubSizedPreset`); the other fields override it. */
  preset?: "cub";
  /** K (default 50). */
  numClasses?: number;
  /** Number of groups; class c belongs to group ⌊c·groups/K⌋ (default 10, i.e. 5 classes per group). */
  groups?: number;
  /** d, including the shortcut coordinates (default 64). */
  dim?: number;
  /** Points per true class in each split (default train 30, val 10, test 30); wins over a preset's sizes. */
  perClass?: Partial<Record<SplitName, number>>;
  /**
   * Total points per split, overriding `perClass`: the first n mod K classes get ⌈n/K⌉ points, the rest ⌊n/K⌋
   * (for dataset-shaped sizes such as CUB's 5994 train images).
   */
  splitSizes?: Record<SplitName, number>;
  /** Expected distance between group centres and between sibling means (default group 12, class 3.5). */
  separation?: { group?: number; class?: number };
  /** Shared low-rank nuisance: rank r and std ν along each direction (default rank 4, scale 4). */
  nuisance?: { rank?: number; scale?: number };
  /**
   * Train label noise: flip probability (default 0.2), mode (default "within-group") and, in that mode, the
   * share of flips that go to a sibling rather than another group (default 0.9).
   */
  labelNoise?: { rate?: number; mode?: "within-group" | "uniform"; withinGroupShare?: number };
  /**
   * Shortcut: fraction of train points that carry it (default 0.1), its norm s (default 5) and the number of
   * coordinates it lives in (default 8, the last ones).
   */
  shortcut?: { rate?: number; strength?: number; dims?: number };
  /** Seed of every random draw (default 0). */
  seed?: number;
}

/** Every option resolved (as in `FineGrainedOptions`): what was generated, for sidecars and reports. */
export interface FineGrainedConfig {
  /** K. */
  numClasses: number;
  /** Number of groups. */
  groups: number;
  /** d, including the shortcut coordinates. */
  dim: number;
  /** Points per split. */
  splitSizes: Record<SplitName, number>;
  /** S_g and S_c. */
  separation: { group: number; class: number };
  /** r and ν. */
  nuisance: { rank: number; scale: number };
  /** Train label noise. */
  labelNoise: { rate: number; mode: "within-group" | "uniform"; withinGroupShare: number };
  /** Fraction flagged, s, and number of shortcut coordinates. */
  shortcut: { rate: number; strength: number; dims: number };
  /** Seed of every random draw. */
  seed: number;
}

/** A generated split: features `[n, d]` (caller disposes), observed labels, and the true labels. */
export interface SyntheticSplit extends LabeledFeatures {
  /** The class each point was drawn from (`labels` differ only on mislabeled train points). */
  trueLabels: Int32Array;
}

/** The train split with its ground-truth flags (1 = yes) per point. */
export interface SyntheticTrainSplit extends SyntheticSplit {
  /** `labels[i] ≠ trueLabels[i]`. */
  mislabeled: Uint8Array;
  /** Point i carries the shortcut s·u_{trueLabels[i]} in `shortcutColumns`. */
  shortcut: Uint8Array;
}

/** The result of `makeFineGrainedFeatures`. */
export interface FineGrainedFeatures {
  /** Noisy labels, shortcut on flagged points. */
  train: SyntheticTrainSplit;
  /** Clean labels, no shortcut: the trusted split for validation losses and reweighting. */
  val: SyntheticSplit;
  /** Clean labels, no shortcut. */
  test: SyntheticSplit;
  /** Group of each class `[K]`. */
  groupOf: Int32Array;
  /** Indices of the shortcut coordinates (the last `shortcut.dims` of d). */
  shortcutColumns: Int32Array;
  /** The resolved options. */
  config: FineGrainedConfig;
}

/**
 * CUB-200-2011-sized problem for benchmarks: K = 200 in 40 groups of 5, d = 768 (ViT-B features), 5994 train
 * and 5794 test points as in CUB, and 2000 val points (10 per class; CUB has no val split); about 52 MB of
 * float32, generated in about 0.6 s. Sibling means sit 4.5 apart instead of 3.5: with d = 768 and about 30
 * points per class the means are estimated with much more noise than at d = 64, and 4.5 brings the clean
 * linear-probe test accuracy (≈ 66%, λ = 30..100) near that of the default problem (≈ 70%) instead of ≈ 48%.
 */
export const cubSizedPreset: Readonly<FineGrainedOptions> = Object.freeze({
  numClasses: 200,
  groups: 40,
  dim: 768,
  splitSizes: { train: 5994, val: 2000, test: 5794 },
  separation: { class: 4.5 },
});

const defaults: Omit<FineGrainedConfig, "splitSizes"> = {
  numClasses: 50,
  groups: 10,
  dim: 64,
  separation: { group: 12, class: 3.5 },
  nuisance: { rank: 4, scale: 4 },
  labelNoise: { rate: 0.2, mode: "within-group", withinGroupShare: 0.9 },
  shortcut: { rate: 0.1, strength: 5, dims: 8 },
  seed: 0,
};
const defaultPerClass: Record<SplitName, number> = { train: 30, val: 10, test: 30 };

/** Defaults, then the preset, then `options`, field by field inside the nested option objects. */
function resolve(options: FineGrainedOptions): FineGrainedConfig {
  const preset: FineGrainedOptions = options.preset === "cub" ? cubSizedPreset : {};
  const numClasses = options.numClasses ?? preset.numClasses ?? defaults.numClasses;
  const fromPerClass = (perClass: FineGrainedOptions["perClass"]) => {
    const n = { ...defaultPerClass, ...perClass };
    return { train: n.train * numClasses, val: n.val * numClasses, test: n.test * numClasses };
  };
  const config: FineGrainedConfig = {
    numClasses,
    groups: options.groups ?? preset.groups ?? defaults.groups,
    dim: options.dim ?? preset.dim ?? defaults.dim,
    splitSizes: options.splitSizes ?? (options.perClass ? fromPerClass(options.perClass) : undefined) ??
      preset.splitSizes ?? fromPerClass(preset.perClass),
    separation: { ...defaults.separation, ...preset.separation, ...options.separation },
    nuisance: { ...defaults.nuisance, ...preset.nuisance, ...options.nuisance },
    labelNoise: { ...defaults.labelNoise, ...preset.labelNoise, ...options.labelNoise },
    shortcut: { ...defaults.shortcut, ...preset.shortcut, ...options.shortcut },
    seed: options.seed ?? preset.seed ?? defaults.seed,
  };
  check(config);
  return config;
}

function check(c: FineGrainedConfig): void {
  const fail = (what: string, value: unknown, rule: string) => {
    throw new RangeError(`makeFineGrainedFeatures: ${what} = ${JSON.stringify(value)}; ${rule}`);
  };
  const isCount = (v: number, min: number) => Number.isInteger(v) && v >= min;
  if (!isCount(c.numClasses, 2)) fail("numClasses", c.numClasses, "use an integer ≥ 2");
  if (!isCount(c.groups, 1) || c.groups > c.numClasses) {
    fail("groups", c.groups, "use an integer in 1..numClasses");
  }
  if (!isCount(c.shortcut.dims, 0)) fail("shortcut.dims", c.shortcut.dims, "use an integer ≥ 0");
  if (!isCount(c.dim, c.shortcut.dims + 1)) fail("dim", c.dim, "use an integer > shortcut.dims");
  if (!isCount(c.nuisance.rank, 0) || c.nuisance.rank > c.dim - c.shortcut.dims) {
    fail("nuisance.rank", c.nuisance.rank, "use an integer in 0..dim − shortcut.dims");
  }
  if (!Number.isInteger(c.seed)) fail("seed", c.seed, "use an integer");
  for (const split of ["train", "val", "test"] as const) {
    if (!isCount(c.splitSizes[split], 1)) fail(`size of ${split}`, c.splitSizes[split], "use an integer ≥ 1");
  }
  const probabilities = {
    "labelNoise.rate": c.labelNoise.rate,
    "labelNoise.withinGroupShare": c.labelNoise.withinGroupShare,
    "shortcut.rate": c.shortcut.rate,
  };
  for (const [what, v] of Object.entries(probabilities)) {
    if (!(v >= 0 && v <= 1)) fail(what, v, "use a probability in [0, 1]");
  }
  if (c.labelNoise.mode !== "within-group" && c.labelNoise.mode !== "uniform") {
    fail("labelNoise.mode", c.labelNoise.mode, 'use "within-group" or "uniform"');
  }
  const scales = {
    "separation.group": c.separation.group,
    "separation.class": c.separation.class,
    "nuisance.scale": c.nuisance.scale,
    "shortcut.strength": c.shortcut.strength,
  };
  for (const [what, v] of Object.entries(scales)) {
    if (!(v >= 0 && Number.isFinite(v))) fail(what, v, "use a finite number ≥ 0");
  }
}

/** Independent streams, one per component, so that changing one option leaves the others' draws unchanged. */
function streams(seed: number) {
  const master = new Random(seed);
  const next = () => new Random(Math.floor(master.uniform() * 4294967296));
  return { structure: next(), train: next(), val: next(), test: next(), flips: next(), shortcut: next() };
}

/** `count` vectors of length `length`, entries N(0, std²), row-major. */
function gaussianRows(rng: Random, count: number, length: number, std: number): Float64Array {
  return Float64Array.from({ length: count * length }, () => std * rng.normal());
}

/** r orthonormal vectors in R^length (Gram–Schmidt on Gaussian draws), row-major `[r, length]`. */
function orthonormalRows(rng: Random, rank: number, length: number): Float64Array {
  const rows = gaussianRows(rng, rank, length, 1);
  for (let a = 0; a < rank; a++) {
    const u = rows.subarray(a * length, (a + 1) * length);
    for (let b = 0; b < a; b++) {
      const v = rows.subarray(b * length, (b + 1) * length);
      let dot = 0;
      for (let j = 0; j < length; j++) dot += u[j] * v[j];
      for (let j = 0; j < length; j++) u[j] -= dot * v[j];
    }
    let norm = 0;
    for (let j = 0; j < length; j++) norm += u[j] * u[j];
    for (let j = 0; j < length; j++) u[j] /= Math.sqrt(norm);
  }
  return rows;
}

/** Class structure: means μ_g + δ_c `[K, d_s]`, nuisance directions ν U `[r, d_s]`, codes s·u_c `[K, dims]`. */
function drawStructure(c: FineGrainedConfig, groupOf: Int32Array, rng: Random) {
  const semanticDim = c.dim - c.shortcut.dims, { numClasses: K } = c;
  const centres = gaussianRows(rng, c.groups, semanticDim, c.separation.group / Math.sqrt(2 * semanticDim));
  const offsets = gaussianRows(rng, K, semanticDim, c.separation.class / Math.sqrt(2 * semanticDim));
  const means = offsets.map((v, i) =>
    v + centres[groupOf[Math.floor(i / semanticDim)] * semanticDim + i % semanticDim]
  );
  const nuisance = orthonormalRows(rng, c.nuisance.rank, semanticDim).map((v) => c.nuisance.scale * v);
  const shortcutCodes = new Float64Array(K * c.shortcut.dims);
  for (let k = 0; k < K; k++) {
    const code = shortcutCodes.subarray(k * c.shortcut.dims, (k + 1) * c.shortcut.dims);
    code.set(gaussianRows(rng, 1, c.shortcut.dims, 1));
    const norm = Math.hypot(...code);
    for (let j = 0; j < code.length; j++) code[j] *= c.shortcut.strength / norm;
  }
  return { semanticDim, means, nuisance, shortcutCodes };
}

/** Shuffled true labels of `size` points: class k appears ⌈size/K⌉ times if k < size mod K, else ⌊size/K⌋. */
function balancedLabels(size: number, numClasses: number, rng: Random): Int32Array {
  const ordered = Int32Array.from({ length: size }, (_, i) => i % numClasses);
  return Int32Array.from(rng.permutation(size), (p) => ordered[p]);
}

/** Float32 rows `[n, d]` for true labels `y`; rows with `shortcut[i] = 1` get s·u_{y_i} in the last columns. */
function drawRows(
  c: FineGrainedConfig,
  structure: ReturnType<typeof drawStructure>,
  y: Int32Array,
  rng: Random,
  shortcut?: Uint8Array,
): Float32Array {
  const { semanticDim, means, nuisance, shortcutCodes } = structure;
  const { dim } = c, { rank } = c.nuisance, { dims } = c.shortcut;
  const rows = new Float32Array(y.length * dim), z = new Float64Array(rank);
  for (let i = 0; i < y.length; i++) {
    const row = rows.subarray(i * dim, (i + 1) * dim);
    for (let a = 0; a < rank; a++) z[a] = rng.normal();
    for (let j = 0; j < semanticDim; j++) {
      let v = means[y[i] * semanticDim + j] + rng.normal();
      for (let a = 0; a < rank; a++) v += z[a] * nuisance[a * semanticDim + j];
      row[j] = v;
    }
    const code = shortcut?.[i] ? y[i] * dims : -1;
    for (let j = 0; j < dims; j++) {
      row[semanticDim + j] = rng.normal() + (code >= 0 ? shortcutCodes[code + j] : 0);
    }
  }
  return rows;
}

/**
 * Observed train labels. Every point consumes the same three uniforms (flip?, sibling?, which class?), so the
 * points flipped at a lower rate are a subset of those flipped at a higher one, with the same new labels.
 */
function flipLabels(
  c: FineGrainedConfig,
  trueLabels: Int32Array,
  groupOf: Int32Array,
  rng: Random,
): Int32Array {
  const K = c.numClasses, start = new Int32Array(c.groups).fill(K), size = new Int32Array(c.groups);
  for (let k = 0; k < K; k++) {
    start[groupOf[k]] = Math.min(start[groupOf[k]], k);
    size[groupOf[k]]++;
  }
  const { rate, mode, withinGroupShare } = c.labelNoise;
  return trueLabels.map((y) => {
    const [flip, share, pick] = [rng.uniform(), rng.uniform(), rng.uniform()];
    if (flip >= rate) return y;
    const g = groupOf[y];
    if (mode === "uniform") return skip(Math.floor(pick * (K - 1)), y, 1);
    const toSibling = size[g] > 1 && (share < withinGroupShare || size[g] === K);
    return toSibling
      ? start[g] + skip(Math.floor(pick * (size[g] - 1)), y - start[g], 1)
      : skip(Math.floor(pick * (K - size[g])), start[g], size[g]);
  });
}

/** The k-th element of 0, 1, 2, … with the `length` values from `from` on left out. */
function skip(k: number, from: number, length: number): number {
  return k < from ? k : k + length;
}

/**
 * Generates the train, val and test splits described in the module doc: `makeFineGrainedFeatures({ seed })`
 * gives the default 50-class, 10-group, d = 64 problem with 20% within-group label noise and 10% shortcut
 * points, and `makeFineGrainedFeatures({ preset: "cub", seed })` the CUB-sized one. Seeded and backend
 * independent (all draws in JS from `Random`, one `tf.tensor2d` per split); the caller disposes the three
 * `features` tensors. Throws `RangeError` naming the option and the rule it breaks.
 */
export function makeFineGrainedFeatures(options: FineGrainedOptions = {}): FineGrainedFeatures {
  const config = resolve(options);
  const { numClasses: K, dim, splitSizes } = config;
  const groupOf = Int32Array.from({ length: K }, (_, k) => Math.floor(k * config.groups / K));
  const rng = streams(config.seed);
  const structure = drawStructure(config, groupOf, rng.structure);
  const split = (name: SplitName, shortcut?: Uint8Array) => {
    const trueLabels = balancedLabels(splitSizes[name], K, rng[name]);
    const rows = drawRows(config, structure, trueLabels, rng[name], shortcut);
    return { features: tf.tensor2d(rows, [trueLabels.length, dim]), trueLabels };
  };
  const shortcut = Uint8Array.from(
    { length: splitSizes.train },
    () => Number(rng.shortcut.uniform() < config.shortcut.rate),
  );
  const train = split("train", shortcut);
  const labels = flipLabels(config, train.trueLabels, groupOf, rng.flips);
  const mislabeled = Uint8Array.from(labels, (y, i) => Number(y !== train.trueLabels[i]));
  const clean = (s: { features: tf.Tensor2D; trueLabels: Int32Array }) => ({
    ...s,
    labels: s.trueLabels.slice(),
  });
  return {
    train: { ...train, labels, mislabeled, shortcut },
    val: clean(split("val")),
    test: clean(split("test")),
    groupOf,
    shortcutColumns: Int32Array.from(
      { length: config.shortcut.dims },
      (_, j) => dim - config.shortcut.dims + j,
    ),
    config,
  };
}
