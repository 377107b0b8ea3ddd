import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import { JobState } from "@tandem/proto";
import { globalMeter, unary } from "@tandem/service-kit";
import { type RunningIndexer, startIndexer } from "../src/service.js";
import { type RunningWorker, startWorker } from "../src/worker.js";
import {
  type AnnHandle,
  cleanup,
  clients,
  createCollection,
  startAnnForTest,
  submit,
  testConfig,
  testPrefix,
  waitJob,
} from "./support/harness.js";

/**
 * The worker dials the ANN service with the same upstream security as the API: an ANN that
 * requires bearer tokens (AUTH_TOKENS_FILE) takes the worker's writes when the indexer's
 * AUTH_TOKEN_FILE holds an accepted token, and refuses them (UNAUTHENTICATED, in JobStatus)
 * when it does not.
 */
const GOOD = "indexer-token-for-tests";

describe("worker -> ANN with bearer tokens", () => {
  const tmp = mkdtempSync(join(tmpdir(), "indexer-sec-"));
  const dataDir = join(tmp, "ann");
  const tokensFile = join(tmp, "tokens");
  const tokenFile = join(tmp, "token");
  const wrongFile = join(tmp, "wrong");
  const prefixes = [testPrefix("sec-good"), testPrefix("sec-wrong")];
  let ann: AnnHandle;
  let c: ReturnType<typeof clients>;
  const docs = Array.from({ length: 10 }, (_, i) => ({
    id: `s${i}`,
    text: `a short document about topic ${i}`,
    payloadJson: "",
  }));

  before(async () => {
    writeFileSync(tokensFile, `# accepted callers\ndoc-indexer ${GOOD}\n`);
    writeFileSync(tokenFile, `${GOOD}\n`);
    writeFileSync(wrongFile, "not-the-token\n");
    ann = await startAnnForTest(dataDir, 0, { AUTH_TOKENS_FILE: tokensFile });
    c = clients(0, ann.port, { tokenFile });
    await createCollection(c.ann, "secure");
  });

  after(async () => {
    c?.ann.close();
    await ann?.stop();
    for (const p of prefixes) await cleanup(p);
    rmSync(tmp, { recursive: true, force: true });
  });

  it("the ANN refuses a caller without a token", async () => {
    const bare = clients(0, ann.port);
    try {
      await assert.rejects(unary(bare.ann.stats.bind(bare.ann), { collection: "secure" }), (err: { code: number }) => {
        assert.equal(err.code, status.UNAUTHENTICATED);
        return true;
      });
    } finally {
      bare.ann.close();
      bare.indexer.close();
    }
  });

  it("with an accepted AUTH_TOKEN_FILE the worker's documents land", async () => {
    const indexer = await startIndexer(testConfig(prefixes[0]!, ann.port, { AUTH_TOKEN_FILE: tokenFile }));
    const ic = clients(indexer.port, ann.port, { tokenFile });
    try {
      assert.ok(indexer.worker, "the in-process worker runs");
      const sub = await submit(ic.indexer, "secure", docs);
      const st = await waitJob(ic.indexer, sub.jobId, 60_000);
      assert.equal(st.state, JobState.JOB_STATE_COMPLETED, st.error);
      assert.equal(st.docsDone, docs.length);
      const stats = await unary(ic.ann.stats.bind(ic.ann), { collection: "secure" });
      assert.equal(stats.info?.count, docs.length);
    } finally {
      ic.indexer.close();
      ic.ann.close();
      await indexer.stop();
    }
  });

  it("with a wrong token the job fails with UNAUTHENTICATED in JobStatus", async () => {
    const vars = { JOB_ATTEMPTS: "2", BACKOFF_MS: "100", AUTH_TOKEN_FILE: tokenFile };
    // The API holds the accepted token (its door checks pass); only the worker's is wrong.
    const indexer: RunningIndexer = await startIndexer(
      testConfig(prefixes[1]!, ann.port, { ...vars, RUN_WORKER: "false" }),
    );
    let worker: RunningWorker | null = null;
    const ic = clients(indexer.port, ann.port, { tokenFile });
    try {
      worker = await startWorker(testConfig(prefixes[1]!, ann.port, { ...vars, AUTH_TOKEN_FILE: wrongFile }), {
        meter: globalMeter("indexer-security-test"),
      });
      const more = docs.map((d) => ({ ...d, id: `w-${d.id}` }));
      const sub = await submit(ic.indexer, "secure", more);
      const st = await waitJob(ic.indexer, sub.jobId, 60_000);
      assert.equal(st.state, JobState.JOB_STATE_FAILED);
      assert.match(st.error, /UNAUTHENTICATED/);
      assert.match(st.error, /invalid bearer token/);
      assert.equal(st.docsDone, 0);
      const stats = await unary(ic.ann.stats.bind(ic.ann), { collection: "secure" });
      assert.equal(stats.info?.count, docs.length, "nothing of the refused job was written");
    } finally {
      ic.indexer.close();
      ic.ann.close();
      await worker?.stop();
      await indexer.stop();
    }
  });
});
