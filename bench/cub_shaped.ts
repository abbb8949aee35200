/**
 * A stand-in for CUB-200-2011 at full size: the official layout (`images.txt`, `image_class_labels.txt`,
 * `train_test_split.txt`, `classes.txt`, `images/<class>/<image>.jpg`) with CUB's counts — 200 classes, 5,994 train
 * and 5,794 test images (30/29 and 29/28 per class) — and 500 × 375 JPEGs (CUB's typical size) whose colour and
 * stripe position depend on the class. For measuring what a CUB run costs (memory, time) without the dataset.
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Random } from "../lib/random.ts";

const CLASSES = 200, WIDTH = 500, HEIGHT = 375;
/** CUB's totals: 5,994 = 200 · 30 − 6 and 5,794 = 200 · 29 − 6. */
const TRAIN = 5994, TEST = 5794;
const DONE = ".complete";

/** One image: a class hue with a horizontal stripe at a class-dependent height, plus per-pixel noise. */
function render(label: number, rng: Random): Uint8Array {
  const pixels = new Uint8Array(WIDTH * HEIGHT * 3);
  const hue = (2 * Math.PI * label) / CLASSES;
  const base = [0, 2, 4].map((shift) => 128 + 90 * Math.cos(hue + shift));
  const stripe = Math.floor(((label * 37) % CLASSES) / CLASSES * (HEIGHT - 40));
  for (let y = 0; y < HEIGHT; y++) {
    const inStripe = y >= stripe && y < stripe + 40;
    for (let x = 0; x < WIDTH; x++) {
      for (let c = 0; c < 3; c++) {
        const v = (inStripe ? 255 - base[c] : base[c]) + 40 * (rng.uniform() - 0.5);
        pixels[(y * WIDTH + x) * 3 + c] = Math.max(0, Math.min(255, v));
      }
    }
  }
  return pixels;
}

/**
 * Writes the tree under `root` (skipped when a previous call completed it) and returns `root`. `onProgress` gets
 * (images written, 11,788).
 */
export async function writeCubShapedTree(
  root: string,
  onProgress?: (done: number, total: number) => void,
): Promise<string> {
  if (existsSync(join(root, DONE))) return root;
  const { default: sharp } = await import("sharp");
  const rng = new Random(0);
  const images: string[] = [], labels: string[] = [], splits: string[] = [], classes: string[] = [];
  const total = TRAIN + TEST;
  let id = 0;
  for (let label = 0; label < CLASSES; label++) {
    const folder = `${String(label + 1).padStart(3, "0")}.Class_${label + 1}`;
    classes.push(`${label + 1} ${folder}`);
    mkdirSync(join(root, "images", folder), { recursive: true });
    const train = label < 6 ? 29 : 30, test = label < 6 ? 28 : 29;
    for (let k = 0; k < train + test; k++) {
      id++;
      const path = `${folder}/Class_${label + 1}_${String(k).padStart(4, "0")}_${id}.jpg`;
      const jpeg = await sharp(render(label, rng), { raw: { width: WIDTH, height: HEIGHT, channels: 3 } })
        .jpeg({ quality: 85 }).toBuffer();
      writeFileSync(join(root, "images", path), jpeg);
      images.push(`${id} ${path}`);
      labels.push(`${id} ${label + 1}`);
      splits.push(`${id} ${k < train ? 1 : 0}`);
      onProgress?.(id, total);
    }
  }
  const write = (name: string, rows: string[]) => writeFileSync(join(root, name), rows.join("\n") + "\n");
  write("images.txt", images);
  write("image_class_labels.txt", labels);
  write("train_test_split.txt", splits);
  write("classes.txt", classes);
  write(DONE, [new Date().toISOString()]);
  return root;
}
