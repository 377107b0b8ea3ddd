import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseCorpusLine } from "@tandem/corpus";
import type { Qrels } from "./metrics.js";

/**
 * A BEIR dataset directory (corpus.jsonl, queries.jsonl, qrels/<split>.tsv),
 * optionally cut to a slice. Documents are turned into text exactly as the
 * indexer does it (`parseCorpusLine`: "title text"), so an eval embeds the
 * same strings the served index holds.
 */
export interface EvalDoc {
  id: string;
  text: string;
  title: string;
}
export interface EvalQuery {
  id: string;
  text: string;
}
export interface EvalSet {
  name: string;
  docs: EvalDoc[];
  queries: EvalQuery[];
  qrels: Qrels;
  /** "full" or a tag naming the slice, part of collection names so slices never mix. */
  slice: string;
  /** Relevant documents the slice had to keep beyond --max-docs (all judged docs of the chosen queries are kept). */
  notes: string[];
}

export interface SliceOptions {
  split?: string;
  maxQueries?: number;
  maxDocs?: number;
}

function readJsonl(path: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (line.trim()) out.push(JSON.parse(line) as Record<string, unknown>);
  }
  return out;
}

export function readQrels(path: string): Map<string, Map<string, number>> {
  const qrels = new Map<string, Map<string, number>>();
  const lines = readFileSync(path, "utf8").split("\n");
  for (const [i, line] of lines.entries()) {
    if (!line.trim()) continue;
    const [qid, did, grade] = line.split("\t");
    if (i === 0 && grade !== undefined && Number.isNaN(Number(grade))) continue; // header
    if (qid === undefined || did === undefined || grade === undefined) {
      throw new Error(`${path}:${i + 1}: expected "query-id<TAB>corpus-id<TAB>score"`);
    }
    const judged = qrels.get(qid) ?? new Map<string, number>();
    judged.set(did, Number(grade));
    qrels.set(qid, judged);
  }
  return qrels;
}

/** A stable pseudo-random order (sha1 of the id) for sampling filler documents without a seed to carry around. */
function sampleKey(id: string): string {
  return createHash("sha1").update(id).digest("hex");
}

export function loadEvalSet(dir: string, opts: SliceOptions = {}): EvalSet {
  const split = opts.split ?? "test";
  const qrelsPath = join(dir, "qrels", `${split}.tsv`);
  if (!existsSync(dir)) {
    // The usual case on a fresh clone: BEIR sets are not part of the repository.
    throw new Error(
      `dataset ${dir} not found. --dataset must be a BEIR directory (corpus.jsonl, queries.jsonl, ` +
        `qrels/${split}.tsv); BEIR sets are not part of the repository, and the default is ` +
        "$TANDEM_DATASETS_DIR/scifact (TANDEM_DATASETS_DIR: ../shared/datasets beside the checkout unless set)",
    );
  }
  for (const p of [join(dir, "corpus.jsonl"), join(dir, "queries.jsonl"), qrelsPath]) {
    if (!existsSync(p)) {
      throw new Error(
        `${p} not found: --dataset must be a BEIR directory (corpus.jsonl, queries.jsonl, qrels/${split}.tsv)`,
      );
    }
  }
  const name = dir.replace(/\/+$/, "").split("/").pop() ?? "dataset";
  const allQrels = readQrels(qrelsPath);

  // Queries: those of the split with at least one relevant document, in file order.
  const queries: EvalQuery[] = [];
  for (const q of readJsonl(join(dir, "queries.jsonl"))) {
    const id = String(q._id);
    const judged = allQrels.get(id);
    if (!judged || ![...judged.values()].some((g) => g > 0)) continue;
    queries.push({ id, text: String(q.text) });
  }
  const chosen = opts.maxQueries && opts.maxQueries < queries.length ? queries.slice(0, opts.maxQueries) : queries;
  const qrels = new Map(chosen.map((q) => [q.id, allQrels.get(q.id) as Map<string, number>]));

  const docs: EvalDoc[] = [];
  for (const line of readFileSync(join(dir, "corpus.jsonl"), "utf8").split("\n")) {
    if (!line.trim()) continue;
    const d = parseCorpusLine(line);
    if ("error" in d) throw new Error(`${dir}/corpus.jsonl: ${d.error} (id ${JSON.stringify(d.id)})`);
    const payload = d.payloadJson ? (JSON.parse(d.payloadJson) as { title?: unknown }) : {};
    docs.push({ id: d.id, text: d.text, title: typeof payload.title === "string" ? payload.title : "" });
  }

  const notes: string[] = [];
  let sliced = docs;
  if (opts.maxDocs && opts.maxDocs < docs.length) {
    // Every judged document of the chosen queries stays (otherwise the slice
    // would change the qrels), filled up with a stable sample of the others.
    const judged = new Set<string>();
    for (const j of qrels.values()) for (const id of j.keys()) judged.add(id);
    const keep = docs.filter((d) => judged.has(d.id));
    const others = docs
      .filter((d) => !judged.has(d.id))
      .map((d) => ({ d, k: sampleKey(d.id) }))
      .sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0))
      .slice(0, Math.max(0, opts.maxDocs - keep.length))
      .map((x) => x.d);
    if (keep.length > opts.maxDocs) {
      notes.push(
        `kept all ${keep.length} judged documents of the chosen queries (more than --max-docs ${opts.maxDocs})`,
      );
    }
    const inSlice = new Set([...keep, ...others].map((d) => d.id));
    sliced = docs.filter((d) => inSlice.has(d.id)); // corpus order
  }
  const slice =
    sliced.length === docs.length && chosen.length === queries.length ? "full" : `d${sliced.length}-q${chosen.length}`;
  return { name, docs: sliced, queries: chosen, qrels, slice, notes };
}
