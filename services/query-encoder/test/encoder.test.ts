import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Metadata, status } from "@grpc/grpc-js";
import {
  decodeVector,
  type EncodeRequest,
  type EncodeResponse,
  type QueryEncoderClient,
  TextKind,
} from "@tandem/proto";
import { unary } from "@tandem/service-kit";
import { BareEmbedder, cosine } from "../../../test/support/bare.js";
import { loadQueries } from "../../../test/support/datasets.js";
import { checkHealth, encoderClient, expectStatus } from "../../../test/support/grpc.js";
import { freePort } from "../../../test/support/net.js";
import { bundleDir } from "../../../test/support/paths.js";
import { encoderConfig, type RunningEncoder, startQueryEncoder } from "../src/index.js";

const BUNDLE = bundleDir("all-minilm-l6-v2");

function start(vars: Record<string, string> = {}): Promise<RunningEncoder> {
  return startQueryEncoder(
    encoderConfig({ MODEL_DIR: BUNDLE, PORT: "0", LOG_LEVEL: "silent", INTRA_OP_THREADS: "1", ...vars }),
  );
}

const encode = (c: QueryEncoderClient, req: Partial<EncodeRequest>, timeoutMs = 20_000) =>
  unary<EncodeRequest, EncodeResponse>(
    c.encode.bind(c),
    { texts: [], kind: TextKind.TEXT_KIND_QUERY, ...req },
    { timeoutMs },
  );

const vectors = (res: EncodeResponse) =>
  res.embeddings.map((e) => {
    const v = decodeVector(e.vector, res.dims);
    assert.ok(typeof v !== "string", String(v));
    return v;
  });

describe("query-encoder over gRPC", () => {
  let svc: RunningEncoder;
  let client: QueryEncoderClient;
  before(async () => {
    svc = await start({ CACHE_ENTRIES: "0" });
    client = encoderClient(svc.port);
  });
  after(async () => {
    client.close();
    await svc.stop();
  });

  it("returns the same embeddings as a bare onnxruntime call on the same bundle", async () => {
    const queries = loadQueries("scifact", 24).map((q) => q.text);
    const bare = await BareEmbedder.load(BUNDLE, 1);
    const expected = await bare.embed(queries);
    const res = await encode(client, { texts: queries });
    assert.equal(res.space, "all-minilm-l6-v2/384");
    assert.equal(res.dims, 384);
    const got = vectors(res);
    for (const [i, v] of got.entries()) {
      assert.ok(cosine(v, expected[i]!) >= 0.9999, `query ${i}: cosine ${cosine(v, expected[i]!)}`);
      assert.equal(res.embeddings[i]!.tokens, bare.tokenize(queries[i]!).length);
    }
  });

  it("gives every concurrent caller its own vectors, in order", async () => {
    const queries = loadQueries("nfcorpus", 60).map((q) => q.text);
    const reference = vectors(await encode(client, { texts: queries }));
    // 30 concurrent requests of 2 texts each, interleaved so batches mix callers.
    const calls = Array.from({ length: 30 }, (_, i) =>
      encode(client, { texts: [queries[2 * i]!, queries[2 * i + 1]!] }),
    );
    const results = await Promise.all(calls);
    results.forEach((res, i) => {
      const [a, b] = vectors(res);
      assert.ok(cosine(a!, reference[2 * i]!) > 0.9999, `caller ${i} first text`);
      assert.ok(cosine(b!, reference[2 * i + 1]!) > 0.9999, `caller ${i} second text`);
    });
  });

  it("reports truncation to the model's max tokens", async () => {
    const long = "retrieval ".repeat(600);
    const res = await encode(client, { texts: [long, "short query"] });
    assert.equal(res.embeddings[0]!.truncated, true);
    assert.equal(res.embeddings[0]!.tokens, svc.model.info.maxTokens);
    assert.equal(res.embeddings[1]!.truncated, false);
  });

  it("answers INVALID_ARGUMENT with a useful message for every kind of bad input", async () => {
    const cases: Array<[Partial<EncodeRequest>, RegExp]> = [
      [{ texts: [] }, /texts is empty/],
      [{ texts: ["ok", ""] }, /texts\[1\] is empty/],
      [{ texts: ["   \n"] }, /texts\[0\] is empty or only whitespace/],
      [{ texts: Array(65).fill("q") }, /65 texts .* limit is 64 \(MAX_TEXTS_PER_REQUEST\)/],
      [{ texts: ["x".repeat(8193)] }, /texts\[0\] is 8193 bytes; the limit is 8192/],
      [{ texts: ["q"], kind: 7 as TextKind }, /kind 7 is not a known TextKind/],
    ];
    for (const [req, message] of cases) {
      const err = await expectStatus(encode(client, req));
      assert.equal(err.code, status.INVALID_ARGUMENT, `${JSON.stringify(req).slice(0, 60)}: ${err.message}`);
      assert.match(err.details, message);
    }
  });

  it("answers INVALID_ARGUMENT for a text that is not valid UTF-8", async () => {
    // EncodeRequest{texts: [0xff 0xfe 'a']} written by hand: field 1, wire type 2.
    const raw = Buffer.from([0x0a, 0x03, 0xff, 0xfe, 0x61]);
    const err = await expectStatus(
      new Promise((resolve, reject) =>
        client.makeUnaryRequest(
          "/tandem.v1.QueryEncoder/Encode",
          (b: Buffer) => b,
          (b: Buffer) => b,
          raw,
          new Metadata(),
          {},
          (e, r) => (e ? reject(e) : resolve(r)),
        ),
      ),
    );
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.match(err.details, /not valid UTF-8/);
    assert.equal((await encode(client, { texts: ["still serving"] })).embeddings.length, 1);
  });

  it("serves Info with the model card and limits", async () => {
    const info = await unary(client.info.bind(client), {});
    assert.equal(info.model?.space, "all-minilm-l6-v2/384");
    assert.equal(info.model?.dims, 384);
    assert.equal(info.model?.pooling, "mean");
    assert.equal(info.model?.executionProvider, "cpu");
    assert.match(info.model?.bundleSha256 ?? "", /^[0-9a-f]{64}$/);
    assert.equal(info.limits?.maxTextsPerRequest, 64);
  });

  it("answers DEADLINE_EXCEEDED to a call whose deadline passes in the queue, and keeps serving", async () => {
    const texts = loadQueries("scifact", 48).map((q) => q.text);
    const busy = Array.from({ length: 3 }, () => encode(client, { texts }));
    const err = await expectStatus(encode(client, { texts: ["too late"] }, 5));
    assert.equal(err.code, status.DEADLINE_EXCEEDED);
    await Promise.all(busy);
    assert.equal((await encode(client, { texts: ["after"] })).embeddings.length, 1);
  });
});

describe("query-encoder limits and lifecycle", () => {
  it("answers RESOURCE_EXHAUSTED past MAX_QUEUED_REQUESTS and serves the rest", async () => {
    const svc = await start({ MAX_QUEUED_REQUESTS: "2", MAX_BATCH_REQUESTS: "1", CACHE_ENTRIES: "0" });
    const client = encoderClient(svc.port);
    try {
      const texts = loadQueries("scifact", 32).map((q) => q.text);
      const outcomes = await Promise.all(
        Array.from({ length: 12 }, () =>
          encode(client, { texts }).then(
            () => "ok",
            (e: { code: number; details: string }) => e,
          ),
        ),
      );
      const refused = outcomes.filter((o) => o !== "ok") as Array<{ code: number; details: string }>;
      assert.ok(refused.length > 0, "some requests are refused");
      assert.ok(outcomes.includes("ok"), "the admitted requests are served");
      for (const e of refused) {
        assert.equal(e.code, status.RESOURCE_EXHAUSTED);
        assert.match(e.details, /MAX_QUEUED_REQUESTS=2/);
      }
    } finally {
      client.close();
      await svc.stop();
    }
  });

  it("serves repeated texts from the LRU cache and counts hits", async () => {
    const metricsPort = await freePort();
    const svc = await start({ CACHE_ENTRIES: "100", METRICS_PORT: String(metricsPort) });
    const client = encoderClient(svc.port);
    try {
      const first = vectors(await encode(client, { texts: ["vitamin d and bone density"] }));
      const second = vectors(await encode(client, { texts: ["vitamin d and bone density", "a new text"] }));
      assert.deepEqual([...second[0]!], [...first[0]!]);
      const scrape = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.match(scrape, /encoder_cache_hits_total(\{[^}]*\})? 1\b/);
      assert.match(scrape, /encoder_cache_misses_total(\{[^}]*\})? 2\b/);
      assert.match(scrape, /rpc_server_duration/);
    } finally {
      client.close();
      await svc.stop();
    }
  });

  it("records each batch as the model ran it: padded tokens and padding ratio of one graph run", async () => {
    const metricsPort = await freePort();
    const svc = await start({ CACHE_ENTRIES: "0", METRICS_PORT: String(metricsPort) });
    const client = encoderClient(svc.port);
    const scrape = async () => {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const read = (name: string) => Number(new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`, "m").exec(text)?.[2] ?? 0);
      return {
        batches: read("encoder_batch_padding_ratio_count"),
        ratio: read("encoder_batch_padding_ratio_sum"),
        padded: read("encoder_batch_padded_tokens_sum"),
      };
    };
    try {
      const before = await scrape();
      const res = await encode(client, { texts: ["bone", "does vitamin d supplementation improve bone density"] });
      const after = await scrape();
      const [short, long] = res.embeddings.map((e) => e.tokens) as [number, number];
      assert.ok(short < long);
      assert.equal(after.batches - before.batches, 1, "one request alone: one batch, one run");
      assert.equal(after.padded - before.padded, 2 * long, "both rows padded to the longer one, in one run");
      const ratio = after.ratio - before.ratio;
      assert.ok(Math.abs(ratio - (1 - (short + long) / (2 * long))) < 1e-9, `padding ratio ${ratio}`);
    } finally {
      client.close();
      await svc.stop();
    }
  });

  it("drops calls cancelled while queued, before inference, and keeps serving", async () => {
    const metricsPort = await freePort();
    const svc = await start({ CACHE_ENTRIES: "0", MAX_BATCH_REQUESTS: "1", METRICS_PORT: String(metricsPort) });
    const client = encoderClient(svc.port);
    try {
      const texts = loadQueries("scifact", 64).map((q) => q.text);
      const first = encode(client, { texts });
      const controllers = Array.from({ length: 6 }, () => new AbortController());
      const calls = controllers.map((ac) =>
        unary(client.encode.bind(client), { texts, kind: TextKind.TEXT_KIND_QUERY }, { signal: ac.signal }).then(
          () => "served",
          (e: { code: number }) => e.code,
        ),
      );
      // Let the server queue them behind the first request, then cancel.
      await new Promise((r) => setTimeout(r, 50));
      for (const ac of controllers) ac.abort();
      assert.deepEqual(await Promise.all(calls), Array(6).fill(status.CANCELLED));
      await first;
      assert.equal((await encode(client, { texts: ["after cancel"] })).embeddings.length, 1);
      const scrape = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const dropped = Number(/encoder_dropped_requests_total\{reason="cancelled"[^}]*\} (\d+)/.exec(scrape)?.[1] ?? 0);
      assert.ok(dropped >= 1, `cancelled requests were dropped before inference (dropped=${dropped})`);
      assert.equal(await checkHealth(svc.port), "SERVING");
    } finally {
      client.close();
      await svc.stop();
    }
  });

  it("reports SERVING only once the model is loaded and warmed up, NOT_SERVING after stop", async () => {
    const port = await freePort();
    const seen: string[] = [];
    let started = false;
    const starting = start({ PORT: String(port) }).then((s) => {
      started = true;
      return s;
    });
    while (!started) {
      const status = await checkHealth(port, "tandem.v1.QueryEncoder", 200);
      if (!started) seen.push(status);
      await new Promise((r) => setTimeout(r, 5));
    }
    const svc = await starting;
    try {
      assert.ok(!seen.includes("SERVING"), `no SERVING before warm-up finished: ${[...new Set(seen)]}`);
      assert.equal(await checkHealth(port, "tandem.v1.QueryEncoder"), "SERVING");
      assert.equal(await checkHealth(port), "SERVING");
    } finally {
      await svc.stop();
    }
    assert.notEqual(await checkHealth(port, "tandem.v1.QueryEncoder"), "SERVING");
  });

  it("refuses to start on invalid configuration, naming the variable", () => {
    assert.throws(() => encoderConfig({ MODEL_DIR: BUNDLE, MAX_BATCH_TOKENS: "lots" }), /MAX_BATCH_TOKENS="lots"/);
    assert.throws(() => encoderConfig({ MODEL_DIR: BUNDLE, PORT: "70000" }), /PORT="70000".*gRPC port/);
  });
});
