// Regenerates the README's figures between `<!-- generated:NAME -->` and
// `<!-- /generated:NAME -->` markers, so nothing in them is edited by hand:
//   config      the configuration tables, from the services' zod schemas (the enforced ones)
//   eval        one table per report in docs/figures/eval-*.json (saved by `tandem eval --json`)
//   teachers    the symmetric rows (teacher/teacher, student/student, BM25) of every report in eval-*.json
//               and teacher-*.json, one row per model and width, the datasets side by side
//   bench-*     the output of a benchmark run, saved in docs/figures/bench-*.txt
//   ann-sizing  the ANN tier's memory per vector and what it comes to at 1M, 10M and 100M points, per
//               graph precision, from the last line of docs/figures/bench-ann-modes*.txt (the largest
//               n measured per mode) and the service's RSS in the f32 run at 1M (bench-ann-1m.txt)
//   distill-*   a distilled student's release (training/artifacts/<name>/provenance.json) and the dose
//               curves of the runs that made it (docs/figures/distill-<name>.r<release>.jsonl, one per
//               release of the chain: a release may continue the one before)
// Every README of the repository (the top level's, each service's and package's, training's) is
// rendered the same way; a README without markers is left as it is.
// Usage: pnpm readme           rewrite the READMEs that changed
//        pnpm readme --check   exit 1 when a README differs from what would be written
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { markdownTable } from "../apps/cli/src/eval/report.js";
import type { EvalReport } from "../apps/cli/src/eval/run.js";
import { commonConfig } from "../packages/service-kit/src/config.js";
import { annConfigSchema } from "../services/ann/src/config.js";
import { indexerConfigSchema } from "../services/doc-indexer/src/config.js";
import { encoderConfigSchema } from "../services/query-encoder/src/config.js";

interface Def {
  type: string;
  defaultValue?: unknown;
  in?: { _zod: { def: Def } };
  innerType?: { _zod: { def: Def } };
}

/** What this script reads of a zod field (structurally: zod lives in the services, not at the root). */
interface Field {
  description?: string;
  _zod: { def: Def };
}

function defaultOf(field: Field): string {
  let def = field._zod.def;
  for (;;) {
    if (def.type === "default") {
      const v = typeof def.defaultValue === "function" ? (def.defaultValue as () => unknown)() : def.defaultValue;
      return v === "" ? "(empty)" : `\`${String(v)}\``;
    }
    const next = def.in ?? def.innerType;
    if (!next) return "required";
    def = next._zod.def;
  }
}

/** Defaults computed from the machine, shown as their rule so the README is the same everywhere. */
const MACHINE_DEFAULTS: Record<string, string> = { INTRA_OP_THREADS: "min(4, CPUs)" };

/** Variables every service shares are printed once, in their own table. */
const shared = new Set(Object.keys(commonConfig));

function table(
  title: string,
  schema: { shape: Record<string, unknown> },
  keep = (name: string) => !shared.has(name),
): string {
  const rows = Object.entries(schema.shape)
    .filter(([name]) => keep(name))
    .map(
      ([name, field]) =>
        `| \`${name}\` | ${MACHINE_DEFAULTS[name] ?? defaultOf(field as Field)} | ${(field as Field).description ?? ""} |`,
    );
  return [`#### ${title}`, "", "| variable | default | meaning |", "|---|---|---|", ...rows, ""].join("\n");
}

const configTables = () =>
  [
    table("every service", encoderConfigSchema, (name) => shared.has(name)),
    table("query-encoder", encoderConfigSchema),
    table("ann", annConfigSchema),
    table("doc-indexer", indexerConfigSchema),
  ].join("\n");

const ROOT = join(import.meta.dirname, "..");
const FIGURES = join(ROOT, "docs/figures");
const figureFiles = (prefix: string, ext: string) =>
  existsSync(FIGURES)
    ? readdirSync(FIGURES)
        .filter((f) => f.startsWith(prefix) && f.endsWith(ext))
        .sort()
    : [];

/** One row of a distillation run's dose curve (training/tandem_training/distill.py DoseProbe). */
interface DosePoint {
  step: number;
  examples: number;
  /** Examples seen by the whole chain of releases (absent in runs that started from the base weights). */
  examples_total?: number;
  train_seconds: number;
  loss: number | null;
  heldout_cosine: Record<string, { mean: number; p10: number }>;
  dev: Record<string, { "ndcg@10": number; "recall@100": number }>;
}

/** The part of an artifact's provenance.json the README shows. */
interface Provenance {
  name: string;
  release: number;
  file: string;
  sha256: string;
  bytes: number;
  parameters: number;
  training: {
    teacher: { bundle: string; space: string };
    data: Record<string, { used?: number; available?: number }>;
    train_texts: number;
    steps: number;
    examples_seen: number;
    examples_seen_total?: number;
    init?: "base" | { release: number; examples_total: number };
    machine: string;
    seconds: { teacher_embedding: number; train: number };
    config: { budget: number; batch: number; lr: number; rank_weight: number };
  };
  heldout_cosine_to_teacher: { least_squares_init: Record<string, { mean: number }> };
  dev: {
    chosen_step: number;
    scores: Record<string, { "ndcg@10": number }>;
    after_run?: Record<string, { "ndcg@10": number; "recall@100": number; queries: number }>;
  };
}

const thousands = (n: number) => n.toLocaleString("en-US");

/** The exported student scored on the dev splits after the run (`python -m tandem_training.artifact dev`). */
function afterRun(scores: Provenance["dev"]["after_run"]): string[] {
  if (!scores || Object.keys(scores).length === 0) return [];
  const figures = Object.entries(scores).map(
    ([set, s]) =>
      `${set} (${s.queries} queries) nDCG@10 ${s["ndcg@10"].toFixed(2)}, Recall@100 ${s["recall@100"].toFixed(2)}`,
  );
  return ["", `The exported student on the dev splits, scored after the run: ${figures.join("; ")}.`];
}

/** How the exported dose point was chosen: on dev figures, or the run's last point when it had none. */
function chosen(dev: Provenance["dev"]): string {
  const scores = Object.entries(dev.scores);
  if (scores.length === 0)
    return "no dev figures during the run (the dev corpora's teacher vectors were not cached yet): its last point is the one exported";
  const figures = scores.map(([set, s]) => `${set} nDCG@10 ${s["ndcg@10"].toFixed(2)}`).join(", ");
  return `chosen on dev at step ${thousands(dev.chosen_step)} (${figures})`;
}

/** The dose curves of a release and of the releases it continued, oldest first, each row tagged with its release. */
function doseCurves(artifact: string, release: number): { release: number; point: DosePoint }[] {
  const runs = figureFiles(`distill-${artifact}.r`, ".jsonl")
    .map((f) => ({ f, release: Number(f.slice(`distill-${artifact}.r`.length, -".jsonl".length)) }))
    .filter((r) => Number.isInteger(r.release) && r.release <= release)
    .sort((a, b) => a.release - b.release);
  if (!runs.some((r) => r.release === release))
    throw new Error(`no dose curve docs/figures/distill-${artifact}.r${release}.jsonl for release ${release}`);
  return runs.flatMap(({ f, release }) =>
    readFileSync(join(FIGURES, f), "utf8")
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => ({ release, point: JSON.parse(l) as DosePoint })),
  );
}

function distillFigures(artifact: string): string {
  const prov = JSON.parse(
    readFileSync(join(ROOT, "training/artifacts", artifact, "provenance.json"), "utf8"),
  ) as Provenance;
  const curve = doseCurves(artifact, prov.release);
  const t = prov.training;
  const kinds = [...new Set(curve.flatMap((c) => Object.keys(c.point.heldout_cosine)))];
  const devs = [...new Set(curve.flatMap((c) => Object.keys(c.point.dev)))];
  const used = (k: string) => thousands(t.data[k]?.used ?? 0);
  const parent =
    t.init && t.init !== "base"
      ? ` It continues release ${t.init.release} (${thousands(t.init.examples_total)} examples seen): ` +
        `${thousands(t.examples_seen_total ?? t.examples_seen)} examples in all. The table holds every run of the chain.`
      : "";
  const summary = [
    `**${prov.name}** release ${prov.release}: \`${prov.file}\` (${(prov.bytes / 2 ** 20).toFixed(1)} MiB, ` +
      `${thousands(prov.parameters)} trained parameters as fp16, sha256 \`${prov.sha256.slice(0, 12)}…\`), ` +
      `distilled into \`${t.teacher.space}\` (teacher bundle \`${t.teacher.bundle}\`) on ${t.machine}: ` +
      `${thousands(t.train_texts)} training texts (${used("queries")} queries, ${used("sentences")} corpus sentences, ` +
      `${used("passages")} passages), teacher targets in ${thousands(t.seconds.teacher_embedding)} s, ` +
      `${thousands(t.steps)} steps × ${t.config.batch} = ${thousands(t.examples_seen)} examples in ` +
      `${thousands(t.seconds.train)} s of training; ${chosen(prov.dev)}.${parent}`,
  ];
  const head = [
    "release",
    "examples seen (all releases)",
    "training s (this run)",
    "loss",
    ...kinds.map((k) => `held-out cos ${k}`),
    ...devs.map((d) => `dev nDCG@10 ${d}`),
  ];
  const rows = curve.map(({ release, point: p }) =>
    [
      `r${release}`,
      thousands(p.examples_total ?? p.examples),
      thousands(p.train_seconds),
      p.loss === null ? "–" : p.loss.toFixed(4),
      ...kinds.map((k) => p.heldout_cosine[k]?.mean.toFixed(4) ?? "–"),
      ...devs.map((d) => p.dev[d]?.["ndcg@10"].toFixed(2) ?? "–"),
    ].join(" | "),
  );
  return [
    ...summary,
    "",
    `| ${head.join(" | ")} |`,
    `| ${head.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${r} |`),
    ...afterRun(prov.dev.after_run),
  ].join("\n");
}

const readReports = (prefix: string): EvalReport[] =>
  figureFiles(prefix, ".json").map((f) => JSON.parse(readFileSync(join(FIGURES, f), "utf8")) as EvalReport);

/**
 * Models compared as they would serve both sides: exact search (the graph's
 * loss is the ANN's, not the model's), one row per document bundle and space,
 * a column pair per dataset; "—" where a model has not been scored on a set.
 */
function teacherTable(): string {
  const reports = [...readReports("eval-"), ...readReports("teacher-")];
  if (reports.length === 0) throw new Error(`no eval report in ${FIGURES}`);
  const sets = [...new Set(reports.map((r) => r.dataset))].sort();
  const rows = new Map<
    string,
    { model: string; space: string; scores: Map<string, string>; encode: Map<string, number> }
  >();
  for (const report of reports) {
    for (const r of report.results.filter((x) => x.mode !== "st")) {
      const [model, space] = r.mode === "bm25" ? ["BM25", "lexical"] : [`\`${r.docBundle}\``, `\`${r.space}\``];
      const key = `${model} ${space}`;
      const row = rows.get(key) ?? { model, space, scores: new Map(), encode: new Map() };
      row.scores.set(report.dataset, `${(r.exact.ndcg10 * 100).toFixed(2)} | ${(r.exact.recall100 * 100).toFixed(2)}`);
      row.encode.set(report.dataset, r.encodeP50Ms);
      rows.set(key, row);
    }
  }
  const head = ["model", "space", ...sets.flatMap((s) => [`${s} nDCG@10`, `${s} Recall@100`]), "query encode p50 ms"];
  // Dense models by name, widest space first; the lexical baseline last.
  const width = (space: string) => Number(space.match(/\/(\d+)`$/)?.[1] ?? 0);
  const ordered = [...rows.values()].sort(
    (a, b) =>
      Number(a.model === "BM25") - Number(b.model === "BM25") ||
      a.model.localeCompare(b.model) ||
      width(b.space) - width(a.space),
  );
  const body = ordered.map((row) => {
    const scores = sets.map((s) => row.scores.get(s) ?? "— | —");
    const encode = sets.map((s) => row.encode.get(s)?.toFixed(1) ?? "—").join(" / ");
    return `| ${[row.model, row.space, ...scores, encode].join(" | ")} |`;
  });
  return [
    `| ${head.join(" | ")} |`,
    `|${" --- |".repeat(head.length)}`,
    ...body,
    "",
    `_Exact search, so the figures compare models, not graphs; encode p50 per dataset (${sets.join(" / ")}), one query per call, on ${reports[0]?.machine ?? "an unnamed machine"}. Sources: docs/figures/eval-*.json and docs/figures/teacher-*.json._`,
  ].join("\n");
}

/** What `pnpm bench:ann --modes` prints last (test/bench/ann/modes.ts). */
interface ModesRun {
  bench: "ann-modes";
  n: number;
  dims: number;
  modes: Array<{
    mode: string;
    rescore: boolean;
    oversampling: number | null;
    rss_bytes_per_vector: number;
    anon_bytes_per_vector: number;
    file_bytes_per_vector: number;
    runs: Array<{ ef: number; recall: number; qps_1: number; p99_ms_1: number }>;
  }>;
}

const lastJson = <T>(file: string): T => {
  const lines = readFileSync(join(FIGURES, file), "utf8").trimEnd().split("\n");
  return JSON.parse(lines[lines.length - 1]!) as T;
};
const gb = (bytes: number) => (bytes >= 1e11 ? `${Math.round(bytes / 1e9)} GB` : `${(bytes / 1e9).toFixed(1)} GB`);

function annSizing(): string {
  const runs = figureFiles("bench-ann-modes", ".txt").map((f) => lastJson<ModesRun>(f));
  if (runs.length === 0) throw new Error(`no bench-ann-modes*.txt in ${FIGURES} (save a pnpm bench:ann --modes run)`);
  // Per mode, the largest collection it was measured at.
  const best = new Map<string, { run: ModesRun; m: ModesRun["modes"][number] }>();
  for (const run of runs) {
    for (const m of run.modes) {
      const seen = best.get(m.mode);
      if (!seen || seen.run.n < run.n) best.set(m.mode, { run, m });
    }
  }
  const rows = ["f32", "f16", "i8"].flatMap((mode) => {
    const b = best.get(mode);
    if (!b) return [];
    const { run, m } = b;
    const at = m.runs.find((r) => r.ef === 64) ?? m.runs[m.runs.length - 1]!;
    const name = m.rescore ? `${mode} + rescore ×${m.oversampling}` : mode;
    const heap = (n: number) => gb(n * m.anon_bytes_per_vector);
    const pages = (n: number) => gb(n * m.file_bytes_per_vector);
    return [
      `| ${name} | ${thousands(run.n)} × ${run.dims} | ${at.recall} (ef ${at.ef}) | ${at.qps_1} | ${m.anon_bytes_per_vector} + ${m.file_bytes_per_vector} | ${heap(1e6)} + ${pages(1e6)} | ${heap(1e7)} + ${pages(1e7)} | ${heap(1e8)} + ${pages(1e8)} |`,
    ];
  });
  const lines = [
    "| graph | measured at | recall@10 | QPS, 1 client | bytes per vector: heap + originals' pages | 1M | 10M | 100M |",
    "|---|---|---|---|---|---|---|---|",
    ...rows,
  ];
  if (existsSync(join(FIGURES, "bench-ann-1m.txt"))) {
    const big = lastJson<{ n: number; dims: number; service_rss_mb: number; recall_at_10: number; ef: number }>(
      "bench-ann-1m.txt",
    );
    lines.push(
      "",
      `The f32 service at ${thousands(big.n)} × ${big.dims} (bench-ann-1m.txt): RSS ${gb(big.service_rss_mb * 2 ** 20)} after ingest, ${Math.round((big.service_rss_mb * 2 ** 20) / big.n)} bytes per vector, recall@10 ${big.recall_at_10} at ef ${big.ef}.`,
    );
  }
  return lines.join("\n");
}

function render(name: string): string {
  if (name === "ann-sizing") return annSizing();
  if (name.startsWith("distill-")) return distillFigures(name.slice("distill-".length));
  if (name === "teachers") return teacherTable();
  if (name === "config") return configTables();
  if (name === "eval") {
    const files = figureFiles("eval-", ".json");
    if (files.length === 0) throw new Error(`no eval report in ${FIGURES} (save one with tandem eval --json)`);
    return files
      .map((f) => markdownTable(JSON.parse(readFileSync(join(FIGURES, f), "utf8")) as EvalReport))
      .join("\n\n");
  }
  if (name.startsWith("bench-")) {
    const text = readFileSync(join(FIGURES, `${name}.txt`), "utf8").trimEnd();
    return ["```", text, "```"].join("\n");
  }
  throw new Error(`unknown generated block "${name}"`);
}

// An empty block (the markers on consecutive lines) matches too, so a new one renders on the first run.
const BLOCK = /(<!-- generated:([\w-]+) -->\n)(?:[\s\S]*?\n)?(<!-- \/generated:\2 -->)/g;

/** README text with every generated block re-rendered. */
export function regenerate(readme: string): string {
  return readme.replace(BLOCK, (_all, open: string, name: string, close: string) => `${open}${render(name)}\n${close}`);
}

/** The repository's READMEs, relative to its root: the top level's, then those one or two folders down. */
export function readmes(): string[] {
  const skip = new Set(["node_modules", ".cache", ".git", "docs"]);
  const below = (dir: string, depth: number): string[] =>
    readdirSync(join(ROOT, dir), { withFileTypes: true })
      .filter((e) => e.isDirectory() && !skip.has(e.name) && !e.name.startsWith("."))
      .sort((a, b) => a.name.localeCompare(b.name))
      .flatMap((e) => {
        const sub = dir ? `${dir}/${e.name}` : e.name;
        const own = existsSync(join(ROOT, sub, "README.md")) ? [`${sub}/README.md`] : [];
        return depth > 1 ? [...own, ...below(sub, depth - 1)] : own;
      });
  return ["README.md", ...below("", 2)];
}

if (process.argv[1] === import.meta.filename) {
  const stale: string[] = [];
  for (const file of readmes()) {
    const path = join(ROOT, file);
    const current = readFileSync(path, "utf8");
    const next = regenerate(current);
    if (next === current) continue;
    stale.push(file);
    if (!process.argv.includes("--check")) {
      writeFileSync(path, next);
      process.stdout.write(`${file} regenerated\n`);
    }
  }
  if (process.argv.includes("--check") && stale.length > 0) {
    process.stderr.write(`out of date with their sources: ${stale.join(", ")}; run \`pnpm readme\`\n`);
    process.exit(1);
  }
}
