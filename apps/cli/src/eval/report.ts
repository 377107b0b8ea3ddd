import type { EvalReport } from "./run.js";

const pct = (x: number) => (x * 100).toFixed(2);
const ms = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "-");

/** The README table: one row per mode, HNSW and exact side by side. */
export function markdownTable(r: EvalReport): string {
  const head = [
    "Mode (query / docs)",
    "Query bundle",
    "Doc bundle",
    "nDCG@10",
    "Recall@100",
    "nDCG@10 exact",
    "Recall@100 exact",
    "% of T/T nDCG@10",
    "Encode p50 / p95 ms",
  ];
  const rows = r.results.map((m) => [
    m.label,
    `\`${m.queryBundle}\``,
    `\`${m.docBundle}\``,
    pct(m.hnsw.ndcg10),
    pct(m.hnsw.recall100),
    pct(m.exact.ndcg10),
    pct(m.exact.recall100),
    m.pctOfTeacher === null ? "-" : `${m.pctOfTeacher.toFixed(1)}%`,
    `${ms(m.encodeP50Ms)} / ${ms(m.encodeP95Ms)}`,
  ]);
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  const slice = r.slice === "full" ? "full corpus, test split" : `slice ${r.slice}`;
  return [
    `**${r.dataset}** (${r.docs} docs, ${r.queries} queries, ${slice}); HNSW ef=${r.ef}; ${r.machine}; ${r.date.slice(0, 10)}`,
    "",
    ...(r.method ? [`_${r.method}._`, ""] : []),
    line(head),
    line(head.map(() => "---")),
    ...rows.map(line),
  ].join("\n");
}

/** Aligned plain-text table for a terminal. */
export function textTable(r: EvalReport): string {
  const head = ["mode", "query", "docs", "nDCG@10", "R@100", "nDCG@10 exact", "R@100 exact", "% T/T", "enc p50 ms"];
  const rows = r.results.map((m) => [
    m.label,
    m.queryBundle,
    m.docBundle,
    pct(m.hnsw.ndcg10),
    pct(m.hnsw.recall100),
    pct(m.exact.ndcg10),
    pct(m.exact.recall100),
    m.pctOfTeacher === null ? "-" : `${m.pctOfTeacher.toFixed(1)}%`,
    ms(m.encodeP50Ms),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] as number)).join("  ");
  return [fmt(head), fmt(widths.map((w) => "-".repeat(w))), ...rows.map(fmt)].join("\n");
}
