import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { context, SpanKind, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { annConfig, type RunningAnn, startAnn } from "@tandem/ann";
import { dropNamespace, indexerConfig, type RunningIndexer, startIndexer } from "@tandem/doc-indexer";
import {
  AnnClient,
  type Document,
  IndexerClient,
  JobState,
  type JobStatusResponse,
  Metric,
  type SubmitResponse,
} from "@tandem/proto";
import { clientTransport, startTracing, type Tracing, unary } from "@tandem/service-kit";
import { Redis } from "ioredis";
import { bundleDir } from "../support/paths.js";

/**
 * One trace across the queue: Indexer.Submit (gRPC) -> a BullMQ job in the real Redis -> the real
 * worker embeds with a real teacher -> Ann.Upsert (gRPC) on the real ANN service. The only links
 * are `traceparent` in gRPC metadata and the carrier the producer stores in each job's data.
 */
const BUNDLE = bundleDir("all-minilm-l6-v2");
const SPACE = "all-minilm-l6-v2/384";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const PREFIX = `t-trace-${process.pid}-${Date.now().toString(36)}`;
const exporter = new InMemorySpanExporter();

let tracing: Tracing;
let ann: RunningAnn;
let indexer: RunningIndexer;
let dataDir: string;
let annClient: AnnClient;
let indexerClient: IndexerClient;

before(async () => {
  tracing = await startTracing("indexer-trace-test", { processors: [new SimpleSpanProcessor(exporter)], env: {} });
  dataDir = mkdtempSync(join(tmpdir(), "tandem-indexer-trace-"));
  ann = await startAnn(annConfig({ PORT: "0", HOST: "127.0.0.1", DATA_DIR: dataDir, LOG_LEVEL: "silent" }));
  indexer = await startIndexer(
    indexerConfig({
      PORT: "0",
      HOST: "127.0.0.1",
      LOG_LEVEL: "silent",
      REDIS_URL,
      QUEUE_PREFIX: PREFIX,
      ANN_ADDR: `127.0.0.1:${ann.port}`,
      TEACHER_BUNDLE_DIR: BUNDLE,
      PROVIDERS: "cpu",
      INTRA_OP_THREADS: "1",
      SHUTDOWN_GRACE_MS: "2000",
    }),
  );
  const t = clientTransport(16 << 20);
  annClient = new AnnClient(`127.0.0.1:${ann.port}`, t.credentials, t.options);
  indexerClient = new IndexerClient(`127.0.0.1:${indexer.port}`, t.credentials, clientTransport(16 << 20).options);
  await unary(annClient.createCollection.bind(annClient), {
    name: "traced",
    space: SPACE,
    dims: 384,
    metric: Metric.METRIC_COSINE,
    index: undefined,
  });
});

after(async () => {
  indexerClient?.close();
  annClient?.close();
  await indexer?.stop();
  await ann?.stop();
  await tracing?.shutdown();
  const redis = new Redis(REDIS_URL);
  await dropNamespace(redis, PREFIX);
  redis.disconnect();
  rmSync(dataDir, { recursive: true, force: true });
});

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
