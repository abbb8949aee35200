/**
 * The run directory: `config.json`, `metrics.json` (every number of the report), `alpha.safetensors` (α per seed
 * with the training row indices), `head.safetensors` (ERM and CARROT heads of seed 0, [K, d+1], bias last),
 * `explanations.jsonl` (one line per test image, training points named by id and path), `suspects.csv` and
 * `report.html`. Every file is written atomically.
 */
import { join } from "node:path";
import { writeAll, writeAtomic, writeJsonAtomic } from "../_atomic.ts";
import { writeSafetensors } from "../models/safetensors.ts";
import type { RunArtifacts, RunResult } from "./train.ts";
import { renderReport } from "../report/report.ts";

const textFile = (path: string, text: string) =>
  writeAtomic(path, (file) => writeAll(file, new TextEncoder().encode(text)));

/**
 * Writes every artifact of a run into `result.config.runDir`, creating it: a run that fails earlier leaves no
 * folder behind.
 */
export async function writeRunOutputs(result: RunResult, artifacts: RunArtifacts): Promise<void> {
  const dir = result.config.runDir;
  await Deno.mkdir(dir, { recursive: true });
  const { features } = artifacts;
  const train = features.train;
  const describe = (index: number) => ({
    index,
    id: train.ids[index],
    path: train.items?.[index]?.path,
    label: train.labels[index],
  });
  await writeJsonAtomic(join(dir, "config.json"), result.config);
  await writeJsonAtomic(join(dir, "metrics.json"), result);
  const n = artifacts.alphaPerSeed[0].length;
  await writeSafetensors(join(dir, "alpha.safetensors"), {
    alpha: {
      dtype: "F32",
      shape: [artifacts.alphaPerSeed.length, n],
      values: concat(artifacts.alphaPerSeed, (l) => new Float32Array(l)),
    },
    trainIndices: {
      dtype: "I32",
      shape: [artifacts.alphaPerSeed.length, n],
      values: concat(artifacts.trainIndicesPerSeed, (l) => new Int32Array(l)),
    },
  }, { metadata: { layout: "alpha[seed, i] for training row trainIndices[seed, i] of the train split" } });
  await writeSafetensors(join(dir, "head.safetensors"), {
    erm: {
      dtype: "F32",
      shape: artifacts.erm.weights.shape,
      values: (await artifacts.erm.weights.data()) as Float32Array,
    },
    carrot: {
      dtype: "F32",
      shape: artifacts.carrot.weights.shape,
      values: (await artifacts.carrot.weights.data()) as Float32Array,
    },
  }, {
    metadata: {
      layout: "W [K, d+1], logits = W [h; 1] (bias last); seed 0",
      lambda: String(artifacts.carrot.lambda),
      classNames: JSON.stringify(result.classNames),
    },
  });
  // explanation indices refer to the seed-0 training part: map them back to train rows
  const row = (i: number) => describe(artifacts.trainIndices[i]);
  const lines = artifacts.explanations.map((e) => {
    const record = e as {
      representer: { supporters: { index: number }[]; opposers: { index: number }[] };
      influence: { proponents: { index: number }[]; opponents: { index: number }[] };
      id: string;
    };
    const name = (list: { index: number }[]) => list.map((s) => ({ ...s, ...row(s.index) }));
    return JSON.stringify({
      ...e,
      path: features.test.items?.find((item) => item.id === record.id)?.path,
      representer: {
        ...record.representer,
        supporters: name(record.representer.supporters),
        opposers: name(record.representer.opposers),
      },
      influence: {
        ...record.influence,
        proponents: name(record.influence.proponents),
        opponents: name(record.influence.opponents),
      },
    });
  });
  await textFile(join(dir, "explanations.jsonl"), lines.join("\n") + "\n");
  const rankings = Object.keys(artifacts.suspects[0]?.scores ?? {});
  const alphaOf = new Map(
    Array.from(artifacts.trainIndices, (index, q) => [index, artifacts.alphaPerSeed[0][q]]),
  );
  const csv = [
    ["rank", "row", "id", "path", "label", ...rankings, "carrot_alpha", "mislabeled", "shortcut"].join(","),
    ...artifacts.suspects.map((s, rank) => {
      const item = train.items?.[s.index];
      return [
        rank + 1,
        s.index,
        JSON.stringify(train.ids[s.index]),
        JSON.stringify(item?.path ?? ""),
        train.labels[s.index],
        ...rankings.map((r) => s.scores[r].toExponential(6)),
        alphaOf.get(s.index)?.toFixed(6) ?? "",
        item?.truth ? Number(item.truth.noisy) : "",
        item?.truth ? Number(item.truth.shortcut) : "",
      ].join(",");
    }),
  ];
  await textFile(join(dir, "suspects.csv"), csv.join("\n") + "\n");
  await textFile(join(dir, "report.html"), await renderReport(result, artifacts));
}

function concat<T extends Float32Array | Int32Array>(parts: T[], make: (length: number) => T): T {
  const out = make(parts.reduce((s, p) => s + p.length, 0));
  let offset = 0;
  for (const p of parts) [out.set(p, offset), offset += p.length];
  return out;
}
