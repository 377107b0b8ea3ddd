import { readFileSync } from "node:fs";
import { DATASETS } from "./paths.js";

export interface BeirQuery {
  id: string;
  text: string;
}

/** The first `n` queries of a BEIR set (real user queries, for tests and benchmarks). */
export function loadQueries(dataset: string, n = Number.POSITIVE_INFINITY): BeirQuery[] {
  const out: BeirQuery[] = [];
  for (const line of readFileSync(`${DATASETS}/${dataset}/queries.jsonl`, "utf8").split("\n")) {
    if (out.length >= n) break;
    if (!line.trim()) continue;
    const q = JSON.parse(line) as { _id: string; text: string };
    out.push({ id: q._id, text: q.text });
  }
  return out;
}
