import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { context, SpanKind, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import {
  AnnClient,
  type Document,
  IndexerClient,
  JobState,
  type JobStatusResponse,
  Metric,
  type SubmitResponse,
} from "@tandem/proto";
import { clientTransport, startTracing, unary } from "@tandem/service-kit";
import { TestStack } from "../support/stack.js";

/**
 * One trace across the queue: Indexer.Submit (gRPC) -> a BullMQ job in the real Redis -> the real
 * worker embeds with a real teacher -> Ann.Upsert (gRPC) on the real ANN service. The only links
 * are `traceparent` in gRPC metadata and the carrier the producer stores in each job's data.
 */
const SPACE = "all-minilm-l6-v2/384";
const exporter = new InMemorySpanExporter();

const stack = new TestStack("trace");
let annClient: AnnClient;
let indexerClient: IndexerClient;

before(async () => {
  const tracing = await startTracing("indexer-trace-test", {
    processors: [new SimpleSpanProcessor(exporter)],
    env: {},
  });
  stack.defer(() => tracing.shutdown());
  const ann = await stack.ann({ LOG_LEVEL: "silent" });
  const indexer = await stack.indexer(ann.port, { LOG_LEVEL: "silent", INTRA_OP_THREADS: "1" });
  // Clients with the tracing interceptor: the Submit CLIENT span is part of the trace under test.
  const t = clientTransport(16 << 20);
  annClient = new AnnClient(ann.addr, t.credentials, t.options);
  indexerClient = new IndexerClient(`127.0.0.1:${indexer.port}`, t.credentials, clientTransport(16 << 20).options);
  stack.defer(() => {
    indexerClient.close();
    annClient.close();
  });
  await unary(annClient.createCollection.bind(annClient), {
    name: "traced",
    space: SPACE,
    dims: 384,
    metric: Metric.METRIC_COSINE,
    index: undefined,
  });
});

after(() => stack.stop());

function submit(collection: string, documents: Document[]): Promise<SubmitResponse> {
  return new Promise((resolve, reject) => {
    const call = indexerClient.submit((err, res) => (err ? reject(err) : resolve(res)));
    call.write({ collection, documents });
    call.end();
  });
}

async function waitDone(jobId: string): Promise<JobStatusResponse> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const s = await unary(indexerClient.jobStatus.bind(indexerClient), { jobId });
    if (s.state === JobState.JOB_STATE_COMPLETED || s.state === JobState.JOB_STATE_FAILED) return s;
    assert.ok(Date.now() < deadline, `job ${jobId} still ${JobState[s.state]}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

describe("tracing through the indexing queue", () => {
  it("Submit -> BullMQ job -> worker -> Ann.Upsert: one trace id, parent links across the queue", async () => {
    exporter.reset();
    const root = trace.getTracer("test").startSpan("user-request");
    const docs = Array.from({ length: 6 }, (_, i) => ({
      id: `t${i}`,
      text: `vitamin d and bone density, note ${i}`,
      payloadJson: "",
    }));
    const sub = await context.with(trace.setSpan(context.active(), root), () => submit("traced", docs));
    root.end();
    // Polled outside the root span: JobStatus calls are not part of the trace under test.
    const st = await waitDone(sub.jobId);
    assert.equal(st.state, JobState.JOB_STATE_COMPLETED, st.error);
    assert.equal(st.docsDone, docs.length);

    const traceId = root.spanContext().traceId;
    const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    const names = () => spans.map((s) => `${s.name}/${SpanKind[s.kind]}`).join(", ");
    const all = (name: string, kind: SpanKind) => spans.filter((s) => s.name === name && s.kind === kind);
    const one = (name: string, kind: SpanKind) => {
      const found = all(name, kind);
      assert.equal(found.length, 1, `one ${SpanKind[kind]} span ${name} in the trace; got ${names()}`);
      return found[0] as ReadableSpan;
    };

    const submitClient = one("tandem.v1.Indexer/Submit", SpanKind.CLIENT);
    const submitServer = one("tandem.v1.Indexer/Submit", SpanKind.SERVER);
    const job = one("doc-index job", SpanKind.CONSUMER);
    const upsertClients = all("tandem.v1.Ann/Upsert", SpanKind.CLIENT);
    const upsertServers = all("tandem.v1.Ann/Upsert", SpanKind.SERVER);
    assert.ok(upsertClients.length >= 1, `Ann.Upsert client spans in the trace; got ${names()}`);
    assert.equal(upsertServers.length, upsertClients.length, "one server span per Upsert call");

    assert.equal(parentOf(submitClient), root.spanContext().spanId);
    assert.equal(parentOf(submitServer), submitClient.spanContext().spanId);
    assert.equal(parentOf(job), submitServer.spanContext().spanId, "the job is a child of the Submit server span");
    assert.equal(job.attributes["job.id"], `${sub.jobId}-0`);
    for (const c of upsertClients) {
      assert.equal(parentOf(c), job.spanContext().spanId, "Ann.Upsert is called inside the job span");
      const server = upsertServers.find((s) => parentOf(s) === c.spanContext().spanId);
      assert.ok(server, "each Upsert client span has its server span as a child");
      assert.equal(server.attributes["rpc.grpc.status_code"], 0);
    }
    // The worker's other ANN calls (resolving the collection) are in the job's trace too.
    assert.ok(all("tandem.v1.Ann/Stats", SpanKind.CLIENT).some((s) => parentOf(s) === job.spanContext().spanId));
  });
});
