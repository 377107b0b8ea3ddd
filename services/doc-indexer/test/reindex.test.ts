import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type ServiceError, status } from "@grpc/grpc-js";
import { EmbeddingModel } from "@tandem/model-runtime";
import { decodeVector, encodeVector, JobState, SearchRequest } from "@tandem/proto";
import { unary } from "@tandem/service-kit";
import { bundleDir } from "../../../test/support/paths.js";
import { MINILM, SCIFACT, type SplitStack, startSplitStack, submit, waitJob } from "./support/harness.js";

// The new teacher: the int8 bundle of the same model (other weights, same space), built by set-up.
// Required: without it the new generation could only be copied vectors, and the test says so.
const NEW_TEACHER = bundleDir("all-minilm-l6-v2-int8");

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += a[i]! * b[i]!;
  return dot;
}

describe("reindex into a new generation with an atomic alias swap", () => {
  let stack: SplitStack;
  let c: SplitStack["c"];
  const N = 60;

  before(async () => {
    // The worker runs as its own process, as deployed: its model loads and inference never hold up
    // the ANN service answering the search loop in this process.
    const vars = {
      // One slot for the reindex job, one for submissions that arrive meanwhile (dual-write).
      WORKER_CONCURRENCY: "2",
      JOB_MAX_DOCS: "40",
      UPSERT_FLUSH_DOCS: "16",
      FILE_ROOT: SCIFACT,
      PARITY_QUERIES: "20",
    };
    stack = await startSplitStack("reindex", "rx", N, vars);
    c = stack.c;
  });

  after(() => stack?.stop());

  it("backfills, dual-writes, checks parity and swaps while searches keep being answered", async (t) => {
    const model = await EmbeddingModel.load(MINILM, { providers: ["cpu"], intraOpThreads: 1 });
    const [q] = await model.embed(["vitamin d deficiency and bone fractures"], "query");
    await model.release();
    const query = encodeVector(q!);
    const errors: string[] = [];
    const answeredBy = new Set<string>();
    let searches = 0;
    let searching = true;
    const loop = (async () => {
      while (searching) {
        try {
          const res = await unary(
            c.ann.search.bind(c.ann),
            SearchRequest.fromPartial({ collection: "rx", k: 5, query: { $case: "vector", value: query } }),
            { timeoutMs: 5000 },
          );
          answeredBy.add(res.collection);
          if (res.hits.length !== 5) errors.push(`only ${res.hits.length} hits from ${res.collection}`);
        } catch (err) {
          errors.push((err as ServiceError).message);
        }
        searches++;
        await new Promise((r) => setTimeout(r, 10));
      }
    })();

    const rx = await unary(c.indexer.reindex.bind(c.indexer), {
      alias: "rx",
      teacherBundleDir: NEW_TEACHER,
      parityQueriesPath: `${SCIFACT}/queries.jsonl`,
    });
    // One reindex per alias at a time.
    await assert.rejects(
      unary(c.indexer.reindex.bind(c.indexer), { alias: "rx", teacherBundleDir: MINILM, parityQueriesPath: "" }),
      (err: ServiceError) => err.code === status.FAILED_PRECONDITION && /already running/.test(err.details),
    );
    // Submitted while the reindex runs: must reach both generations.
    const late = await submit(c.indexer, "rx", [
      { id: "late-1", text: "Dual-written document about gut microbiota.", payloadJson: "" },
      { id: "late-2", text: "Dual-written document about telomere length.", payloadJson: "" },
    ]);
    assert.equal((await waitJob(c.indexer, late.jobId)).state, JobState.JOB_STATE_COMPLETED);

    const st = await waitJob(c.indexer, rx.jobId, 120_000).catch((err: unknown) => {
      t.diagnostic(stack.workerLog.join(""));
      throw err;
    });
    searching = false;
    await loop;
    assert.equal(st.state, JobState.JOB_STATE_COMPLETED, st.error);
    assert.equal(st.kind, "reindex");
    const r = st.reindex!;
    t.diagnostic(
      `new teacher ${NEW_TEACHER.split("/").pop()}: parity recall@10 ${r.parityRecallAt10.toFixed(3)}; ` +
        `${searches} searches during the reindex`,
    );
    assert.equal(r.oldCollection, "rx-g0");
    assert.match(r.newCollection, /^rx-g/);
    assert.equal(r.newSpace, "all-minilm-l6-v2/384");
    assert.ok(r.parityRecallAt10 > 0.7, `same model, other precision: parity ${r.parityRecallAt10}`);
    assert.equal(r.swapped, true);

    const aliases = await unary(c.ann.listAliases.bind(c.ann), {});
    assert.equal(aliases.aliases.find((a) => a.alias === "rx")?.collection, r.newCollection);
    const [oldStats, newStats] = await Promise.all([
      unary(c.ann.stats.bind(c.ann), { collection: "rx-g0" }),
      unary(c.ann.stats.bind(c.ann), { collection: r.newCollection }),
    ]);
    assert.equal(oldStats.info?.count, N + 2, "the old generation is kept");
    assert.equal(newStats.info?.count, N + 2, "backfill + dual-write: the new generation holds every document");
    const late2 = await unary(c.ann.get.bind(c.ann), {
      collection: r.newCollection,
      ids: ["late-1", "late-2"],
      withVectors: false,
    });
    assert.deepEqual(late2.missing, []);
    // Each generation holds its own teacher's vectors, also for the dual-written documents.
    const [oldV, newV] = await Promise.all(
      [r.oldCollection, r.newCollection].map((collection) =>
        unary(c.ann.get.bind(c.ann), { collection, ids: ["late-1", "4983"], withVectors: true }),
      ),
    );
    for (let i = 0; i < 2; i++) {
      const a = decodeVector(oldV!.points[i]!.vector) as Float32Array;
      const b = decodeVector(newV!.points[i]!.vector) as Float32Array;
      const cos = cosine(a, b);
      assert.ok(cos > 0.9, `same model: close vectors (${cos})`);
      assert.ok(cos < 0.99999, `written by the new teacher, not copied (${cos})`);
    }

    assert.deepEqual(errors, [], "searches during the reindex never failed");
    assert.ok(searches > 10);
    assert.ok(answeredBy.has("rx-g0") && answeredBy.has(r.newCollection), [...answeredBy].join(","));

    // After the swap, submissions to the alias go to the new generation.
    const after = await submit(c.indexer, "rx", [{ id: "after-1", text: "Written after the swap.", payloadJson: "" }]);
    assert.equal((await waitJob(c.indexer, after.jobId)).state, JobState.JOB_STATE_COMPLETED);
    const got = await unary(c.ann.get.bind(c.ann), {
      collection: r.newCollection,
      ids: ["after-1"],
      withVectors: false,
    });
    assert.deepEqual(got.missing, []);
  });

  it("refuses an unknown alias and an unreadable bundle", async () => {
    await assert.rejects(
      unary(c.indexer.reindex.bind(c.indexer), { alias: "nope", teacherBundleDir: MINILM, parityQueriesPath: "" }),
      (err: ServiceError) => err.code === status.NOT_FOUND,
    );
    await assert.rejects(
      unary(c.indexer.reindex.bind(c.indexer), {
        alias: "rx",
        teacherBundleDir: "/nonexistent",
        parityQueriesPath: "",
      }),
      (err: ServiceError) => err.code === status.INVALID_ARGUMENT && /does not exist/.test(err.details),
    );
  });
});
