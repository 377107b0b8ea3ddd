// End to end through the CLI's code paths, against the real services (child
// processes of their own main.ts, on free ports, over real gRPC) and the real Redis:
//
//   index a scifact slice through the indexer (teacher worker on CPU)
//   -> search it by text (ANN Search{text} -> query encoder with the student)
//   -> eval on the same slice: teacher/teacher and student/teacher search the
//      collection the indexer built; student/student writes its own
//   -> the asymmetric nDCG@10 stays within TOLERANCE of teacher/teacher.
//
// Bundles: the int8 teacher (fast enough on 2 cores) and the distilled student.
// TANDEM_E2E_TEACHER / TANDEM_E2E_STUDENT choose others (names under
// .cache/models), e.g. to run the plumbing before the pair is built.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { streamCorpusFile } from "@tandem/doc-indexer";
import { EmbeddingModel } from "@tandem/model-runtime";
import { JobState } from "@tandem/proto";
import { annClient, ensureCollection, indexerClient } from "../../apps/cli/src/clients.js";
import { indexerSpace } from "../../apps/cli/src/collection-space.js";
import { search } from "../../apps/cli/src/commands/search.js";
import { loadEvalSet } from "../../apps/cli/src/eval/beir.js";
import { type EvalReport, runEval } from "../../apps/cli/src/eval/run.js";
import { followJob } from "../../apps/cli/src/jobs.js";
import { bundleDir, DATASETS, REPO_ROOT } from "../support/paths.js";
import { TestStack } from "../support/stack.js";

const SCIFACT = `${DATASETS}/scifact`;
const TEACHER = bundleDir(process.env.TANDEM_E2E_TEACHER ?? "all-mpnet-base-v2-int8");
const STUDENT = bundleDir(process.env.TANDEM_E2E_STUDENT ?? "leaf-minilm-mpnet");
const BASE = bundleDir("all-minilm-l6-v2");

// The slice: 25 test queries, their judged documents, and a stable sample up
// to 150 documents (index + eval take a few minutes on 2 shared cores).
const MAX_QUERIES = 25;
const MAX_DOCS = 150;

/**
 * Asymmetric nDCG@10 may trail teacher/teacher by at most this much (absolute,
 * on the 0..1 scale). A distilled student keeps most of the teacher's quality
 * (LEAF reports ~96% on BEIR); 25 queries of one dataset make single queries
 * weigh 4% each, so the bound leaves room for two or three queries flipping
 * while still failing a student that is not in the teacher's space (which
 * scores near 0).
 */
const TOLERANCE = 0.1;

const stack = new TestStack("e2e-cli");
let annAddr = "";
let indexerAddr = "";
const COLLECTION = "e2e-docs";
const set = loadEvalSet(SCIFACT, { maxQueries: MAX_QUERIES, maxDocs: MAX_DOCS });

before(async () => {
  // Each service is its own process, as in `tandem up` and in a deployment:
  // the teacher worker's CPU work then never stalls the other servers' event loops.
  const encoder = await stack.encoderProcess(STUDENT);
  annAddr = (await stack.annProcess({ ENCODER_ADDR: encoder.addr })).addr;
  const indexer = await stack.indexerProcess(annAddr, TEACHER, {
    INTRA_OP_THREADS: "2",
    // As `tandem up` sets them: a BERT-base teacher on 2 cores cannot embed a
    // default flush (256 docs) within the default Upsert deadline (60 s).
    UPSERT_FLUSH_DOCS: "32",
    ANN_TIMEOUT_MS: "600000",
  });
  indexerAddr = indexer.addr;
});

after(() => stack.stop());

test("index a scifact slice through the indexer, then search it by text", { timeout: 900_000 }, async () => {
  const ann = annClient(annAddr);
  const indexer = indexerClient(indexerAddr);
  try {
    const teacher = await indexerSpace(indexer, indexerAddr);
    const { info } = await ensureCollection(ann, `${COLLECTION}-g1`, teacher);
    await ann.setAlias(COLLECTION, info.name);

    // The slice as a corpus file, in the original BEIR lines.
    const ids = new Set(set.docs.map((d) => d.id));
    const lines = readFileSync(`${SCIFACT}/corpus.jsonl`, "utf8")
      .split("\n")
      .filter((l) => l.trim() && ids.has(String((JSON.parse(l) as { _id: string })._id)));
    assert.equal(lines.length, set.docs.length);
    const corpus = join(stack.scratch, "slice.jsonl");
    writeFileSync(corpus, `${lines.join("\n")}\n`);

    const res = await streamCorpusFile(indexer, COLLECTION, corpus, 0);
    assert.equal(res.accepted, set.docs.length);
    assert.deepEqual(res.rejected, []);
    const final = await followJob(indexer, res.jobId, { bar: false });
    assert.equal(final.state, JobState.JOB_STATE_COMPLETED, final.error);
    assert.equal(final.docsDone + final.docsSkipped, set.docs.length);

    // Search{text}: the ANN service calls the student encoder; hits come back ranked, with payloads.
    const q = set.queries[0]!;
    const found = await search(annAddr, q.text, { k: 10, collection: COLLECTION });
    assert.equal(found.collection, info.name);
    assert.equal(found.space, teacher.space);
    assert.equal(found.hits.length, 10);
    for (const h of found.hits) assert.ok(ids.has(h.id), `hit ${h.id} is a document of the slice`);
    for (let i = 1; i < found.hits.length; i++) assert.ok(found.hits[i - 1]!.score >= found.hits[i]!.score);
    assert.ok(found.hits.every((h) => h.title.length > 0 && h.snippet.length > 0));
  } finally {
    ann.close();
    indexer.close();
  }
});

let report: EvalReport;

test("eval on the slice: three modes, HNSW and exact, over the indexer's collection", {
  timeout: 900_000,
}, async () => {
  const ann = annClient(annAddr);
  try {
    report = await runEval({
      dataset: SCIFACT,
      bundles: { teacher: TEACHER, student: STUDENT, base: BASE },
      modes: ["tt", "st", "ss"],
      slice: { maxQueries: MAX_QUERIES, maxDocs: MAX_DOCS },
      ann,
      annLabel: annAddr,
      ef: 128,
      intraOpThreads: 2,
      // The shared cache: embeddings are keyed by bundle and text hash, so reuse is exact.
      cacheDir: join(REPO_ROOT, ".cache/embeddings"),
      reuse: { teacher: COLLECTION },
      log: (line) => process.stderr.write(`  eval: ${line}\n`),
    });
  } finally {
    ann.close();
  }
  assert.equal(report.queries, MAX_QUERIES);
  assert.equal(report.docs, set.docs.length);
  assert.equal(report.collections.teacher?.source, "existing");
  const byMode = new Map(report.results.map((r) => [r.mode, r]));
  for (const mode of ["tt", "st", "ss"] as const) {
    const r = byMode.get(mode);
    assert.ok(r, `mode ${mode} ran`);
    assert.equal(r.hnsw.queries, MAX_QUERIES);
    for (const v of [r.hnsw.ndcg10, r.hnsw.recall100, r.exact.ndcg10, r.exact.recall100]) {
      assert.ok(v >= 0 && v <= 1, `${mode}: metric ${v} in [0, 1]`);
    }
    // 150 points: HNSW with ef=128 finds the exact neighbours (ANN loss is the control here, not the subject).
    assert.ok(
      Math.abs(r.hnsw.ndcg10 - r.exact.ndcg10) < 0.02,
      `${mode}: HNSW ${r.hnsw.ndcg10} vs exact ${r.exact.ndcg10}`,
    );
    // Retrieval works at all: judged documents are a small part of the slice, so chance is far below this.
    assert.ok(r.hnsw.ndcg10 > 0.3, `${mode}: nDCG@10 ${r.hnsw.ndcg10}`);
    assert.ok(r.encodeP50Ms > 0);
  }
  const tt = byMode.get("tt")!;
  const st = byMode.get("st")!;
  process.stderr.write(
    `  nDCG@10 teacher/teacher ${tt.hnsw.ndcg10.toFixed(4)}, student/teacher ${st.hnsw.ndcg10.toFixed(4)} ` +
      `(${st.pctOfTeacher?.toFixed(1)}%), student/student ${byMode.get("ss")!.hnsw.ndcg10.toFixed(4)}\n`,
  );
  assert.ok(
    st.hnsw.ndcg10 >= tt.hnsw.ndcg10 - TOLERANCE,
    `asymmetric nDCG@10 ${st.hnsw.ndcg10} is more than ${TOLERANCE} below teacher/teacher ${tt.hnsw.ndcg10}`,
  );
});

test("the served index holds what the in-process teacher computes (the eval's embedding path)", async () => {
  // The eval embeds documents in this process with model-runtime (and caches
  // them); the served index got its vectors from the indexer's worker. Same
  // bundle and text must give the same vector, or eval numbers would describe
  // a different system from the one that serves.
  const model = await EmbeddingModel.load(TEACHER, { providers: ["cpu"], intraOpThreads: 2 });
  const ann = annClient(annAddr);
  try {
    const sample = set.docs.slice(0, 8);
    const local = await model.embed(
      sample.map((d) => d.text),
      "document",
    );
    const res = await ann.get(
      COLLECTION,
      sample.map((d) => d.id),
      { withVectors: true },
    );
    assert.equal(res.points.length, sample.length);
    // int8 graphs quantise activations dynamically, per batch: the same text in
    // another batch (the worker's vs ours) moves a little (measured ~0.996).
    // fp32 agrees to rounding.
    const floor = model.info.precision === "int8" ? 0.99 : 0.9999;
    for (const [i, p] of res.points.entries()) {
      const served = p.vector;
      assert.ok(served instanceof Float32Array, `document ${p.id}: no vector served`);
      const mine = local[i]!;
      let dot = 0;
      for (let j = 0; j < mine.length; j++) dot += mine[j]! * served[j]!;
      assert.ok(dot > floor, `document ${p.id}: cosine ${dot} between the indexer's vector and the in-process one`);
    }
  } finally {
    ann.close();
    await model.release();
  }
});
