import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { JobState } from "@tandem/proto";
import { unary } from "@tandem/service-kit";
import { MODELS } from "../../../test/support/paths.js";
import { SCIFACT, type SplitStack, startSplitStack, submit, waitJob } from "./support/harness.js";

/** The real teacher: BERT-base size, ~1 passage/s on these 2 cores, so only a handful of documents. */
const MPNET = `${MODELS}/all-mpnet-base-v2`;

describe("reindex into another embedding space (MiniLM 384-d -> mpnet 768-d)", {
  skip: !existsSync(`${MPNET}/manifest.json`),
}, () => {
  let stack: SplitStack;
  let c: SplitStack["c"];
  const N = 6;

  before(async () => {
    const vars = { FILE_ROOT: SCIFACT, PARITY_QUERIES: "4", MAX_BATCH_DOCS: "8" };
    stack = await startSplitStack("reindex-space", "sp", N, vars);
    c = stack.c;
  });

  after(() => stack?.stop());

  it("creates the new generation in the new space, swaps the alias, keeps the old one, accepts new submissions", async (t) => {
    const rx = await unary(c.indexer.reindex.bind(c.indexer), {
      alias: "sp",
      teacherBundleDir: MPNET,
      parityQueriesPath: `${SCIFACT}/queries.jsonl`,
    });
    const st = await waitJob(c.indexer, rx.jobId, 300_000).catch((err: unknown) => {
      t.diagnostic(stack.workerLog.join(""));
      throw err;
    });
    assert.equal(st.state, JobState.JOB_STATE_COMPLETED, st.error);
    const r = st.reindex!;
    t.diagnostic(`MiniLM -> mpnet parity recall@10 on ${N} documents: ${r.parityRecallAt10.toFixed(3)}`);
    assert.equal(r.newSpace, "all-mpnet-base-v2/768");
    assert.equal(r.swapped, true);
    const [oldStats, newStats] = await Promise.all([
      unary(c.ann.stats.bind(c.ann), { collection: "sp-g0" }),
      unary(c.ann.stats.bind(c.ann), { collection: "sp" }),
    ]);
    assert.equal(newStats.info?.name, r.newCollection, "the alias now names the new generation");
    assert.equal(newStats.info?.dims, 768);
    assert.equal(newStats.info?.count, N);
    assert.equal(oldStats.info?.space, "all-minilm-l6-v2/384", "the old generation is kept, in its space");
    assert.equal(oldStats.info?.count, N);

    // The alias is in the new space now, and the indexer has a teacher for it.
    const next = await submit(c.indexer, "sp", [{ id: "new-1", text: "Written by the new teacher.", payloadJson: "" }]);
    assert.equal((await waitJob(c.indexer, next.jobId, 120_000)).state, JobState.JOB_STATE_COMPLETED);
    const got = await unary(c.ann.get.bind(c.ann), { collection: "sp", ids: ["new-1"], withVectors: true });
    assert.equal(got.points[0]?.vector.byteLength, 768 * 4);
  });
});
