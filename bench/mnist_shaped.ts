/**
 * An MNIST-shaped logistic-regression problem, generated (nothing is downloaded): n = 5,000 training and 500 test
 * 28×28 "digit" images in [0, 1] as d = 784 raw pixel features, K = 10 classes, meant for λ = 1 — the shape and
 * conditioning of issue 15's exact-influence benchmark (K(d+1) = 7,850).
 *
 * Each class is a prototype of three thick strokes (Gaussian-profile line segments) from a pool of 12, so that
 * neighbouring classes share two of them; an image is its class prototype with every stroke end moved by
 * N(0, 1) pixels, shifted by up to ±2 pixels, each stroke's intensity scaled by U(0.6, 1.2), plus two random
 * strokes of clutter and N(0, 0.05²) pixel noise, clipped to [0, 1]. As with MNIST, the border pixels are almost
 * always 0, neighbouring pixels are strongly correlated and the features are not standardised, so the Hessian of
 * the head is ill-conditioned (its spectrum spans λ = 1 to ~10⁴), and L-BFGS needs hundreds of iterations.
 */
import * as tf from "@tensorflow/tfjs";
import type { LabeledFeatures } from "../lib/carrot/labeled_features.ts";
import { Random } from "../lib/random.ts";

const SIDE = 28, CLASSES = 10;

interface Stroke {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  width: number;
}

function randomStroke(rng: Random): Stroke {
  const at = () => 6 + 16 * rng.uniform();
  return { x0: at(), y0: at(), x1: at(), y1: at(), width: 1 + 1.2 * rng.uniform() };
}

/** Adds `gain` × a Gaussian-profile segment to `canvas` (distance of each pixel to the segment). */
function draw(canvas: Float32Array, s: Stroke, gain: number, dx: number, dy: number): void {
  const [ax, ay, bx, by] = [s.x0 + dx, s.y0 + dy, s.x1 + dx, s.y1 + dy];
  const vx = bx - ax, vy = by - ay, length2 = vx * vx + vy * vy || 1;
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE; x++) {
      const t = Math.max(0, Math.min(1, ((x - ax) * vx + (y - ay) * vy) / length2));
      const ex = x - (ax + t * vx), ey = y - (ay + t * vy);
      canvas[y * SIDE + x] += gain * Math.exp(-(ex * ex + ey * ey) / (2 * s.width * s.width));
    }
  }
}

function split(count: number, prototypes: Stroke[][], rng: Random): LabeledFeatures {
  const values = new Float32Array(count * SIDE * SIDE), labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const c = i % CLASSES, canvas = values.subarray(i * SIDE * SIDE, (i + 1) * SIDE * SIDE);
    const dx = 4 * rng.uniform() - 2, dy = 4 * rng.uniform() - 2, jitter = () => rng.normal();
    for (const s of prototypes[c]) {
      const moved = {
        ...s,
        x0: s.x0 + jitter(),
        y0: s.y0 + jitter(),
        x1: s.x1 + jitter(),
        y1: s.y1 + jitter(),
      };
      draw(canvas, moved, 0.6 + 0.6 * rng.uniform(), dx, dy);
    }
    for (let q = 0; q < 2; q++) draw(canvas, randomStroke(rng), 0.8 * rng.uniform(), 0, 0);
    for (let q = 0; q < canvas.length; q++) {
      canvas[q] = Math.min(1, Math.max(0, canvas[q] + 0.05 * rng.normal()));
    }
    labels[i] = c;
  }
  return { features: tf.tensor2d(values, [count, SIDE * SIDE]), labels };
}

/** The problem of the module JSDoc for `seed` (train 5,000 and test 500 unless given); the caller frees the tensors. */
export function mnistShapedProblem(
  seed = 0,
  sizes: { train?: number; test?: number } = {},
): { train: LabeledFeatures; test: LabeledFeatures; lambda: number } {
  const rng = new Random(seed);
  // 10 classes over a pool of 12 strokes: neighbouring classes share strokes, as 3/8 or 4/9 share theirs
  const pool = Array.from({ length: 12 }, () => randomStroke(rng));
  const prototypes = Array.from({ length: CLASSES }, (_, c) => [pool[c], pool[c + 1], pool[(c + 5) % 12]]);
  return {
    train: split(sizes.train ?? 5000, prototypes, rng),
    test: split(sizes.test ?? 500, prototypes, rng),
    lambda: 1,
  };
}
