import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { JobState } from "@tandem/proto";
import { unary } from "@tandem/service-kit";
import { freePort } from "../../../test/support/net.js";
import { type Served, TestStack } from "../../../test/support/stack.js";
import { type Clients, clients, createCollection, submit, testQueue, waitJob } from "./support/harness.js";

describe("transient failures are retried with exponential backoff", () => {
  const stack = new TestStack("indexer-retry");
  let annPort = 0;
  let ann: Served;
  let c: Clients;
  const vars = { JOB_ATTEMPTS: "10", BACKOFF_MS: "200", ANN_TIMEOUT_MS: "2000" };

  before(async () => {
    annPort = await freePort();
    ann = await stack.ann({}, { port: annPort });
    const indexer = await stack.indexer(annPort, vars);
    c = clients(stack, indexer.port, annPort);
    await createCollection(c.ann, "flaky");
  });

  after(() => stack.stop());

  it("the ANN service goes away and comes back: the job retries and completes", async (t) => {
    await unary(c.indexer.pauseQueue.bind(c.indexer), {});
    const docs = Array.from({ length: 12 }, (_, i) => ({ id: `f${i}`, text: `document number ${i}`, payloadJson: "" }));
    const sub = await submit(c.indexer, "flaky", docs);
    await ann.stop();
    await unary(c.indexer.resumeQueue.bind(c.indexer), {});
    const queue = testQueue(stack.prefix);
    try {
      // Wait until at least two attempts failed against the missing service, then bring it back.
      const deadline = Date.now() + 30_000;
      for (;;) {
        const job = await queue.getJob(`${sub.jobId}-0`);
        if ((job?.attemptsMade ?? 0) >= 2) break;
        assert.ok(Date.now() < deadline, "the job was not retried");
        await new Promise((r) => setTimeout(r, 100));
      }
      await stack.ann({}, { port: annPort });
      const st = await waitJob(c.indexer, sub.jobId, 60_000);
      assert.equal(st.state, JobState.JOB_STATE_COMPLETED, st.error);
      assert.equal(st.docsDone, 12);
      const job = await queue.getJob(`${sub.jobId}-0`);
      t.diagnostic(`completed; attempts made: ${job?.attemptsMade}`);
      assert.ok((job?.attemptsMade ?? 0) >= 2);
      const stats = await unary(c.ann.stats.bind(c.ann), { collection: "flaky" });
      assert.equal(stats.info?.count, 12);
    } finally {
      await queue.close();
    }
  });
});
