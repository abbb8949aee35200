/**
 * SynthBirds' procedural renderer: one bird-like glyph built from signed-distance shapes (body, belly, wing with
 * bars, tail, legs, head, crown, eye, eye ring, beak) on a textured background, anti-aliased by coverage
 * clamp(0.5 − d, 0, 1) with d the distance in pixels. The class fixes the parts (`BirdSpecies`); everything
 * else is nuisance drawn per image: pose (facing, rotation, scale, position), perch, background texture,
 * lighting gradient and gain, colour jitter and pixel noise. `partScale` f enlarges the small parts (beak about
 * its base, eye-ring radius and width, wing-bar width, crown depth) by f; f = 1 draws them at their class size.
 * Private to `lib/data/`.
 */
import type { Random } from "../random.ts";
import type { RgbImage } from "./images.ts";

/** The parts that define a class; colours are HSV in [0, 1]. */
export interface BirdSpecies {
  /** Body colour (HSV); the wing, tail and belly are shades of it. Fixed per group. */
  body: [number, number, number];
  /** Tail silhouette. Fixed per group. */
  tail: "fan" | "fork" | "point";
  /** Beak silhouette. Fixed per group. */
  beakShape: "cone" | "thin" | "hook";
  /** Small part: beak colour. */
  beakColour: "dark" | "yellow";
  /** Small part: pale bars across the wing. */
  wingBars: 0 | 2;
  /** Small part: cap colour (plain = a darker body colour). */
  crown: "plain" | "red";
  /** Small part: a white ring around the eye. */
  eyeRing: boolean;
}

/** A class-keyed background (the shortcut): a checkerboard in the class's own hue. */
export interface ShortcutTexture {
  hue: number;
  period: number;
}

type Vec = [number, number];
type Rgb = [number, number, number];

function hsv([h, s, v]: [number, number, number]): Rgb {
  h = ((h % 1) + 1) % 1;
  const i = Math.floor(h * 6), f = h * 6 - i;
  const p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s);
  return ([[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]] as Rgb[])[i % 6];
}

const mix = (
  a: Rgb,
  b: Rgb,
  t: number,
): Rgb => [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
const scaleRgb = (a: Rgb, k: number): Rgb => [a[0] * k, a[1] * k, a[2] * k];

// Signed distances in the bird's local frame (x forward, y down; the body is about 1 unit long).
const circle = (c: Vec, r: number) => (x: number, y: number) => Math.hypot(x - c[0], y - c[1]) - r;

function ellipse(c: Vec, rx: number, ry: number, angle: number) {
  const cos = Math.cos(angle), sin = Math.sin(angle), k = Math.min(rx, ry);
  return (x: number, y: number) => {
    const dx = x - c[0], dy = y - c[1];
    const u = (dx * cos + dy * sin) / rx, v = (-dx * sin + dy * cos) / ry;
    return (Math.hypot(u, v) - 1) * k; // a distance bound, exact enough for 1-pixel anti-aliasing
  };
}

function segment(a: Vec, b: Vec, r: number) {
  const bx = b[0] - a[0], by = b[1] - a[1], len2 = bx * bx + by * by;
  return (x: number, y: number) => {
    const px = x - a[0], py = y - a[1];
    const t = Math.max(0, Math.min(1, (px * bx + py * by) / len2));
    return Math.hypot(px - bx * t, py - by * t) - r;
  };
}

/** Exact signed distance to a simple polygon (winding-number sign). */
function polygon(points: Vec[]) {
  return (x: number, y: number) => {
    let d = Infinity, inside = false;
    for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
      const [ax, ay] = points[j], [bx, by] = points[i];
      const ex = bx - ax, ey = by - ay, wx = x - ax, wy = y - ay;
      const t = Math.max(0, Math.min(1, (wx * ex + wy * ey) / (ex * ex + ey * ey)));
      d = Math.min(d, Math.hypot(wx - ex * t, wy - ey * t));
      if ((ay > y) !== (by > y) && x < ax + ((y - ay) * ex) / ey) inside = !inside;
    }
    return inside ? -d : d;
  };
}

const BEAKS: Record<BirdSpecies["beakShape"], Vec[]> = {
  cone: [[0.66, -0.38], [0.93, -0.29], [0.66, -0.19]],
  thin: [[0.68, -0.33], [1.08, -0.28], [0.68, -0.23]],
  hook: [[0.66, -0.39], [0.84, -0.37], [0.94, -0.28], [0.9, -0.17], [0.84, -0.25], [0.66, -0.2]],
};
const TAILS: Record<BirdSpecies["tail"], Vec[]> = {
  fan: [[-0.38, -0.12], [-0.82, -0.24], [-0.9, -0.03], [-0.84, 0.16], [-0.38, 0.06]],
  fork: [[-0.38, -0.1], [-0.92, -0.2], [-0.72, -0.02], [-0.92, 0.14], [-0.38, 0.06]],
  point: [[-0.38, -0.1], [-0.98, -0.03], [-0.38, 0.07]],
};
const BEAK_COLOURS: Record<BirdSpecies["beakColour"], [number, number, number]> = {
  dark: [0.08, 0.3, 0.18],
  yellow: [0.13, 0.85, 0.95],
};

/** A float RGB canvas that shapes are painted onto in pixel order. */
class Canvas {
  readonly size: number;
  readonly rgb: Float32Array;
  /** Local bird coordinates of each pixel centre, and pixels per local unit. */
  readonly lx: Float32Array;
  readonly ly: Float32Array;
  readonly scale: number;

  constructor(size: number, pose: { cx: number; cy: number; angle: number; scale: number; facing: 1 | -1 }) {
    this.size = size;
    this.rgb = new Float32Array(size * size * 3);
    this.lx = new Float32Array(size * size);
    this.ly = new Float32Array(size * size);
    this.scale = pose.scale;
    const cos = Math.cos(pose.angle), sin = Math.sin(pose.angle);
    for (let py = 0; py < size; py++) {
      for (let px = 0; px < size; px++) {
        const dx = px + 0.5 - pose.cx, dy = py + 0.5 - pose.cy;
        this.lx[py * size + px] = (pose.facing * (dx * cos + dy * sin)) / pose.scale;
        this.ly[py * size + px] = (-dx * sin + dy * cos) / pose.scale;
      }
    }
  }

  /** Paints `colour` where the local-frame distance `sdf` is negative, within `reach` units of `centre`. */
  paint(
    sdf: (x: number, y: number) => number,
    colour: (x: number, y: number) => Rgb,
    centre: Vec,
    reach: number,
  ) {
    const { lx, ly, rgb, scale } = this;
    for (let p = 0; p < lx.length; p++) {
      const x = lx[p], y = ly[p];
      if (Math.abs(x - centre[0]) > reach || Math.abs(y - centre[1]) > reach) continue;
      const coverage = Math.min(1, Math.max(0, 0.5 - sdf(x, y) * scale));
      if (coverage === 0) continue;
      const c = colour(x, y);
      for (let k = 0; k < 3; k++) rgb[p * 3 + k] += (c[k] - rgb[p * 3 + k]) * coverage;
    }
  }
}

/** Fills the canvas with a natural background texture (sky, foliage, bark, bokeh) or the shortcut checkerboard. */
function paintBackground(canvas: Canvas, random: Random, shortcut: ShortcutTexture | undefined) {
  const { size, rgb } = canvas;
  const put = (p: number, c: Rgb) => rgb.set(c, p * 3);
  if (shortcut) {
    const a = hsv([shortcut.hue, 0.75, 0.9]), b = hsv([shortcut.hue + 0.5, 0.6, 0.35]);
    const phase = random.int(shortcut.period * 2);
    for (let p = 0; p < size * size; p++) {
      const x = (p % size) + phase, y = Math.floor(p / size) + phase;
      put(p, (Math.floor(x / shortcut.period) + Math.floor(y / shortcut.period)) % 2 ? a : b);
    }
    return;
  }
  const kind = random.int(4);
  const u = () => random.uniform();
  const natural = (): Rgb =>
    hsv([[0.58, 0.3, 0.1, 0.2][kind] + 0.08 * (u() - 0.5), 0.25 + 0.4 * u(), 0.45 + 0.45 * u()]);
  const c1 = natural(), c2 = natural();
  if (kind === 0) { // sky: vertical gradient
    for (let p = 0; p < size * size; p++) put(p, mix(c1, c2, Math.floor(p / size) / size));
  } else if (kind === 1) { // foliage: smooth random field, two tones
    const waves = Array.from(
      { length: 4 },
      () => [u() * 0.5 + 0.15, u() * 0.5 + 0.15, u() * 6.28, u() * 6.28],
    );
    for (let p = 0; p < size * size; p++) {
      const x = p % size, y = Math.floor(p / size);
      const f = waves.reduce((s, [fx, fy, a, b]) => s + Math.sin(x * fx + a) * Math.sin(y * fy + b), 0);
      put(p, mix(c1, c2, Math.min(1, Math.max(0, 0.5 + f * 0.6))));
    }
  } else if (kind === 2) { // bark: wavy near-vertical stripes
    const freq = 0.3 + 0.4 * u(), wobble = u() * 3;
    for (let p = 0; p < size * size; p++) {
      const x = p % size, y = Math.floor(p / size);
      put(p, mix(c1, c2, 0.5 + 0.5 * Math.sin(x * freq + wobble * Math.sin(y * 0.15))));
    }
  } else { // bokeh: soft discs over a base
    for (let p = 0; p < size * size; p++) put(p, c1);
    for (let k = 0; k < 6; k++) {
      const cx = u() * size,
        cy = u() * size,
        r = size * (0.06 + 0.12 * u()),
        c = mix(c2, [1, 1, 1], 0.3 * u());
      for (let p = 0; p < size * size; p++) {
        const t = Math.min(
          1,
          Math.max(0, (r - Math.hypot((p % size) - cx, Math.floor(p / size) - cy)) / (r * 0.5)),
        );
        if (t > 0) put(p, mix([rgb[p * 3], rgb[p * 3 + 1], rgb[p * 3 + 2]], c, 0.6 * t));
      }
    }
  }
}

/**
 * Renders one image of `species` with fresh nuisance from `random`; `shortcut` replaces the background and
 * `partScale` enlarges the small parts (module JSDoc).
 */
export function renderBird(
  species: BirdSpecies,
  random: Random,
  size: number,
  shortcut?: ShortcutTexture,
  partScale = 1,
): RgbImage {
  const f = partScale;
  const u = () => random.uniform();
  const pose = {
    cx: size * (0.5 + 0.16 * (u() - 0.5)),
    cy: size * (0.5 + 0.12 * (u() - 0.5)),
    angle: Math.max(-0.5, Math.min(0.5, 0.22 * random.normal())),
    scale: size * (0.29 + 0.13 * u()),
    facing: (u() < 0.5 ? 1 : -1) as 1 | -1,
  };
  const canvas = new Canvas(size, pose);
  paintBackground(canvas, random, shortcut);

  const [h, s, v] = species.body;
  const body = hsv([
    h + 0.03 * (u() - 0.5),
    Math.min(1, s * (0.85 + 0.3 * u())),
    Math.min(1, v * (0.85 + 0.3 * u())),
  ]);
  const dark = scaleRgb(body, 0.6), pale: Rgb = mix(body, [0.96, 0.93, 0.85], 0.6);
  const flat = (c: Rgb) => () => c;
  const shaded = (c: Rgb) => (_x: number, y: number): Rgb => scaleRgb(c, 1.08 - 0.25 * y); // lit from above

  if (u() < 0.75) { // a perch under the feet, tilted against the bird's own rotation
    const tilt = 0.35 * (u() - 0.5), brown = hsv([0.07 + 0.03 * u(), 0.5, 0.25 + 0.2 * u()]);
    canvas.paint(
      segment([-3 * Math.cos(tilt), 0.54 - 3 * Math.sin(tilt)], [
        3 * Math.cos(tilt),
        0.54 + 3 * Math.sin(tilt),
      ], 0.05),
      flat(brown),
      [0, 0.54],
      3,
    );
  }
  canvas.paint(polygon(TAILS[species.tail]), shaded(scaleRgb(body, 0.75)), [-0.65, -0.02], 0.4);
  const legColour: Rgb = [0.25, 0.2, 0.18];
  for (const x of [0.0, 0.14]) {
    canvas.paint(segment([x + 0.02, 0.25], [x - 0.02, 0.52], 0.025), flat(legColour), [x, 0.4], 0.2);
  }
  canvas.paint(ellipse([0, 0], 0.52, 0.32, -0.15), shaded(body), [0, 0], 0.6);
  canvas.paint(ellipse([0.05, 0.13], 0.4, 0.17, -0.15), shaded(pale), [0.05, 0.13], 0.45);
  const wing = ellipse([-0.08, -0.04], 0.36, 0.19, -0.08);
  canvas.paint(wing, shaded(dark), [-0.08, -0.04], 0.4);
  for (let b = 0; b < species.wingBars; b++) {
    const at = b === 0 ? -0.04 : 0.1;
    canvas.paint(
      (x, y) => Math.max(wing(x, y), Math.abs(x - at + 0.3 * (y + 0.04)) - 0.035 * f),
      flat(pale),
      [
        at,
        -0.04,
      ],
      0.25,
    );
  }
  const head = circle([0.5, -0.3], 0.24);
  canvas.paint(head, shaded(body), [0.5, -0.3], 0.3);
  const crown = species.crown === "red" ? hsv([0.99 + 0.02 * (u() - 0.5), 0.85, 0.85]) : scaleRgb(body, 0.8);
  canvas.paint( // the cap: the head above a line 0.18 f below its top
    (x, y) => Math.max(head(x, y), y + 0.36 - 0.18 * (f - 1) + 0.25 * (x - 0.5)),
    flat(crown),
    [0.5, -0.42],
    0.25,
  );
  if (species.eyeRing) {
    canvas.paint(
      (x, y) => Math.abs(Math.hypot(x - 0.57, y + 0.33) - 0.095 * f) - 0.04 * f,
      flat([0.97, 0.97, 0.95]),
      [0.57, -0.33],
      0.15 * f,
    );
  }
  canvas.paint(circle([0.57, -0.33], 0.05), flat([0.05, 0.05, 0.07]), [0.57, -0.33], 0.08);
  const [bh, bs, bv] = BEAK_COLOURS[species.beakColour];
  canvas.paint(
    polygon(
      f === 1 ? BEAKS[species.beakShape] : BEAKS[species.beakShape].map(([x, y]): Vec => [
        0.66 + f * (x - 0.66),
        -0.28 + f * (y + 0.28),
      ]),
    ),
    flat(hsv([bh + 0.02 * (u() - 0.5), bs, bv * (0.9 + 0.1 * u())])),
    [0.85 + 0.19 * (f - 1), -0.28],
    0.25 * f,
  );

  // Lighting: a global gain and a linear gradient in a random direction, then sensor noise.
  const gain = 0.75 + 0.45 * u(), slope = 0.5 * u(), direction = 6.283 * u();
  const gx = slope * Math.cos(direction), gy = slope * Math.sin(direction);
  const out = new Uint8Array(size * size * 3);
  for (let p = 0; p < size * size; p++) {
    const light = gain * (1 + gx * ((p % size) / size - 0.5) + gy * (Math.floor(p / size) / size - 0.5));
    for (let k = 0; k < 3; k++) {
      const noise = (u() + u() - 1) * 0.015;
      out[p * 3 + k] = Math.max(0, Math.min(255, Math.round((canvas.rgb[p * 3 + k] * light + noise) * 255)));
    }
  }
  return { width: size, height: size, data: out };
}
