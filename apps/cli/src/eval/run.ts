import { cpus, hostname } from "node:os";
import { type Ann, point } from "@tandem/client";
import { checkServedDims, EmbeddingModel, spaceAt, truncateNormalize } from "@tandem/model-runtime";
import { ensureCollection } from "../clients.js";
import { type EvalSet, loadEvalSet, type SliceOptions } from "./beir.js";
import { DiskEmbeddingCache } from "./disk-embedding-cache.js";
import { quantile, type Scores, score } from "./metrics.js";

/**
 * `tandem eval`: retrieval quality of the towers, side by side.
 *
 * What runs where (and the report says so):
 * - texts are embedded in this process by @tandem/model-runtime, the code the
 *   query encoder and the indexer's workers run; document vectors are cached on
 *   disk by (bundle sha256, text sha256) because a teacher on CPU is slow;
 * - vectors are stored in and searched by the real ANN service over gRPC: HNSW
 *   (what production answers with) and its exact scan (the control for ANN loss).
 *
 * The teacher's query side is served by no service (only the student encodes
 * queries online), which is one reason queries are encoded here: every mode
 * then measures encode latency the same way, one query per call.
 *
 * The lexical baseline (`bm25`, eval/bm25.ts) is scored in this process over
 * the same documents and queries; it uses neither bundles nor the ANN service.
 */

/**
 * Towers: `teacher` (documents, large), `student` (the distilled query tower
 * Tandem serves, in the teacher's space), `base` (the undistilled small model
 * the student started from, in its own space).
 */
export const MODES = {
  tt: { label: "teacher/teacher", query: "teacher", docs: "teacher" },
  st: { label: "student/teacher", query: "student", docs: "teacher" },
  ss: { label: "student/student", query: "base", docs: "base" },
  bm25: { label: "BM25 (lexical)" },
} as const;
export type ModeId = keyof typeof MODES;
/** The modes that embed with model bundles and search the ANN service. */
export type DenseModeId = Exclude<ModeId, "bm25">;
export const isDense = (mode: ModeId): mode is DenseModeId => mode !== "bm25";
export type Tower = "teacher" | "student" | "base";

export interface EvalOptions {
  dataset: string;
  bundles: Record<Tower, string>;
  modes: ModeId[];
  slice: SliceOptions;
  /** Needed by the dense modes only. */
  ann?: Ann;
  annLabel: string;
  /** HNSW beam width of every search (>= 100, the deepest rank scored). */
  ef: number;
  intraOpThreads: number;
  /**
   * Score every dense tower at this Matryoshka size (the first dims of each
   * vector, re-normalised), e.g. 256 of EmbeddingGemma's 768. Towers are run at
   * full width and cut afterwards, so the full-width document cache serves
   * every size. A tower whose bundle does not declare the size is refused.
   */
  dims?: number;
  cacheDir: string;
  /**
   * Existing collections to search instead of writing one, per document tower:
   * e.g. the teacher's collection the indexer service built. It must hold every
   * document of the set, in the tower's space.
   */
  reuse?: Partial<Record<Tower, string>>;
  /** Progress of document embedding: done / total for one tower. */
  onEmbedProgress?: (tower: string, done: number, total: number, cached: number) => void;
  onEmbedDone?: () => void;
  log: (line: string) => void;
}

type DenseOptions = EvalOptions & { ann: Ann };

export interface ModeResult {
  mode: ModeId;
  label: string;
  queryBundle: string;
  docBundle: string;
  space: string;
  /** bm25: its one exhaustive ranking (no ANN index), so `hnsw` and `exact` are equal. */
  hnsw: Scores;
  exact: Scores;
  /** bm25: there is no encoder; encode and search both time the whole in-process search of one query (analysis, scoring, top 100). */
  encodeP50Ms: number;
  encodeP95Ms: number;
  searchP50Ms: number;
  /** nDCG@10 (HNSW) as % of teacher/teacher's, when that mode ran. */
  pctOfTeacher: number | null;
}

export interface EvalReport {
  dataset: string;
  slice: string;
  docs: number;
  queries: number;
  notes: string[];
  machine: string;
  date: string;
  ann: string;
  /** What ran where, in one sentence, for whoever reads the numbers later. */
  method: string;
  ef: number;
  collections: Record<string, TowerCollection>;
  results: ModeResult[];
}

interface TowerCollection {
  name: string;
  /** How the vectors got there: "existing" (given with reuse), "reused" (an earlier eval wrote it), "written". */
  source: "existing" | "reused" | "written";
  embedded: number;
  cached: number;
}

const SEARCH_K = 100;
const EMBED_CHUNK = 16;

export async function runEval(opts: EvalOptions): Promise<EvalReport> {
  const set = loadEvalSet(opts.dataset, opts.slice);
  opts.log(
    `${set.name}: ${set.docs.length} documents, ${set.queries.length} queries (${set.slice === "full" ? "full test split" : `slice ${set.slice}`})`,
  );
  for (const n of set.notes) opts.log(`note: ${n}`);
  const dense = opts.modes.filter(isDense);
  const withAnn = (): DenseOptions => {
    if (!opts.ann) throw new Error(`modes ${dense.join(", ")} search the ANN service: no ANN client was given`);
    return { ...opts, ann: opts.ann };
  };
  if (dense.length > 0) withAnn();

  const models = new Map<Tower, EmbeddingModel>();
  const model = async (tower: Tower): Promise<EmbeddingModel> => {
    const loaded = models.get(tower);
    if (loaded) return loaded;
    const m = await EmbeddingModel.load(opts.bundles[tower], {
      providers: ["cpu"],
      intraOpThreads: opts.intraOpThreads,
    });
    models.set(tower, m);
    const refused = opts.dims === undefined ? null : checkServedDims(m.bundle.manifest, opts.dims);
    if (refused) throw new Error(`--dims ${opts.dims}: ${refused}`);
    return m;
  };
  const space = (m: EmbeddingModel): string => spaceAt(m.bundle.manifest, opts.dims ?? m.info.dims);

  try {
    // The rule that makes asymmetric retrieval safe, checked here too: the ANN
    // service cannot tell which model made a raw query vector.
    for (const mode of dense) {
      const q = await model(MODES[mode].query);
      const d = await model(MODES[mode].docs);
      if (space(q) !== space(d)) {
        throw new Error(
          `${MODES[mode].label}: the query bundle ${q.info.bundleName} writes space ${space(q)} but the document bundle ${d.info.bundleName} writes ${space(d)}`,
        );
      }
    }

    const collections: EvalReport["collections"] = {};
    const docTowers = [...new Set(dense.map((m) => MODES[m].docs))];
    for (const tower of docTowers) {
      const existing = opts.reuse?.[tower];
      collections[tower] = existing
        ? await checkExisting(withAnn().ann, set, existing, await model(tower), opts.dims, opts.log)
        : await indexTower(withAnn(), set, await model(tower));
    }

    type Side = Omit<ModeResult, "mode" | "label" | "pctOfTeacher">;
    const denseSide = async (mode: DenseModeId): Promise<Side> => {
      const q = await model(MODES[mode].query);
      const d = await model(MODES[mode].docs);
      const collection = (collections[MODES[mode].docs] as { name: string }).name;
      const run = await runMode(withAnn(), set, q, collection);
      return { queryBundle: q.info.bundleName, docBundle: d.info.bundleName, space: space(d), ...run };
    };
    const lexicalSide = async (): Promise<Side> => ({
      queryBundle: "bm25",
      docBundle: "bm25",
      space: "lexical",
      ...(await runBm25(set, opts.log)),
    });

    const results: ModeResult[] = [];
    for (const mode of opts.modes) {
      const spec = MODES[mode];
      const side = isDense(mode) ? await denseSide(mode) : await lexicalSide();
      const r: ModeResult = { mode, label: spec.label, ...side, pctOfTeacher: null };
      results.push(r);
      opts.log(
        `${spec.label}: nDCG@10 ${(r.hnsw.ndcg10 * 100).toFixed(2)} (exact ${(r.exact.ndcg10 * 100).toFixed(2)}), ` +
          `Recall@100 ${(r.hnsw.recall100 * 100).toFixed(2)}, encode p50 ${r.encodeP50Ms.toFixed(1)} ms`,
      );
    }
    const tt = results.find((r) => r.mode === "tt");
    if (tt && tt.hnsw.ndcg10 > 0) for (const r of results) r.pctOfTeacher = (100 * r.hnsw.ndcg10) / tt.hnsw.ndcg10;

    return {
      dataset: set.name,
      slice: set.slice,
      docs: set.docs.length,
      queries: set.queries.length,
      notes: set.notes,
      machine: machine(),
      date: new Date().toISOString(),
      ann: opts.annLabel,
      method: [
        dense.length > 0
          ? "queries and documents embedded in-process by @tandem/model-runtime (the services' code; document vectors cached " +
            `by bundle and text sha256${opts.reuse && Object.keys(opts.reuse).length ? ", or taken from an existing collection" : ""}), ` +
            `one query per encode call; vectors searched over gRPC by the ${opts.annLabel}, HNSW and exact scan`
          : "",
        opts.modes.includes("bm25") ? (await import("./bm25.js")).BM25_METHOD : "",
      ]
        .filter(Boolean)
        .join("; "),
      ef: opts.ef,
      collections,
      results,
    };
  } finally {
    for (const m of models.values()) await m.release();
  }
}

/** Embeds the documents with `model` (cache first) and makes sure the ANN collection holds exactly them. */
async function indexTower(opts: DenseOptions, set: EvalSet, model: EmbeddingModel): Promise<TowerCollection> {
  const tower = model.info.bundleName;
  const cache = DiskEmbeddingCache.open(opts.cacheDir, model);
  const missing = set.docs.filter((d) => !cache.get(d.text));
  const cached = set.docs.length - missing.length;
  if (missing.length > 0) {
    opts.log(
      `embedding ${missing.length} documents with ${model.info.bundleName} (${cached} cached in ${cache.path.split("/").pop()})`,
    );
    // Length-sorted chunks keep padding low; each chunk is appended to the cache
    // as soon as it is done, so an interrupted run resumes where it stopped.
    const order = [...missing].sort((a, b) => a.text.length - b.text.length);
    let done = 0;
    opts.onEmbedProgress?.(tower, 0, missing.length, cached);
    for (let i = 0; i < order.length; i += EMBED_CHUNK) {
      const chunk = order.slice(i, i + EMBED_CHUNK);
      const vectors = await model.embed(
        chunk.map((d) => d.text),
        "document",
      );
      cache.put(chunk.map((d, j) => ({ text: d.text, vector: vectors[j] as Float32Array })));
      done += chunk.length;
      opts.onEmbedProgress?.(tower, done, missing.length, cached);
    }
    opts.onEmbedDone?.();
  }

  // One collection per (dataset, slice, bundle): its name says what is in it, so
  // a later run with the same inputs reuses it instead of writing it again.
  const served = servedWidth(model, opts.dims);
  const name = `eval-${set.name}-${set.slice}-${model.info.bundleSha256.slice(0, 12)}${served.suffix}`;
  const { info, created } = await ensureCollection(opts.ann, name, {
    space: served.space,
    dims: served.dims,
    from: `the bundle ${model.info.bundleName}`,
  });
  const reused = !created && Number(info.count) === set.docs.length;
  if (!reused) {
    const points = set.docs.map((d) =>
      point(d.id, served.cut(cache.get(d.text) as Float32Array), { title: d.title, text: d.text.slice(0, 300) }),
    );
    await opts.ann.upsert(name, points, { deadlineMs: 600_000 });
  }
  opts.log(`${reused ? "reused" : "wrote"} ANN collection ${name} (${set.docs.length} vectors, space ${served.space})`);
  return { name, source: reused ? "reused" : "written", embedded: missing.length, cached };
}

/** An existing collection (an alias resolves) that must hold every document of the set, in the model's space. */
async function checkExisting(
  ann: Ann,
  set: EvalSet,
  name: string,
  model: EmbeddingModel,
  dims: number | undefined,
  log: (line: string) => void,
): Promise<TowerCollection> {
  const info = await ann.find(name);
  if (!info) throw new Error(`collection ${name} does not exist`);
  const { space } = servedWidth(model, dims);
  if (info.space !== space) {
    throw new Error(`collection ${name} holds space ${info.space}; ${model.info.bundleName} writes ${space}`);
  }
  let missing = 0;
  for (let i = 0; i < set.docs.length; i += 1000) {
    const ids = set.docs.slice(i, i + 1000).map((d) => d.id);
    const res = await ann.get(name, ids, { deadlineMs: 30_000 });
    missing += res.missing.length;
  }
  if (missing > 0)
    throw new Error(`collection ${name} lacks ${missing} of the ${set.docs.length} documents of ${set.name}`);
  if (Number(info.count) !== set.docs.length) {
    log(`note: ${name} holds ${info.count} points, the set ${set.docs.length}: the extra points are searched too`);
  }
  log(`searching existing collection ${name} (${info.count} vectors, space ${info.space})`);
  return { name, source: "existing", embedded: 0, cached: 0 };
}

/** How a tower's full-width vectors are served at `dims`: its space, width, collection-name suffix and the cut. */
function servedWidth(model: EmbeddingModel, dims: number | undefined) {
  const m = model.bundle.manifest;
  const width = dims ?? m.dims;
  const truncated = width !== m.dims;
  return {
    space: spaceAt(m, width),
    dims: width,
    suffix: truncated ? `-d${width}` : "",
    cut: (v: Float32Array): Float32Array => (truncated ? truncateNormalize(v, width) : v),
  };
}

async function runMode(
  opts: DenseOptions,
  set: EvalSet,
  q: EmbeddingModel,
  collection: string,
): Promise<Pick<ModeResult, "hnsw" | "exact" | "encodeP50Ms" | "encodeP95Ms" | "searchP50Ms">> {
  // Warm-up: the first runs of an ORT session allocate; they are not what a query costs.
  for (const t of set.queries.slice(0, 3)) await q.embed([t.text], "query");
  const { cut } = servedWidth(q, opts.dims);
  const encodeMs: number[] = [];
  const searchMs: number[] = [];
  const hnswRuns = new Map<string, string[]>();
  const exactRuns = new Map<string, string[]>();
  for (const query of set.queries) {
    const t0 = performance.now();
    const [vector] = await q.embed([query.text], "query");
    encodeMs.push(performance.now() - t0);
    const byVector = { collection, k: SEARCH_K, vector: cut(vector as Float32Array), withPayload: false };
    const s0 = performance.now();
    const hnsw = await opts.ann.search({ ...byVector, ef: opts.ef }, { deadlineMs: 30_000 });
    searchMs.push(performance.now() - s0);
    const exact = await opts.ann.search({ ...byVector, exact: true }, { deadlineMs: 30_000 });
    hnswRuns.set(
      query.id,
      hnsw.hits.map((h) => h.id),
    );
    exactRuns.set(
      query.id,
      exact.hits.map((h) => h.id),
    );
  }
  return {
    hnsw: score(hnswRuns, set.qrels),
    exact: score(exactRuns, set.qrels),
    encodeP50Ms: quantile(encodeMs, 0.5),
    encodeP95Ms: quantile(encodeMs, 0.95),
    searchP50Ms: quantile(searchMs, 0.5),
  };
}

/** The lexical baseline over `set`: the same metric code, one timed search per query. */
async function runBm25(
  set: EvalSet,
  log: (line: string) => void,
): Promise<Pick<ModeResult, "hnsw" | "exact" | "encodeP50Ms" | "encodeP95Ms" | "searchP50Ms">> {
  // wink-nlp-utils loads an English language model when first imported (~0.3 s): only runs with bm25 pay for it.
  const { buildBm25 } = await import("./bm25.js");
  const t0 = performance.now();
  const index = buildBm25(set.docs);
  log(`BM25: indexed ${set.docs.length} documents in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  // Warm-up, as for the encoders: the first calls run unoptimised code.
  for (const q of set.queries.slice(0, 3)) index.search(q.text, SEARCH_K);
  const ms: number[] = [];
  const runs = new Map<string, string[]>();
  for (const q of set.queries) {
    const s0 = performance.now();
    runs.set(q.id, index.search(q.text, SEARCH_K));
    ms.push(performance.now() - s0);
  }
  const scores = score(runs, set.qrels);
  return {
    hnsw: scores,
    exact: { ...scores },
    encodeP50Ms: quantile(ms, 0.5),
    encodeP95Ms: quantile(ms, 0.95),
    searchP50Ms: quantile(ms, 0.5),
  };
}

function machine(): string {
  const c = cpus();
  return `${hostname()}: ${c.length} x ${c[0]?.model.trim() ?? "unknown CPU"}, Node ${process.versions.node}`;
}
