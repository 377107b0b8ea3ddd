import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import { JobState } from "@tandem/proto";
import { globalMeter, unary } from "@tandem/service-kit";
import { TestStack } from "../../../test/support/stack.js";
import { startWorker } from "../src/worker.js";
import { type Clients, clients, createCollection, submit, waitJob } from "./support/harness.js";

/**
 * The worker dials the ANN service with the same upstream security as the API: an ANN that
 * requires bearer tokens (AUTH_TOKENS_FILE) takes the worker's writes when the indexer's
 * AUTH_TOKEN_FILE holds an accepted token, and refuses them (UNAUTHENTICATED, in JobStatus)
 * when it does not.
 */
const GOOD = "indexer-token-for-tests";

describe("worker -> ANN with bearer tokens", () => {
  const stack = new TestStack("indexer-sec");
  const tokensFile = join(stack.scratch, "tokens");
  const tokenFile = join(stack.scratch, "token");
  const wrongFile = join(stack.scratch, "wrong");
  const good = stack.namespace("good");
  const wrong = stack.namespace("wrong");
  let annPort = 0;
  let c: Clients;
  const docs = Array.from({ length: 10 }, (_, i) => ({
    id: `s${i}`,
    text: `a short document about topic ${i}`,
    payloadJson: "",
  }));

  before(async () => {
    writeFileSync(tokensFile, `# accepted callers\ndoc-indexer ${GOOD}\n`);
    writeFileSync(tokenFile, `${GOOD}\n`);
    writeFileSync(wrongFile, "not-the-token\n");
    annPort = (await stack.ann({ AUTH_TOKENS_FILE: tokensFile })).port;
    c = clients(stack, 0, annPort, { tokenFile });
    await createCollection(c.ann, "secure");
  });

  after(() => stack.stop());

  it("the ANN refuses a caller without a token", async () => {
    const bare = clients(stack, 0, annPort);
    await assert.rejects(unary(bare.ann.stats.bind(bare.ann), { collection: "secure" }), (err: { code: number }) => {
      assert.equal(err.code, status.UNAUTHENTICATED);
      return true;
    });
  });

  it("with an accepted AUTH_TOKEN_FILE the worker's documents land", async () => {
    const indexer = await stack.indexer(annPort, { AUTH_TOKEN_FILE: tokenFile }, good);
    const ic = clients(stack, indexer.port, annPort, { tokenFile });
    assert.ok(indexer.worker, "the in-process worker runs");
    const sub = await submit(ic.indexer, "secure", docs);
    const st = await waitJob(ic.indexer, sub.jobId, 60_000);
    assert.equal(st.state, JobState.JOB_STATE_COMPLETED, st.error);
    assert.equal(st.docsDone, docs.length);
    const stats = await unary(ic.ann.stats.bind(ic.ann), { collection: "secure" });
    assert.equal(stats.info?.count, docs.length);
  });

  it("with a wrong token the job fails with UNAUTHENTICATED in JobStatus", async () => {
    const vars = { JOB_ATTEMPTS: "2", BACKOFF_MS: "100", AUTH_TOKEN_FILE: tokenFile };
    // The API holds the accepted token (its door checks pass); only the worker's is wrong.
    const indexer = await stack.indexer(annPort, { ...vars, RUN_WORKER: "false" }, wrong);
    const ic = clients(stack, indexer.port, annPort, { tokenFile });
    const worker = await startWorker(stack.indexerConfig(annPort, { ...vars, AUTH_TOKEN_FILE: wrongFile }, wrong), {
      meter: globalMeter("indexer-security-test"),
    });
    stack.defer(() => worker.stop());
    const more = docs.map((d) => ({ ...d, id: `w-${d.id}` }));
    const sub = await submit(ic.indexer, "secure", more);
    const st = await waitJob(ic.indexer, sub.jobId, 60_000);
    assert.equal(st.state, JobState.JOB_STATE_FAILED);
    assert.match(st.error, /UNAUTHENTICATED/);
    assert.match(st.error, /invalid bearer token/);
    assert.equal(st.docsDone, 0);
    const stats = await unary(ic.ann.stats.bind(ic.ann), { collection: "secure" });
    assert.equal(stats.info?.count, docs.length, "nothing of the refused job was written");
  });
});
