/**
 * The self-contained `report.html` of a run: plotly.js travels inside the page (gzipped, base64; see
 * `display.ts`), thumbnails are inlined as PNG data URIs, so the file opens offline. Sections: accuracy and ECE of
 * ERM vs CARROT (error bars over seeds), the L_val trajectory, α per class, where ground truth exists α of clean /
 * mislabeled / shortcut images per seed and mislabel-detection curves (suspect rankings and low α), faithfulness
 * curves, the training images whose α changed most both ways (with given and true labels), a gallery of test images
 * with their top supporting and opposing training images, and the top suspects.
 */
import type { RunArtifacts, RunResult } from "../pipeline/train.ts";
import { truthGroup } from "../carrot/debug.ts";
import { describeCandidate } from "../carrot/carrot.ts";
import { figureBundle, type PlotlyFigure } from "./display.ts";
import { barFigure, lineFigure } from "./figures.ts";
import { readImage, selectImageDecoder } from "../data/images.ts";
import { resizeImage } from "../data/transforms.ts";
import { encodePng } from "../data/png.ts";

const escape = (s: unknown) =>
  String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

/** A class name cut to 24 characters for an axis label. */
const shortName = (name: string) => (name.length > 24 ? `${name.slice(0, 23)}…` : name);

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** A 64-pixel PNG data URI of an image file, or undefined when the file cannot be read. */
async function thumbnail(path: string | undefined, decode: Awaited<ReturnType<typeof selectImageDecoder>>) {
  if (!path) return undefined;
  try {
    const image = await readImage(path, decode);
    const scale = 64 / Math.max(image.width, image.height);
    const small = resizeImage(
      image,
      Math.max(1, Math.round(image.width * scale)),
      Math.max(1, Math.round(image.height * scale)),
    );
    return `data:image/png;base64,${base64(encodePng(small))}`;
  } catch {
    return undefined;
  }
}

/** The detection curve of one ranking: share of flagged points found vs share of training points inspected. */
function detectionCurve(scores: number[], flags: number[]) {
  const order = scores.map((s, i) => [s, flags[i]]).sort((a, b) => b[0] - a[0]);
  const total = flags.reduce((s, f) => s + f, 0);
  const x: number[] = [], y: number[] = [];
  let found = 0;
  order.forEach(([, f], q) => {
    found += f;
    if (q % Math.max(1, Math.floor(order.length / 50)) === 0 || q === order.length - 1) {
      x.push((q + 1) / order.length);
      y.push(found / total);
    }
  });
  return { x, y };
}

/** Renders the report page (see the module JSDoc). */
export async function renderReport(result: RunResult, artifacts: RunArtifacts): Promise<string> {
  const figures: [string, PlotlyFigure][] = [];
  const { erm, carrot } = result.summary;
  figures.push([
    "Test accuracy and calibration, ERM vs CARROT (mean ± std over seeds)",
    barFigure([
      {
        name: "ERM",
        x: ["top-1 (%)", "per-class acc. (%)", "ECE (%)"],
        y: [erm.accuracy.mean, erm.perClassAccuracy.mean, erm.ece.mean].map((v) => 100 * v),
        error: [erm.accuracy.std, erm.perClassAccuracy.std, erm.ece.std].map((v) => 100 * v),
      },
      {
        name: "CARROT",
        x: ["top-1 (%)", "per-class acc. (%)", "ECE (%)"],
        y: [carrot.accuracy.mean, carrot.perClassAccuracy.mean, carrot.ece.mean].map((v) => 100 * v),
        error: [carrot.accuracy.std, carrot.perClassAccuracy.std, carrot.ece.std].map((v) => 100 * v),
      },
    ], { yTitle: "%" }),
  ]);
  const paths = [...new Set(result.trajectory.map((e) => e.path))];
  const isCarrot = result.config.method === "carrot";
  figures.push([
    isCarrot
      ? "CARROT's paths (seed 0): the cross-fitted objective L_cf each path descends, and the calibrated validation " +
        "loss the selection compares (step 0 = ERM)"
      : "Validation loss over RRO outer steps (seed 0; step 0 = ERM)",
    lineFigure(
      paths.flatMap((path) => {
        const points = result.trajectory.filter((e) => e.path === path && e.accepted);
        const x = points.map((e) => e.step);
        return [
          { name: `${isCarrot ? "L_cf" : "objective"} (${path})`, x, y: points.map((e) => e.objective) },
          { name: `val loss${isCarrot ? " after T" : ""} (${path})`, x, y: points.map((e) => e.valLoss) },
          { name: `val top-1 (${path})`, x, y: points.map((e) => e.valAccuracy) },
          { name: `min ESS_c / n_c (${path})`, x, y: points.map((e) => e.essMin) },
        ];
      }),
      { xTitle: "outer step" },
    ),
  ]);
  const alpha = artifacts.alphaPerSeed[0];
  const labels = Array.from(artifacts.trainIndices, (i) => artifacts.features.train.labels[i]);
  const classes = [...new Set(labels)].sort((a, b) => a - b);
  const className = (c: number) => result.classNames[c] ?? String(c);
  figures.push(["Final α per class (seed 0)", {
    data: [{
      type: "box",
      x: labels.map((c) => className(c)),
      y: Array.from(alpha),
      boxpoints: false,
      name: "α",
    }],
    layout: {
      yaxis: { title: { text: "α" } },
      // slanted names, shortened on the axis (the hover keeps them whole) up to 50 classes; beyond that plotly
      // thins the ticks of the category axis itself (CUB: 200)
      xaxis: {
        tickangle: -45,
        automargin: true,
        tickfont: { size: 10 },
        ...(classes.length <= 50
          ? {
            tickmode: "array",
            tickvals: classes.map(className),
            ticktext: classes.map((c) => shortName(className(c))),
          }
          : {}),
      },
      height: 460,
    },
  }]);
  const methods = [...new Set(result.faithfulness.map((r) => r.method))];
  figures.push([
    "Faithfulness: prediction flip rate after removing the top-K supporters",
    lineFigure(
      methods.map((m) => {
        const rows = result.faithfulness.filter((r) => r.method === m);
        return { name: m, x: rows.map((r) => r.K), y: rows.map((r) => r.flipRate) };
      }),
      { xTitle: "K removed", yTitle: "flip rate" },
    ),
  ]);
  const items = artifacts.features.train.items;
  const truth = items?.[0]?.truth ? artifacts.suspects.map((s) => items[s.index].truth!) : undefined;
  // per seed: the ground truth of its training rows, aligned with its α
  const seedTruth = (s: number) => Array.from(artifacts.trainIndicesPerSeed[s], (i) => items![i].truth!);
  if (truth && truth.some((t) => t.noisy || t.shortcut)) {
    figures.push([
      "α after CARROT of clean, mislabeled and shortcut training images, per seed (SynthBirds' ground truth)",
      {
        data: (["clean", "mislabeled", "shortcut"] as const).map((name) => {
          const x: string[] = [], y: number[] = [];
          artifacts.alphaPerSeed.forEach((alpha, s) =>
            seedTruth(s).forEach((t, i) => truthGroup(t) === name && (x.push(`seed ${s}`), y.push(alpha[i])))
          );
          return { type: "box", name, x, y, boxmean: true, boxpoints: "outliers" };
        }),
        layout: { boxmode: "group", yaxis: { title: { text: "α" } }, height: 420 },
      },
    ]);
  }
  if (truth && truth.some((t) => t.noisy)) {
    const rankings = Object.keys(artifacts.suspects[0].scores);
    figures.push([
      "Mislabel detection: share of mislabeled images found vs share inspected (suspect rankings on seed 0; " +
      "CARROT's α, lowest first, on every seed)",
      lineFigure(
        [
          ...rankings.map((r) => ({
            name: r,
            ...detectionCurve(artifacts.suspects.map((s) => s.scores[r]), truth.map((t) => Number(t.noisy))),
          })),
          ...artifacts.alphaPerSeed.map((alpha, s) => ({
            name: `low α after CARROT (seed ${s})`,
            ...detectionCurve(Array.from(alpha, (a) => -a), seedTruth(s).map((t) => Number(t.noisy))),
          })),
        ],
        { xTitle: "fraction of training images inspected", yTitle: "fraction of mislabeled found" },
      ),
    ]);
  }
  const sections: string[] = [];
  for (const [index, [title, figure]] of figures.entries()) {
    const html = (await figureBundle(figure, { includePlotly: index === 0 }))["text/html"] as string;
    sections.push(`<section><h2>${escape(title)}</h2>${html}</section>`);
  }
  sections.push(await gallery(result, artifacts));
  return `<!doctype html><html><head><meta charset="utf-8"><title>CARROT report</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}figure{display:inline-block;margin:2px;text-align:center;
font-size:11px;width:76px;vertical-align:top}figure img{width:64px;height:64px;object-fit:contain;image-rendering:pixelated}
.row{margin:8px 0;border-bottom:1px solid #eee}.sup{background:#e8f5e9}.opp{background:#ffebee}.sus{background:#fff8e1}</style>
</head><body><h1>CARROT run report</h1>
<p>${escape(result.config.dataset)} · ${escape(sourceLine(result))} · ${result.perSeed.length} seeds · λ ${
    result.lambdas.map((l) => l.toPrecision(3)).join(", ")
  } · ${methodLine(result)}</p>
${summaryTable(result)}
${selectionTable(result)}
${alphaTruthTable(result)}
${sections.join("\n")}
</body></html>
`;
}

function methodLine(result: RunResult): string {
  const c = result.config;
  return c.method === "carrot"
    ? `CARROT default: cross-fitted influence descent (${c.folds} folds, γ ∈ {${c.gammas.join(", ")}}), ` +
      `selection on val with fallback at ${c.z} s.e.`
    : `RRO on L_val: estimator ${escape(c.estimator)}, ρ ${c.rho ?? 0.5}, γ ${c.gammas[0] ?? 0}`;
}

function summaryTable(result: RunResult): string {
  const pct = (s: { mean: number; std: number }) =>
    `${(100 * s.mean).toFixed(1)} ± ${(100 * s.std).toFixed(1)}`;
  const rows = (["erm", "carrot"] as const).map((k) => {
    const s = result.summary[k], t = result.summary[k === "erm" ? "ermCalibrated" : "carrotCalibrated"];
    return `<tr><td>${k.toUpperCase()}</td><td>${pct(s.accuracy)}</td><td>${
      pct(s.perClassAccuracy)
    }</td><td>${pct(s.ece)}</td><td>${pct(t.ece)}</td><td>${s.nll.mean.toFixed(3)} ± ${
      s.nll.std.toFixed(3)
    }</td><td>${t.nll.mean.toFixed(3)} ± ${t.nll.std.toFixed(3)}</td></tr>`;
  });
  const timings = Object.entries(result.timings).map(([k, v]) => `${escape(k)} ${v.toFixed(1)} s`).join(
    " · ",
  );
  return `<table><tr><th>method</th><th>top-1 (%)</th><th>per-class acc. (%)</th><th>ECE (%)</th>
<th>ECE after T (%)</th><th>NLL</th><th>NLL after T</th></tr>
${
    rows.join("\n")
  }</table><p><small>T: temperature fitted on val for each head (Guo et al. 2017). Stage timings: ${timings}
</small></p>`;
}

/** What produced the features: the backbone, or the precomputed feature files with their SHA-256 (short). */
function sourceLine(result: RunResult): string {
  const files = result.provenance.features as { split: string; path: string; sha256: string }[] | undefined;
  if (!files) return result.config.model ?? "";
  return files.map((f) => `${f.split} ${f.path.split("/").at(-1)} (sha256 ${f.sha256.slice(0, 12)})`).join(
    ", ",
  );
}

/** Per seed: what CARROT's selection chose (path, step, γ, η, ρ, fallback) and why. */
function selectionTable(result: RunResult): string {
  const rows = result.perSeed.filter((s) => s.selection).map((s) => {
    const x = s.selection!, label = describeCandidate;
    return `<tr><td>${s.seed}</td><td>${escape(label(x.chosen))}</td><td>${escape(label(x.best))}</td><td>${
      x.fallback ? "yes" : "no"
    }</td><td>${x.gain.toFixed(4)} ± ${
      x.standardError.toFixed(4)
    }</td><td>η ${x.stepSize}, ρ ${x.rho}, ${x.folds} folds, z ${x.z}${
      x.validationPath?.ran ? "; challenger: RRO (its defaults) on half of val" : ""
    }</td>
<td>T ${s.temperature.erm.toFixed(2)} → ${s.temperature.carrot.toFixed(2)}</td><td>${
      escape(x.reason)
    }</td></tr>`;
  });
  if (rows.length === 0) return "";
  return `<section><h2>CARROT's selection per seed</h2>
<p>Candidates: every accepted step of every path (held-out weighting, γ), loss trimming at each fraction and (by default) their mean, the graded trimming, refitted on all of train and scored by the
calibrated validation loss; by default the head is refitted at the mean α of the three best ("top-k mean") unless the best alone beats that mean
on val by z standard errors ("vetoed"), and it replaces ERM only when its paired gain exceeds z standard errors. Where half of val
holds ≥ 5 images per class and the selection did not fall back, the split-validation RRO challenges the selected head
on that half (it descends the other half) and replaces it only when it wins there by z standard errors.</p>
<table><tr><th>seed</th><th>in use</th><th>best on val</th><th>fallback</th><th>val gain ± s.e.</th><th>settings</th>
<th>temperature ERM → CARROT</th><th>why</th></tr>
${rows.join("\n")}</table></section>`;
}

/** Per seed, where ground truth exists: mean α of clean / mislabeled / shortcut images and low α as a detector. */
function alphaTruthTable(result: RunResult): string {
  const seeds = result.perSeed.filter((s) => s.alphaByTruth);
  if (seeds.length === 0) return "";
  const number = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : "–");
  const auroc = (d?: { auroc: number }) => (d ? d.auroc.toFixed(3) : "–");
  const rows = seeds.map(({ seed, alphaByTruth: a }) =>
    `<tr><td>${seed}</td><td>${number(a!.clean.mean)} (${a!.clean.count})</td><td>${
      number(a!.mislabeled.mean)
    } (${a!.mislabeled.count})</td><td>${number(a!.shortcut.mean)} (${a!.shortcut.count})</td><td>${
      number(a!.mislabeledRatio)
    }</td><td>${number(a!.shortcutRatio)}</td><td>${auroc(a!.mislabeledDetection)}</td><td>${
      auroc(a!.shortcutDetection)
    }</td></tr>`
  );
  const ratios = seeds.map((s) => s.alphaByTruth!.mislabeledRatio).filter(Number.isFinite);
  const mean = ratios.reduce((t, v) => t + v, 0) / ratios.length;
  return `<section><h2>Did CARROT find the corrupted training images?</h2>
<p>Mean α after CARROT per group of training images (count in brackets); the ratio to the clean images' mean; and
the AUROC of low α as a detector of each kind. Mean ratio mislabeled / clean over seeds: <b>${
    number(mean)
  }</b>.
When the selection falls back to ERM, α ≡ 1 and every ratio is 1.</p>
<table><tr><th>seed</th><th>α clean</th><th>α mislabeled</th><th>α shortcut</th><th>mislabeled / clean</th>
<th>shortcut / clean</th><th>AUROC mislabeled</th><th>AUROC shortcut</th></tr>
${rows.join("\n")}</table></section>`;
}

async function gallery(result: RunResult, artifacts: RunArtifacts): Promise<string> {
  const decoder = await selectImageDecoder();
  const { features } = artifacts;
  const trainPath = (row: number) => features.train.items?.[artifacts.trainIndices[row]]?.path;
  const name = (c: number) => escape(result.classNames[c] ?? c);
  const tile = async (path: string | undefined, caption: string, cls = "") => {
    const src = await thumbnail(path, decoder);
    return `<figure class="${cls}">${
      src ? `<img src="${src}">` : ""
    }<figcaption>${caption}</figcaption></figure>`;
  };
  const rows: string[] = [];
  for (
    const e of artifacts.explanations.slice(0, 12) as {
      id: string;
      label: number;
      predicted: number;
      representer: {
        supporters: { index: number; score: number }[];
        opposers: { index: number; score: number }[];
      };
    }[]
  ) {
    const testPath = features.test.items?.find((item) => item.id === e.id)?.path;
    const cells = [await tile(testPath, `test: ${name(e.label)}<br>pred: ${name(e.predicted)}`)];
    for (const s of e.representer.supporters.slice(0, 5)) {
      cells.push(
        await tile(
          trainPath(s.index),
          `+${s.score.toFixed(2)} ${name(features.train.labels[artifacts.trainIndices[s.index]])}`,
          "sup",
        ),
      );
    }
    for (const s of e.representer.opposers.slice(0, 5)) {
      cells.push(
        await tile(
          trainPath(s.index),
          `${s.score.toFixed(2)} ${name(features.train.labels[artifacts.trainIndices[s.index]])}`,
          "opp",
        ),
      );
    }
    rows.push(`<div class="row">${cells.join("")}</div>`);
  }
  // the 24 training images ranked highest by one suspect score (ERM head), captioned with that score
  const suspectTiles = async (ranking: string, symbol: string) => {
    const tiles: string[] = [];
    const top = [...artifacts.suspects].sort((a, b) => b.scores[ranking] - a.scores[ranking]).slice(0, 24);
    for (const s of top) {
      const item = features.train.items?.[s.index];
      const flag = item?.truth ? ` ${item.truth.noisy ? "✗ " : ""}${truthGroup(item.truth)}` : "";
      tiles.push(
        await tile(
          item?.path,
          `${name(features.train.labels[s.index])}<br>${symbol} ${s.scores[ranking].toExponential(2)}${flag}`,
          "sus",
        ),
      );
    }
    return tiles.join("");
  };
  const harmful = await suspectTiles("harmfulness", "g");
  const mislabelled = "out-of-fold-loss" in (artifacts.suspects[0]?.scores ?? {})
    ? await suspectTiles("out-of-fold-loss", "ℓ<sub>oof</sub>")
    : "";
  // the training images whose weight CARROT changed most, both ways (seed 0; α starts at 1)
  const alpha = artifacts.alphaPerSeed[0], rowsOfSeed = artifacts.trainIndicesPerSeed[0];
  const byAlpha = Array.from(alpha.keys()).sort((a, b) => alpha[a] - alpha[b]);
  const changed = async (rows: number[], cls: string) => {
    const tiles: string[] = [];
    for (const row of rows.filter((r) => alpha[r] !== 1)) {
      const item = features.train.items?.[rowsOfSeed[row]], given = features.train.labels[rowsOfSeed[row]];
      const truth = !item?.truth
        ? ""
        : item.truth.noisy
        ? `<br>✗ true: ${name(item.truth.label)}`
        : `<br>${truthGroup(item.truth)}`;
      tiles.push(await tile(item?.path, `α ${alpha[row].toFixed(2)}<br>${name(given)}${truth}`, cls));
    }
    return tiles.join("") || "<p>none: the selection kept α ≡ 1 on seed 0</p>";
  };
  const down = await changed(byAlpha.slice(0, 24), "opp");
  const up = await changed(byAlpha.slice(-12).reverse(), "sup");
  return `<section><h2>Training images CARROT down-weighted most (seed 0)</h2>
<p>Lowest α, with the given label${
    features.train.items?.[0]?.truth
      ? " and, from the ground truth, the true label (✗) or shortcut / clean"
      : ""
  }.</p><div>${down}</div></section>
<section><h2>Training images CARROT up-weighted most (seed 0)</h2><div>${up}</div></section>
<section><h2>Test images with their top supporting (green) and opposing (red) training images</h2>
<p>Representer contributions a_i(x) = β_ik (h_i·h_x) to the predicted logit (CARROT head, seed 0).</p>${
    rows.join("\n")
  }</section>
<section><h2>Top suspected training images (harmfulness ∂L_val/∂α_i, ERM head)</h2>
<p>The images whose weight, raised, would raise the validation loss most (Theorem B).</p><div>${harmful}</div></section>${
    mislabelled && `
<section><h2>Likely mislabelled training images (out-of-fold loss, ERM head)</h2>
<p>The highest loss −log p<sub>y<sub>i</sub></sub> under a head fitted without the image's fold: a head that never
saw the image cannot have memorised a wrong label. On the SynthBirds image sets this finds mislabelled images
better than harmfulness does (AUROC 0.87 against 0.70, <code>deno task bench detection</code>).</p><div>${mislabelled}</div></section>`
  }`;
}
