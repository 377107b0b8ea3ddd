import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { type ClientRequest, request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { truncateNormalize } from "@tandem/model-runtime";
import {
  decodeVector,
  type EncodeRequest,
  type EncodeResponse,
  type QueryEncoderClient,
  TextKind,
} from "@tandem/proto";
import { bearerMetadata, unary } from "@tandem/service-kit";
import OpenAI from "openai";
import { cosine } from "../../../test/support/bare.js";
import { makeTestPki, type TestPki } from "../../../test/support/certs.js";
import { loadQueries } from "../../../test/support/datasets.js";
import { encoderClient } from "../../../test/support/grpc.js";
import { freePort } from "../../../test/support/net.js";
import { bundleDir } from "../../../test/support/paths.js";
import { encoderConfig, type RunningEncoder, startQueryEncoder } from "../src/index.js";

/** POST /v1/embeddings through the official `openai` client, against the real service and bundle. */
const SOURCE = bundleDir("all-minilm-l6-v2");
const TOKEN = "openai-endpoint-test-token";

let tmp: string;
let tokensFile: string;
before(() => {
  tmp = mkdtempSync(join(tmpdir(), "tandem-openai-"));
  tokensFile = join(tmp, "tokens");
  writeFileSync(tokensFile, `bench ${TOKEN}\n`);
});
after(() => rmSync(tmp, { recursive: true, force: true }));

async function start(vars: Record<string, string> = {}): Promise<RunningEncoder> {
  return startQueryEncoder(
    encoderConfig({
      MODEL_DIR: SOURCE,
      PORT: "0",
      HTTP_PORT: String(await freePort()),
      LOG_LEVEL: "silent",
      INTRA_OP_THREADS: "1",
      ...vars,
    }),
  );
}

/** No retries: each test sees the first answer, 429 included. */
const openai = (svc: RunningEncoder, apiKey = TOKEN) =>
  new OpenAI({ baseURL: `http://127.0.0.1:${svc.httpPort}/v1`, apiKey, maxRetries: 0 });

/** The error a call must end in, as the SDK raises it. */
async function apiError(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof OpenAI.APIError, `an OpenAI.APIError, got ${String(err)}`);
    return err;
  }
  throw new Error("expected the call to fail, it succeeded");
}

type ErrorBody = { error: Record<string, unknown> };

/** A request the SDK would never send (malformed JSON, wrong types), straight over HTTP. */
async function post(svc: RunningEncoder, body: string | Buffer, path = "/v1/embeddings", method = "POST") {
  const res = await fetch(`http://127.0.0.1:${svc.httpPort}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: method === "GET" ? undefined : body,
  });
  return { status: res.status, headers: res.headers, json: (await res.json()) as ErrorBody };
}

const grpcEncode = (c: QueryEncoderClient, texts: string[], kind = TextKind.TEXT_KIND_QUERY) =>
  unary<EncodeRequest, EncodeResponse>(
    c.encode.bind(c),
    { texts, kind },
    { timeoutMs: 20_000, metadata: bearerMetadata(TOKEN) },
  ).then((res) =>
    res.embeddings.map((e) => {
      const v = decodeVector(e.vector, res.dims);
      assert.ok(typeof v !== "string", String(v));
      return v;
    }),
  );

/** The status and body a hand-made request is answered with. */
function answer(req: ClientRequest): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}

const f32 = (v: number[] | string) => {
  assert.ok(Array.isArray(v), "a float array");
  return Float32Array.from(v);
};
const norm = (v: Float32Array) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

describe("POST /v1/embeddings through the openai client", () => {
  let svc: RunningEncoder;
  let grpc: QueryEncoderClient;
  let client: OpenAI;
  before(async () => {
    svc = await start({ AUTH_TOKENS_FILE: tokensFile, CACHE_ENTRIES: "0", MAX_HTTP_BODY_BYTES: "65536" });
    grpc = encoderClient(svc.port);
    client = openai(svc);
  });
  after(async () => {
    grpc.close();
    await svc.stop();
  });

  it("embeds one string in OpenAI's response shape, with the model's token count", async () => {
    const text = "does exercise lower blood pressure";
    const res = await client.embeddings.create({ model: "all-minilm-l6-v2", input: text, encoding_format: "float" });
    assert.equal(res.object, "list");
    assert.equal(res.model, "all-minilm-l6-v2");
    assert.equal(res.data.length, 1);
    assert.equal(res.data[0]!.object, "embedding");
    assert.equal(res.data[0]!.index, 0);
    const v = f32(res.data[0]!.embedding);
    assert.equal(v.length, 384);
    assert.ok(Math.abs(norm(v) - 1) < 1e-5, `unit norm, got ${norm(v)}`);
    const tokens = svc.model.tokenize(text, "query").ids.length;
    assert.deepEqual(res.usage, { prompt_tokens: tokens, total_tokens: tokens });
  });

  it("returns the gRPC Encode vectors for a batch, in order (cosine >= 0.9999)", async () => {
    const texts = loadQueries("scifact", 12).map((q) => q.text);
    // No encoding_format: the SDK asks for base64 and decodes it itself, the path most callers take.
    const res = await client.embeddings.create({ model: "all-minilm-l6-v2", input: texts });
    const expected = await grpcEncode(grpc, texts);
    assert.deepEqual(
      res.data.map((d) => d.index),
      texts.map((_, i) => i),
    );
    res.data.forEach((d, i) => {
      const c = cosine(f32(d.embedding), expected[i]!);
      assert.ok(c >= 0.9999, `text ${i}: cosine ${c}`);
    });
    const tokens = texts.reduce((n, t) => n + svc.model.tokenize(t, "query").ids.length, 0);
    assert.equal(res.usage.prompt_tokens, tokens);
  });

  it("sends base64 of little-endian float32 when asked, the same vector as float", async () => {
    const text = "symptoms of iron deficiency";
    const [b64, float] = await Promise.all([
      client.embeddings.create({ model: "all-minilm-l6-v2", input: [text], encoding_format: "base64" }),
      client.embeddings.create({ model: "all-minilm-l6-v2", input: [text], encoding_format: "float" }),
    ]);
    const raw = b64.data[0]!.embedding;
    assert.equal(typeof raw, "string");
    const bytes = Buffer.from(raw as unknown as string, "base64");
    assert.equal(bytes.length, 384 * 4);
    const v = new Float32Array(384).map((_, i) => bytes.readFloatLE(i * 4));
    assert.ok(cosine(v, f32(float.data[0]!.embedding)) >= 0.9999);
  });

  it("accepts the model id too, lists the model, and answers 404 model_not_found to any other", async () => {
    const res = await client.embeddings.create({ model: "sentence-transformers/all-MiniLM-L6-v2", input: "x ray" });
    assert.equal(res.model, "all-minilm-l6-v2");
    const models = await client.models.list();
    assert.deepEqual(
      models.data.map((m) => m.id),
      ["all-minilm-l6-v2"],
    );
    const err = await apiError(client.embeddings.create({ model: "text-embedding-3-small", input: "x" }));
    assert.ok(err instanceof OpenAI.NotFoundError);
    assert.equal(err.code, "model_not_found");
    assert.equal(err.param, "model");
    assert.match(err.message, /'text-embedding-3-small' is not served here; this encoder serves 'all-minilm-l6-v2'/);
  });

  it("serves dimensions equal to the full width and refuses any other: the bundle declares no Matryoshka sizes", async () => {
    const full = await client.embeddings.create({ model: "all-minilm-l6-v2", input: "x", dimensions: 384 });
    assert.equal(full.data[0]!.embedding.length, 384);
    const err = await apiError(client.embeddings.create({ model: "all-minilm-l6-v2", input: "x", dimensions: 128 }));
    assert.ok(err instanceof OpenAI.BadRequestError);
    assert.equal(err.param, "dimensions");
    assert.match(err.message, /cannot serve 128 dims: it declares no Matryoshka sizes, only its full width 384/);
  });

  it("answers 401 to a wrong or missing token, and keeps /health open", async () => {
    const err = await apiError(openai(svc, "wrong-token").embeddings.create({ model: "all-minilm-l6-v2", input: "x" }));
    assert.ok(err instanceof OpenAI.AuthenticationError);
    assert.equal(err.code, "invalid_api_key");
    assert.match(err.message, /invalid bearer token/);
    assert.ok(!err.message.includes("wrong-token"), "the refusal does not echo the token");
    const bare = await fetch(`http://127.0.0.1:${svc.httpPort}/v1/embeddings`, { method: "POST", body: "{}" });
    assert.equal(bare.status, 401);
    assert.equal(bare.headers.get("www-authenticate"), "Bearer");
    const health = await fetch(`http://127.0.0.1:${svc.httpPort}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: "SERVING" });
  });

  it("answers 413 past MAX_TEXTS_PER_REQUEST, MAX_TEXT_BYTES and MAX_HTTP_BODY_BYTES", async () => {
    const cases: Array<[string | string[], RegExp]> = [
      [Array(65).fill("q"), /65 texts in one request; the limit is 64 \(MAX_TEXTS_PER_REQUEST\)/],
      [["ok", "x".repeat(8193)], /input\[1\] is 8193 bytes; the limit is 8192 bytes \(MAX_TEXT_BYTES\)/],
      [Array(10).fill("y".repeat(8000)), /larger than 65536 bytes \(MAX_HTTP_BODY_BYTES\)/],
    ];
    for (const [input, message] of cases) {
      const err = await apiError(client.embeddings.create({ model: "all-minilm-l6-v2", input }));
      assert.equal(err.status, 413, err.message);
      assert.equal(err.code, "request_too_large");
      assert.match(err.message, message);
    }
    // Without a Content-Length (chunked), the limit holds while the body is read.
    const chunked = httpRequest({
      host: "127.0.0.1",
      port: svc.httpPort,
      method: "POST",
      path: "/v1/embeddings",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    const answered = answer(chunked);
    for (let i = 0; i < 20; i++) chunked.write(`"${"z".repeat(8190)}",`);
    chunked.end();
    const res = await answered;
    assert.equal(res.status, 413);
    assert.match(res.body, /MAX_HTTP_BODY_BYTES/);
  });

  it("answers 400 in OpenAI's error shape to malformed JSON and every wrong field, and keeps serving", async () => {
    const cases: Array<[string | Buffer, string | null, RegExp]> = [
      ['{"model": "all-minilm-l6-v2", "input": ', null, /not valid JSON/],
      ["", null, /not valid JSON/],
      [Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), null, /not valid UTF-8/],
      ["[1, 2]", null, /must be a JSON object/],
      ['{"input": "x"}', "model", /model is required/],
      ['{"model": "all-minilm-l6-v2"}', "input", /input must be a string or an array of strings/],
      ['{"model": "all-minilm-l6-v2", "input": 5}', "input", /input must be a string or an array of strings/],
      ['{"model": "all-minilm-l6-v2", "input": [[101, 2054]]}', "input", /token ids; this server embeds text only/],
      ['{"model": "all-minilm-l6-v2", "input": [101, 2054]}', "input", /token ids/],
      ['{"model": "all-minilm-l6-v2", "input": ""}', "input", /input\[0\] is empty or only whitespace/],
      ['{"model": "all-minilm-l6-v2", "input": []}', "input", /input is empty: send at least one text/],
      ['{"model": "all-minilm-l6-v2", "input": "x", "encoding_format": "hex"}', "encoding_format", /'float' or/],
      ['{"model": "all-minilm-l6-v2", "input": "x", "dimensions": "64"}', "dimensions", /positive integer/],
      ['{"model": "all-minilm-l6-v2", "input": "x", "dimensions": -1}', "dimensions", /positive integer/],
      ['{"model": "all-minilm-l6-v2", "input": "x", "input_type": "passage"}', "input_type", /'query' or 'document'/],
    ];
    for (const [body, param, message] of cases) {
      const res = await post(svc, body);
      const what = String(body).slice(0, 60);
      assert.equal(res.status, 400, what);
      assert.deepEqual(Object.keys(res.json.error).sort(), ["code", "message", "param", "type"], what);
      assert.equal(res.json.error.type, "invalid_request_error", what);
      assert.equal(res.json.error.param, param, what);
      assert.match(String(res.json.error.message), message, what);
    }
    const nulls = await post(
      svc,
      '{"model": "all-minilm-l6-v2", "input": "x", "encoding_format": null, "dimensions": null, "user": "u1"}',
    );
    assert.equal(nulls.status, 200, "null optional fields are taken as absent");
    const res = await client.embeddings.create({ model: "all-minilm-l6-v2", input: "still serving" });
    assert.equal(res.data.length, 1);
  });

  it("answers 404 to an unknown path and 405 to a wrong method", async () => {
    const missing = await post(svc, "{}", "/v1/embedding");
    assert.equal(missing.status, 404);
    assert.match(String(missing.json.error.message), /Invalid URL \(POST \/v1\/embedding\)/);
    assert.equal((await post(svc, "{}", "//")).status, 404, "a target URL() would refuse");
    const wrong = await post(svc, "", "/v1/embeddings", "GET");
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get("allow"), "POST");
  });

  it("keeps serving after clients that go away mid-body and mid-inference", async () => {
    const half = lateRequest(svc.httpPort, '{"model": "all-minilm-l6-v2", "input": "never finished"}', {
      authorization: `Bearer ${TOKEN}`,
    });
    half.response.catch(() => {});
    await half.headersSent;
    half.abort();
    const gone = new AbortController();
    const input = loadQueries("scifact", 64).map((q) => q.text);
    const call = client.embeddings.create({ model: "all-minilm-l6-v2", input }, { signal: gone.signal });
    setTimeout(() => gone.abort(), 20);
    assert.ok((await apiError(call)) instanceof OpenAI.APIUserAbortError);
    const res = await client.embeddings.create({ model: "all-minilm-l6-v2", input: "still serving" });
    assert.equal(res.data.length, 1);
  });
});

describe("/v1/embeddings on a bundle with prefixes and a Matryoshka size", () => {
  let svc: RunningEncoder;
  let grpc: QueryEncoderClient;
  let client: OpenAI;
  const dir = join(tmp, "minilm-prefixed");
  before(async () => {
    // The real graph linked, its manifest given e5-style prefixes and a declared 128-dim prefix size.
    cpSync(SOURCE, dir, { recursive: true, filter: (src) => !src.endsWith("model.onnx") });
    symlinkSync(join(SOURCE, "model.onnx"), join(dir, "model.onnx"));
    const manifest = JSON.parse(readFileSync(join(SOURCE, "manifest.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(
      join(dir, "manifest.json"),
      JSON.stringify({
        ...manifest,
        name: "minilm-prefixed",
        query_prefix: "query: ",
        document_prefix: "passage: ",
        matryoshka_dims: [128],
      }),
    );
    svc = await start({ MODEL_DIR: dir });
    grpc = encoderClient(svc.port);
    client = openai(svc, "no tokens configured: any key goes");
  });
  after(async () => {
    grpc.close();
    await svc.stop();
  });

  it("selects the prefix with input_type (query by default), as gRPC's kind does", async () => {
    const texts = ["vitamin d and bone density", "statins lower cholesterol"];
    // input_type is a Tandem extension the SDK's types do not know; the SDK sends the body as given.
    const embed = (input_type?: "query" | "document") => {
      const params: OpenAI.EmbeddingCreateParams & { input_type?: string } = {
        model: "minilm-prefixed",
        input: texts,
        encoding_format: "float",
        input_type,
      };
      return client.embeddings.create(params);
    };
    const [plain, query, document] = await Promise.all([embed(), embed("query"), embed("document")]);
    const [grpcQuery, grpcDocument] = await Promise.all([
      grpcEncode(grpc, texts, TextKind.TEXT_KIND_QUERY),
      grpcEncode(grpc, texts, TextKind.TEXT_KIND_DOCUMENT),
    ]);
    texts.forEach((_, i) => {
      const [p, q, d] = [plain, query, document].map((r) => f32(r.data[i]!.embedding));
      assert.ok(cosine(p!, q!) >= 0.9999, "query is the default");
      assert.ok(cosine(q!, grpcQuery[i]!) >= 0.9999, "query = gRPC TEXT_KIND_QUERY");
      assert.ok(cosine(d!, grpcDocument[i]!) >= 0.9999, "document = gRPC TEXT_KIND_DOCUMENT");
      assert.ok(cosine(q!, d!) < 0.999, `the prefixes change the vector (cosine ${cosine(q!, d!)})`);
    });
    const tokens = texts.reduce((n, t) => n + svc.model.tokenize(t, "document").ids.length, 0);
    assert.equal(document.usage.prompt_tokens, tokens, "usage counts the prefix's tokens");
  });

  it("serves a declared Matryoshka size truncated and re-normalised, and refuses an undeclared one", async () => {
    const input = "how do vaccines train the immune system";
    const [full, cut] = await Promise.all([
      client.embeddings.create({ model: "minilm-prefixed", input, encoding_format: "float" }),
      client.embeddings.create({ model: "minilm-prefixed", input, encoding_format: "float", dimensions: 128 }),
    ]);
    const v = f32(cut.data[0]!.embedding);
    assert.equal(v.length, 128);
    assert.ok(Math.abs(norm(v) - 1) < 1e-5, `re-normalised, norm ${norm(v)}`);
    assert.ok(cosine(v, truncateNormalize(f32(full.data[0]!.embedding), 128)) >= 0.9999);
    const err = await apiError(client.embeddings.create({ model: "minilm-prefixed", input, dimensions: 100 }));
    assert.equal(err.status, 400);
    assert.match(err.message, /cannot serve 100 dims: it serves 384, 128/);
  });

  it("MODEL_DIMS serves the declared size on both APIs, in the space named for it, and never widens", async () => {
    const cut = await start({ MODEL_DIR: dir, MODEL_DIMS: "128" });
    const cutGrpc = encoderClient(cut.port);
    try {
      assert.deepEqual([cut.model.info.space, cut.model.info.dims], ["all-minilm-l6-v2/128", 128]);
      const text = "matryoshka sizes are spaces of their own";
      const [[full], [narrow]] = await Promise.all([
        grpcEncode(grpc, [text], TextKind.TEXT_KIND_QUERY),
        grpcEncode(cutGrpc, [text], TextKind.TEXT_KIND_QUERY),
      ]);
      assert.equal(narrow!.length, 128);
      assert.ok(cosine(narrow!, truncateNormalize(full!, 128)) >= 0.9999);
      const wide = openai(cut, "any key");
      const err = await apiError(wide.embeddings.create({ model: "minilm-prefixed", input: text, dimensions: 384 }));
      assert.equal(err.status, 400);
      assert.match(err.message, /served at 128 dims \(MODEL_DIMS\); dimensions must be at most that/);
      await assert.rejects(start({ MODEL_DIR: dir, MODEL_DIMS: "100" }), /cannot serve 100 dims: it serves 384, 128/);
    } finally {
      cutGrpc.close();
      await cut.stop();
    }
  });
});

describe("/v1/embeddings over mTLS, with tokens", () => {
  let pki: TestPki;
  let svc: RunningEncoder;
  before(async () => {
    pki = makeTestPki();
    svc = await start({
      TLS_CERT_FILE: pki.cert,
      TLS_KEY_FILE: pki.key,
      TLS_CLIENT_CA_FILE: pki.caCert,
      AUTH_TOKENS_FILE: tokensFile,
    });
  });
  after(async () => {
    await svc.stop();
    pki.cleanup();
  });

  /** HTTPS to the service's name in the test certificate, with or without a client certificate and token. */
  const call = (opts: { clientCert: boolean; token?: string }) => {
    const req = httpsRequest({
      host: "localhost",
      port: svc.httpPort,
      method: "POST",
      path: "/v1/embeddings",
      ca: readFileSync(pki.caCert),
      ...(opts.clientCert ? { cert: readFileSync(pki.cert), key: readFileSync(pki.key) } : {}),
      headers: { "content-type": "application/json", ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}) },
    });
    const answered = answer(req);
    req.end(JSON.stringify({ model: "all-minilm-l6-v2", input: "tls round trip", encoding_format: "float" }));
    return answered;
  };

  it("speaks HTTPS with the gRPC port's certificate, client CA and tokens", async () => {
    const ok = await call({ clientCert: true, token: TOKEN });
    assert.equal(ok.status, 200, ok.body);
    assert.equal((JSON.parse(ok.body) as { data: Array<{ embedding: number[] }> }).data[0]!.embedding.length, 384);
    assert.equal((await call({ clientCert: true })).status, 401);
    await assert.rejects(call({ clientCert: false, token: TOKEN }), "a caller without a client certificate is refused");
    await assert.rejects(fetch(`http://127.0.0.1:${svc.httpPort}/health`), "no plaintext beside TLS");
  });
});

describe("/v1/embeddings limits and lifecycle", () => {
  it("answers 429 with Retry-After past MAX_QUEUED_REQUESTS, the queue gRPC shares, and serves the rest", async () => {
    const svc = await start({ MAX_QUEUED_REQUESTS: "2", MAX_BATCH_REQUESTS: "1", CACHE_ENTRIES: "0" });
    const client = openai(svc);
    try {
      const input = loadQueries("scifact", 32).map((q) => q.text);
      const outcomes = await Promise.all(
        Array.from({ length: 12 }, () =>
          client.embeddings.create({ model: "all-minilm-l6-v2", input }).then(
            () => "ok" as const,
            (e: unknown) => e,
          ),
        ),
      );
      const refused = outcomes.filter((o) => o !== "ok");
      assert.ok(refused.length > 0, "some requests are refused");
      assert.ok(outcomes.includes("ok"), "the admitted requests are served");
      for (const e of refused) {
        assert.ok(e instanceof OpenAI.RateLimitError, String(e));
        assert.equal(e.code, "rate_limit_exceeded");
        assert.equal(e.headers.get("retry-after"), "1");
        assert.match(e.message, /encoder queue is full .*MAX_QUEUED_REQUESTS=2/);
      }
    } finally {
      await svc.stop();
    }
  });

  it("reports /health 200 only once warmed up; on stop finishes requests in flight, refuses new ones with 503", async () => {
    const httpPort = await freePort();
    const health = () =>
      fetch(`http://127.0.0.1:${httpPort}/health`).then(
        (r) => r.status,
        () => 0,
      );
    const seen: number[] = [];
    let started = false;
    const starting = start({ HTTP_PORT: String(httpPort), CACHE_ENTRIES: "0", SHUTDOWN_GRACE_MS: "30000" }).then(
      (s) => {
        started = true;
        return s;
      },
    );
    while (!started) {
      const status = await health();
      if (!started) seen.push(status);
      await new Promise((r) => setTimeout(r, 5));
    }
    const svc = await starting;
    assert.ok(!seen.includes(200), `no 200 before warm-up finished: ${[...new Set(seen)]}`);
    assert.equal(await health(), 200);

    // One request in flight, one whose body is still arriving when shutdown begins, and a connection
    // that never sent a request (clients keep spares): it must not hold the shutdown for its grace period.
    const spare = connect(httpPort, "127.0.0.1");
    const spareClosed = new Promise((r) => spare.once("close", r));
    const inFlight = openai(svc).embeddings.create({
      model: "all-minilm-l6-v2",
      input: loadQueries("scifact", 64).map((q) => q.text),
    });
    const late = lateRequest(httpPort, '{"model": "all-minilm-l6-v2", "input": "too late"}');
    await late.headersSent;
    await new Promise((r) => setTimeout(r, 50));
    const stopStarted = performance.now();
    const stopping = svc.stop();
    late.finish();
    const [served, refused] = await Promise.all([inFlight, late.response]);
    await Promise.all([stopping, spareClosed]);
    const stopMs = performance.now() - stopStarted;
    assert.ok(stopMs < 15_000, `stopped without waiting out the 30 s grace (${Math.round(stopMs)} ms)`);
    assert.equal(served.data.length, 64, "the request in flight was served");
    assert.equal(refused.status, 503);
    assert.equal(refused.json.error.code, "service_unavailable");
    assert.equal(await health(), 0, "nothing listens after stop");
  });
});

/** A POST whose headers go now and whose body goes on `finish()` (or never: `abort()`), on a connection of its own. */
function lateRequest(port: number, body: string, headers: Record<string, string> = {}) {
  let sent!: () => void;
  const headersSent = new Promise<void>((r) => {
    sent = r;
  });
  const req = httpRequest({
    agent: false, // a fresh socket, so "connect" fires
    port,
    host: "127.0.0.1",
    method: "POST",
    path: "/v1/embeddings",
    headers: { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(body) },
  });
  req.flushHeaders();
  req.on("socket", (s) => s.on("connect", sent));
  const response = answer(req).then((a) => ({ status: a.status, json: JSON.parse(a.body) as ErrorBody }));
  return { headersSent, finish: () => req.end(body), abort: () => req.destroy(), response };
}
