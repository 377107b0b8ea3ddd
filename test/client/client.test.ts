// @tandem/client against the real services, each a process of its own main.ts on a free loopback
// port, with the real Redis: encode, index through Submit + follow, search by text and by vector,
// the typed error, the retry of an idempotent call while a service starts late, and deadlines.
// One small bundle (all-minilm-l6-v2) is teacher and student alike, so the test stays quick on 2 cores.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import { Ann, isRpcError, parsePayload, point, RpcError, TandemClient } from "@tandem/client";
import { JobState } from "@tandem/proto";
import { makeTestPki } from "../support/certs.js";
import { freePort } from "../support/net.js";
import { bundleDir } from "../support/paths.js";
import { startServiceProcess } from "../support/process.js";
import { TestStack } from "../support/stack.js";

const MODEL = bundleDir("all-minilm-l6-v2");

const DOCS = [
  { id: "gRPC", text: "Vectors travel over gRPC as packed little-endian float32 bytes.", topic: "api" },
  {
    id: "wal",
    text: "The ANN service appends every write to a write-ahead log and fsyncs before it acknowledges.",
    topic: "storage",
  },
  {
    id: "redis",
    text: "Indexing jobs wait in a BullMQ queue kept in Redis until a teacher worker takes them.",
    topic: "queue",
  },
  { id: "cats", text: "Cats sleep for most of the day and hunt at dusk.", topic: "other" },
];

async function expectRpcError(p: Promise<unknown>, code: status): Promise<RpcError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof RpcError, `expected an RpcError, got ${String(err)}`);
    assert.equal(err.code, code, err.details);
    return err;
  }
  assert.fail(`expected ${status[code]}, the call succeeded`);
}

describe("@tandem/client against the real services", () => {
  const stack = new TestStack("client");
  let tandem: TandemClient;

  before(async () => {
    const encoder = await stack.encoderProcess(MODEL);
    const ann = await stack.annProcess({ ENCODER_ADDR: encoder.addr });
    const indexer = await stack.indexerProcess(ann.addr, MODEL);
    tandem = new TandemClient({ encoder: encoder.addr, ann: ann.addr, indexer: indexer.addr });
    stack.defer(() => tandem.close());
  });

  after(() => stack.stop());

  it("encodes texts into Float32Arrays of the encoder's space", async () => {
    const { model } = await tandem.encoder.info();
    const res = await tandem.encoder.encode(["how do vectors travel", "a second text"], "document");
    assert.equal(res.space, model?.space);
    assert.equal(res.vectors.length, 2);
    for (const v of res.vectors) {
      assert.ok(v instanceof Float32Array);
      assert.equal(v.length, res.dims);
      const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
      assert.ok(Math.abs(norm - 1) < 1e-3, `unit norm, got ${norm}`);
    }
    assert.deepEqual(res.truncated, [false, false]);
    assert.ok(res.tokens.every((t) => t > 2));
  });

  it("indexes through Submit + follow, then searches by text, by vector and with a filter", {
    timeout: 300_000,
  }, async () => {
    const { teacher } = await tandem.indexer.info();
    assert.ok(teacher);
    const created = await tandem.ann.createCollection({
      name: "client-docs",
      space: teacher.space,
      dims: teacher.dims,
    });
    assert.equal(created.count, 0);
    assert.equal(await tandem.ann.setAlias("docs", "client-docs"), "");

    const sub = await tandem.indexer.submit(
      "docs",
      DOCS.map((d) => ({ id: d.id, text: d.text, payloadJson: JSON.stringify({ topic: d.topic }) })),
    );
    assert.equal(sub.accepted, DOCS.length);
    assert.deepEqual(sub.rejected, []);
    const seen: JobState[] = [];
    let last = null as Awaited<ReturnType<typeof tandem.indexer.jobStatus>> | null;
    for await (const s of tandem.indexer.follow(sub.jobId, { intervalMs: 200 })) {
      seen.push(s.state);
      last = s;
    }
    assert.equal(last?.state, JobState.JOB_STATE_COMPLETED, last?.error);
    assert.equal(last?.docsDone, DOCS.length);
    assert.equal((await tandem.indexer.jobStatus(sub.jobId)).state, JobState.JOB_STATE_COMPLETED);
    assert.equal((await tandem.ann.info("docs")).count, DOCS.length);

    const byText = await tandem.ann.search({ collection: "docs", text: "write-ahead log durability", k: 2 });
    assert.equal(byText.collection, "client-docs");
    assert.equal(byText.space, teacher.space);
    assert.equal(byText.hits[0]?.id, "wal");
    assert.equal(parsePayload(byText.hits[0]?.payloadJson ?? "").topic, "storage");
    assert.ok(byText.queryTokens > 0);

    const { vectors } = await tandem.encoder.encode(["a queue of jobs in Redis"]);
    const byVector = await tandem.ann.search({
      collection: "docs",
      vector: vectors[0] as Float32Array,
      k: 4,
      exact: true,
      withVectors: true,
    });
    assert.equal(byVector.hits[0]?.id, "redis");
    assert.equal(byVector.hits[0]?.vector?.length, teacher.dims);

    const filtered = await tandem.ann.search({
      collection: "docs",
      text: "a queue of jobs in Redis",
      k: 4,
      filter: { topic: ["api", "other"] },
    });
    assert.deepEqual(filtered.hits.map((h) => h.id).sort(), ["cats", "gRPC"]);

    const got = await tandem.ann.get("docs", ["wal", "nope"], { withVectors: true });
    assert.deepEqual(got.missing, ["nope"]);
    assert.equal(got.points[0]?.vector?.length, teacher.dims);
  });

  it("fails with a typed RpcError on NOT_FOUND, naming the call", async () => {
    const err = await expectRpcError(tandem.ann.info("no-such-collection"), status.NOT_FOUND);
    assert.equal(err.method, "Ann.Stats");
    assert.equal(err.codeName, "NOT_FOUND");
    assert.match(err.details, /no-such-collection/);
    assert.ok(isRpcError(err, status.NOT_FOUND));
    assert.equal(await tandem.ann.find("no-such-collection"), null);
    await expectRpcError(tandem.indexer.jobStatus("no-such-job"), status.NOT_FOUND);
  });

  it("keeps to deadlines: the per-call one, and the client's default", async () => {
    const texts = Array.from({ length: 16 }, (_, i) => `text number ${i} about deadlines`);
    const err = await expectRpcError(
      tandem.encoder.encode(texts, "query", { deadlineMs: 1 }),
      status.DEADLINE_EXCEEDED,
    );
    assert.equal(err.method, "QueryEncoder.Encode");
    const hurried = new Ann({ address: tandem.ann.address, deadlineMs: 1, retry: false });
    try {
      await expectRpcError(hurried.listCollections(), status.DEADLINE_EXCEEDED);
    } finally {
      hurried.close();
    }
  });
});

describe("@tandem/client retries UNAVAILABLE, bounded, only for idempotent calls", () => {
  it("waits out an ANN service that starts late on its port", { timeout: 120_000 }, async () => {
    const port = await freePort();
    const ann = new Ann({ address: `127.0.0.1:${port}`, retry: { limitMs: 60_000, maxDelayMs: 1000 } });
    const dir = mkdtempSync(join(tmpdir(), "tandem-client-late-"));
    let stop: (() => Promise<void>) | null = null;
    try {
      const listed = ann.listCollections();
      await new Promise((r) => setTimeout(r, 1500));
      const late = await startServiceProcess("services/ann/src/main.ts", port, { DATA_DIR: dir });
      stop = () => late.stop();
      assert.deepEqual(await listed, []);
    } finally {
      ann.close();
      await stop?.();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("gives up after its limit, and sends a call that is not idempotent once", { timeout: 60_000 }, async () => {
    const port = await freePort();
    const ann = new Ann({ address: `127.0.0.1:${port}`, retry: { limitMs: 1500, firstDelayMs: 100 } });
    try {
      let t0 = Date.now();
      const err = await expectRpcError(ann.listCollections(), status.UNAVAILABLE);
      assert.equal(err.method, "Ann.ListCollections");
      const retried = Date.now() - t0;
      assert.ok(retried >= 500 && retried < 10_000, `retried for ${retried} ms`);
      t0 = Date.now();
      await expectRpcError(ann.createCollection({ name: "x", space: "s/4", dims: 4 }), status.UNAVAILABLE);
      assert.ok(Date.now() - t0 < 500, `CreateCollection was not retried (${Date.now() - t0} ms)`);
    } finally {
      ann.close();
    }
  });
});

describe("@tandem/client speaks the services' security: TLS, a client certificate, bearer tokens", () => {
  it("reaches an mTLS + token ANN service with a token given as a value or as a file", async () => {
    const pki = makeTestPki();
    const stack = new TestStack("client-sec");
    stack.defer(() => pki.cleanup());
    const dir = stack.scratch;
    writeFileSync(join(dir, "tokens"), "client s3cret-token\n");
    writeFileSync(join(dir, "token"), "s3cret-token\n");
    const ann = await stack.ann({
      TLS_CERT_FILE: pki.cert,
      TLS_KEY_FILE: pki.key,
      TLS_CLIENT_CA_FILE: pki.caCert,
      AUTH_TOKENS_FILE: join(dir, "tokens"),
    });
    const tls = { caFile: pki.caCert, certFile: pki.cert, keyFile: pki.key };
    const address = ann.addr;
    const clients = [
      new Ann({ address, security: tls }),
      new Ann({ address, security: tls, token: "s3cret-token" }),
      new Ann({ address, security: { ...tls, tokenFile: join(dir, "token") } }),
    ];
    try {
      const [tokenless, byValue, byFile] = clients as [Ann, Ann, Ann];
      await expectRpcError(tokenless.listCollections(), status.UNAUTHENTICATED);
      assert.deepEqual(await byValue.listCollections(), []);
      assert.deepEqual(await byFile.listAliases(), []);
    } finally {
      for (const c of clients) c.close();
      await stack.stop();
    }
  });
});

describe("@tandem/client streams", () => {
  it("an Upsert refused while the writer waits on back-pressure rejects, typed, instead of waiting forever", {
    timeout: 60_000,
  }, async () => {
    const stack = new TestStack("client-stream");
    const svc = await stack.ann();
    const ann = new Ann({ address: svc.addr });
    try {
      // ~60 MB: far past HTTP/2's flow-control window, so the writer blocks on "drain" after the refusal.
      const points = Array.from({ length: 40_000 }, (_, i) => point(`p${i}`, new Float32Array(384).fill(i % 7)));
      const err = await expectRpcError(ann.upsert("no-such-collection", points), status.NOT_FOUND);
      assert.equal(err.method, "Ann.Upsert");
    } finally {
      ann.close();
      await stack.stop();
    }
  });
});
