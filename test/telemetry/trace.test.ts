import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ClientWritableStream } from "@grpc/grpc-js";
import { context, SpanKind, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { annConfig, type RunningAnn, startAnn } from "@tandem/ann";
import {
  AnnClient,
  encodeVector,
  Metric,
  QueryEncoderClient,
  SearchRequest,
  type SearchResponse,
  TextKind,
  type UpsertRequest,
  type UpsertResponse,
} from "@tandem/proto";
import { encoderConfig, type RunningEncoder, startQueryEncoder } from "@tandem/query-encoder";
import { clientTransport, startTracing, type Tracing, traceFields, unary } from "@tandem/service-kit";
import { bundleDir } from "../support/paths.js";

/**
 * One trace across two real services: a client calls Ann.Search{text}; the ANN server calls
 * QueryEncoder.Encode. Both run in this process (as in the other integration tests) but talk
 * over real gRPC on loopback, so the only link between their spans is the `traceparent`
 * metadata the kit's client interceptor writes and its server wrapper reads.
 */
const BUNDLE = bundleDir("all-minilm-l6-v2");
const SPACE = "all-minilm-l6-v2/384";
const exporter = new InMemorySpanExporter();

let tracing: Tracing;
let encoder: RunningEncoder;
let ann: RunningAnn;
let dataDir: string;
let annClient: AnnClient;

before(async () => {
  tracing = await startTracing("trace-test", { processors: [new SimpleSpanProcessor(exporter)], env: {} });
  encoder = await startQueryEncoder(
    encoderConfig({ MODEL_DIR: BUNDLE, PORT: "0", LOG_LEVEL: "silent", INTRA_OP_THREADS: "1" }),
  );
  dataDir = mkdtempSync(join(tmpdir(), "tandem-trace-"));
  ann = await startAnn(
    annConfig({ PORT: "0", DATA_DIR: dataDir, LOG_LEVEL: "silent", ENCODER_ADDR: `127.0.0.1:${encoder.port}` }),
  );
  const t = clientTransport(16 << 20);
  annClient = new AnnClient(`127.0.0.1:${ann.port}`, t.credentials, t.options);

  // A small collection of real document vectors in the encoder's space.
  const docs = ["Vitamin D deficiency lowers bone mineral density.", "The Eiffel Tower is in Paris."];
  const enc = new QueryEncoderClient(`127.0.0.1:${encoder.port}`, t.credentials, clientTransport(16 << 20).options);
  const encoded = await unary(enc.encode.bind(enc), { texts: docs, kind: TextKind.TEXT_KIND_DOCUMENT });
  enc.close();
  await unary(annClient.createCollection.bind(annClient), {
    name: "docs",
    space: SPACE,
    dims: 384,
    metric: Metric.METRIC_COSINE,
    index: undefined,
  });
  await new Promise<UpsertResponse>((resolve, reject) => {
    const stream: ClientWritableStream<UpsertRequest> = annClient.upsert((err, res) =>
      err ? reject(err) : resolve(res),
    );
    stream.write({
      collection: "docs",
      points: docs.map((text, i) => ({
        id: `d${i}`,
        vector: encoded.embeddings[i]?.vector ?? encodeVector(new Float32Array(384)),
        payloadJson: JSON.stringify({ text }),
      })),
    });
    stream.end();
  });
});

after(async () => {
  annClient?.close();
  await ann?.stop();
  await encoder?.stop();
  await tracing?.shutdown();
  rmSync(dataDir, { recursive: true, force: true });
});

const search = (text: string) =>
  unary<SearchRequest, SearchResponse>(
    annClient.search.bind(annClient),
    SearchRequest.fromPartial({ collection: "docs", k: 1, query: { $case: "text", value: text } }),
  );

const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

describe("tracing across services", () => {
  it("Ann.Search{text} -> QueryEncoder.Encode: one trace id, parent links client -> server -> client -> server", async () => {
    exporter.reset();
    const root = trace.getTracer("test").startSpan("user-request");
    let traceId = "";
    await context.with(trace.setSpan(context.active(), root), async () => {
      traceId = traceFields().trace_id ?? "";
      const res = await search("does vitamin d affect bones?");
      assert.equal(res.hits[0]?.id, "d0");
    });
    root.end();
    assert.equal(traceId, root.spanContext().traceId, "log fields carry the active trace id");

    const spans = exporter.getFinishedSpans();
    const one = (name: string, kind: SpanKind) => {
      const found = spans.filter((s) => s.name === name && s.kind === kind);
      assert.equal(found.length, 1, `one ${SpanKind[kind]} span ${name}; got ${spans.map((s) => s.name).join(", ")}`);
      return found[0] as ReadableSpan;
    };
    const annClientSpan = one("tandem.v1.Ann/Search", SpanKind.CLIENT);
    const annServer = one("tandem.v1.Ann/Search", SpanKind.SERVER);
    const encClient = one("tandem.v1.QueryEncoder/Encode", SpanKind.CLIENT);
    const encServer = one("tandem.v1.QueryEncoder/Encode", SpanKind.SERVER);

    for (const s of [annClientSpan, annServer, encClient, encServer]) {
      assert.equal(s.spanContext().traceId, traceId, `${s.name} (${SpanKind[s.kind]}) is in the trace`);
    }
    assert.equal(parentOf(annClientSpan), root.spanContext().spanId);
    assert.equal(parentOf(annServer), annClientSpan.spanContext().spanId);
    assert.equal(parentOf(encClient), annServer.spanContext().spanId);
    assert.equal(parentOf(encServer), encClient.spanContext().spanId);
    assert.equal(annServer.attributes["rpc.grpc.status_code"], 0);
    assert.equal(encServer.attributes["rpc.service"], "tandem.v1.QueryEncoder");
    // The server span covers the whole hop it caused.
    const ms = (t: [number, number]) => t[0] * 1e3 + t[1] / 1e6;
    assert.ok(ms(annServer.startTime) <= ms(encClient.startTime) && ms(encClient.endTime) <= ms(annServer.endTime));
  });

  it("a failed call marks the server span with ERROR and its gRPC status code", async () => {
    exporter.reset();
    await assert.rejects(
      unary(annClient.search.bind(annClient), {
        collection: "missing",
        k: 1,
        query: { $case: "text", value: "x" },
        filter: [],
        ef: 0,
        exact: false,
        withPayload: false,
        payloadFields: [],
        withVectors: false,
      }),
    );
    const server = exporter
      .getFinishedSpans()
      .find((s) => s.name === "tandem.v1.Ann/Search" && s.kind === SpanKind.SERVER);
    assert.ok(server);
    assert.equal(server.status.code, 2, "SpanStatusCode.ERROR");
    assert.equal(server.attributes["rpc.grpc.status_code"], 5, "NOT_FOUND");
  });
});
