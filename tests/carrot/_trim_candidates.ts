/** Checks shared by the tests of CARROT's trim candidates (out-of-fold, k-NN, in-sample, self-influence). */
import assert from "node:assert/strict";
import type { LabeledFeatures } from "../../lib/carrot/labeled_features.ts";
import * as tf from "@tensorflow/tfjs";
import { type CarrotResult, carrotReweight, describeCandidate } from "../../lib/carrot/carrot.ts";
import { disposeHead, fitHead, type HeadFit } from "../../lib/carrot/head.ts";
import { selectWeighting } from "../../lib/carrot/selection.ts";
import { assertClose } from "../_assert.ts";
import { makeFineGrainedFeatures } from "../../lib/data/synthetic_features.ts";
import { lossTrimAlpha, meanAlpha } from "../../lib/carrot/trim.ts";

/** A small problem at within-group noise 0.4 (8 classes, 25 train and 10 val per class) for the trim tests. */
export const trimProblem = () =>
  makeFineGrainedFeatures({
    numClasses: 8,
    groups: 2,
    dim: 16,
    perClass: { train: 25, val: 10, test: 10 },
    labelNoise: { rate: 0.4 },
    seed: 9,
  });

/**
 * The problem of the noise-evidence gate's tests at within-group noise `rate`: 10 classes in 2 groups, d = 16, 60
 * training and 30 validation images per class (the gate closes at 0 and opens at 0.4 with a margin of 2 s.e.).
 */
export const gateProblem = (rate: number) =>
  makeFineGrainedFeatures({
    numClasses: 10,
    groups: 2,
    dim: 16,
    perClass: { train: 60, val: 30, test: 10 },
    labelNoise: { rate },
    seed: 3,
  });

/**
 * The extra detectors off (k-NN, in-sample and self-influence trims), for tests about the out-of-fold trims and the
 * selection alone; each detector has its own test (neighbours_test.ts, in_sample_trim_test.ts,
 * self_influence_trim_test.ts).
 */
export const withoutExtraDetectors = { neighbourK: 0, inSampleTrim: false, selfInfluenceTrim: false };

/**
 * `carrotReweight` options of the trim tests: λ 0.5, no outer steps (candidates: ERM and the trims at 10% and 30%
 * with their graded mean), no veto, challenger or averaging, and neither extra detector (each test turns its own on).
 */
export const trimOptions = {
  lambda: 0.5,
  numClasses: 8,
  folds: 3,
  outerSteps: 0,
  paths: [{ heldOutWeighting: "uniform" as const, gamma: 0 }],
  trimFractions: [0.1, 0.3],
  tol: 1e-8,
  z: 0,
  validationPath: false,
  averageTop: 1,
  ...withoutExtraDetectors,
};

/** Each α of `alphas`, scored alone by `selectWeighting`, gets the calibrated val loss of its row of `rows`. */
export async function assertScoredAlone(
  run: Pick<CarrotResult, "selection">,
  data: { train: LabeledFeatures; val: LabeledFeatures },
  rows: readonly number[],
  alphas: readonly Float32Array[],
  options: { lambda: number; numClasses: number },
): Promise<void> {
  const alone = await selectWeighting(data.train, data.val, [
    { alpha: new Float32Array(alphas[0].length).fill(1), label: {} },
    ...alphas.map((alpha) => ({ alpha, label: {} })),
  ], { ...options, tol: 1e-8, z: 0 });
  rows.forEach((row, c) =>
    assertClose(run.selection.rows[row].valLoss, alone.rows[c + 1].valLoss, {
      rtol: 1e-4,
      what: `row ${row}`,
    })
  );
  disposeHead(alone.fit);
}

/** The points `alpha` drops (α = 0) are mislabelled more often than train's points are. */
export function assertDropsMislabelled(alpha: Float32Array, mislabeled: Uint8Array): void {
  const share = (indices: number[]) => indices.filter((i) => mislabeled[i] === 1).length / indices.length;
  const dropped = [...alpha.keys()].filter((i) => alpha[i] === 0);
  assert.ok(share(dropped) > share([...alpha.keys()]), `precision ${share(dropped)}`);
}

/**
 * The candidates of a run with `trimOptions` and one extra detector: ERM, the out-of-fold trims at 10% and 30% and
 * their graded mean, then the same three by the detector `weighting`.
 */
export function assertTrimRows(run: Pick<CarrotResult, "selection">, weighting: string): void {
  assert.deepEqual(run.selection.rows.map((r) => r.label.weighting), [
    "none",
    "trim",
    "trim",
    "graded-trim",
    weighting,
    weighting,
    `graded-${weighting}`,
  ]);
}

/**
 * A second detector's candidates (rows 4–6 after ERM and the out-of-fold trims of `trimOptions`) are the mass-keeping
 * trims by its `scores` and their mean: each α, scored alone, gets its row's val loss, and the middle trim drops
 * mislabelled points more often than train holds them.
 */
export async function assertDetectorTrims(
  run: Pick<CarrotResult, "selection">,
  data: { train: LabeledFeatures & { mislabeled: Uint8Array }; val: LabeledFeatures },
  scores: ArrayLike<number>,
): Promise<void> {
  const { lambda, numClasses, trimFractions } = trimOptions;
  const trims = trimFractions.map((q) =>
    lossTrimAlpha(scores, data.train.labels, q, { keepClassMass: true })
  );
  await assertScoredAlone(run, data, [4, 5, 6], [...trims, meanAlpha(trims)], { lambda, numClasses });
  assertDropsMislabelled(trims[1], data.train.mislabeled);
}

/** Without the second detector only ERM and the out-of-fold trims (and their graded mean) are candidates. */
export function assertOutOfFoldTrimsOnly(run: Pick<CarrotResult, "selection">): void {
  assert.deepEqual(run.selection.rows.map((r) => r.label.weighting), ["none", "trim", "trim", "graded-trim"]);
}

/** One extra detector of `carrotReweight`: its option, its candidates' weighting, its scores and a reference. */
export interface DetectorCase {
  /** The option that turns it on. */
  option: "inSampleTrim" | "selfInfluenceTrim";
  /** Its candidates' `weighting` label (`in-sample-trim`, …). */
  weighting: string;
  /** Expected `describeCandidate` text of some of its rows (row index → text). */
  described: Record<number, string>;
  /** The scores the run reports for it (`inSampleLosses`, `selfInfluences`). */
  scores: (run: CarrotResult) => ArrayLike<number> | undefined;
  /** The same scores computed directly from the plain ERM fit at λ. */
  reference: (erm: HeadFit, train: LabeledFeatures) => Promise<ArrayLike<number>>;
  /** Tolerance of scores against reference. */
  tolerance: { rtol: number; atol: number };
}

/**
 * The test of one extra detector on `trimProblem` with `trimOptions`: on, its rows follow the out-of-fold trims with
 * the expected labels, its scores equal those of the ERM head (λ given, so the plain fit at λ), and its candidates are
 * the mass-keeping trims by them (`assertDetectorTrims`); off, only the out-of-fold trims and no scores. No tensor
 * leaks.
 */
export async function assertDetectorOption(detector: DetectorCase): Promise<void> {
  const data = trimProblem(), { lambda, numClasses } = trimOptions;
  const before = tf.memory().numTensors;
  const run = await carrotReweight(data.train, data.val, { ...trimOptions, [detector.option]: true });
  assertTrimRows(run, detector.weighting);
  for (const [row, text] of Object.entries(detector.described)) {
    assert.equal(describeCandidate(run.selection.rows[Number(row)].label), text);
  }
  const erm = await fitHead(data.train, { lambda, numClasses, tol: 1e-8 });
  assertClose(detector.scores(run)!, await detector.reference(erm, data.train), {
    ...detector.tolerance,
    what: detector.option,
  });
  disposeHead(erm);
  await assertDetectorTrims(run, data, detector.scores(run)!);
  disposeHead(run.fit);
  const off = await carrotReweight(data.train, data.val, { ...trimOptions, [detector.option]: false });
  assertOutOfFoldTrimsOnly(off);
  assert.equal(detector.scores(off), undefined);
  disposeHead(off.fit);
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  tf.dispose([data.train.features, data.val.features, data.test.features]);
}
