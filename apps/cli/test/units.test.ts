import assert from "node:assert/strict";
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { annClient, loopbackEnv } from "../src/clients.js";
import { loadEvalSet, readQrels } from "../src/eval/beir.js";
import { DiskEmbeddingCache } from "../src/eval/disk-embedding-cache.js";
import { pingRedis } from "../src/redis.js";

const dir = mkdtempSync(join(tmpdir(), "tandem-cli-units-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("embedding cache: round trip, reopen, and a torn last record is cut off", () => {
  const path = join(dir, "cache.f32");
  const a = DiskEmbeddingCache.at(path, 3);
  a.put([
    { text: "one", vector: new Float32Array([1, 2, 3]) },
    { text: "two", vector: new Float32Array([4, 5, 6]) },
  ]);
  a.put([{ text: "one", vector: new Float32Array([9, 9, 9]) }]); // already there: not appended again
  assert.equal(statSync(path).size, 2 * (32 + 12));
  appendFileSync(path, Buffer.alloc(20)); // a run killed mid-write
  const b = DiskEmbeddingCache.at(path, 3);
  assert.equal(b.size, 2);
  assert.deepEqual(Array.from(b.get("two") ?? []), [4, 5, 6]);
  assert.equal(b.get("three"), undefined);
  assert.equal(statSync(path).size, 2 * (32 + 12), "the partial record is truncated");
  b.put([{ text: "three", vector: new Float32Array([7, 8, 9]) }]);
  assert.deepEqual(Array.from(DiskEmbeddingCache.at(path, 3).get("three") ?? []), [7, 8, 9]);
});

test("BEIR loader: qrels with a header, queries without relevant docs dropped, a slice keeps judged docs", () => {
  const ds = join(dir, "tiny");
  mkdirSync(join(ds, "qrels"), { recursive: true });
  const docs = Array.from({ length: 20 }, (_, i) => ({ _id: `d${i}`, title: `T${i}`, text: `text ${i}` }));
  writeFileSync(join(ds, "corpus.jsonl"), `${docs.map((d) => JSON.stringify(d)).join("\n")}\n`);
  writeFileSync(
    join(ds, "queries.jsonl"),
    ["q1", "q2", "q3"].map((id) => JSON.stringify({ _id: id, text: `query ${id}` })).join("\n"),
  );
  writeFileSync(
    join(ds, "qrels", "test.tsv"),
    "query-id\tcorpus-id\tscore\nq1\td3\t2\nq1\td17\t1\nq2\td5\t0\nq3\td9\t1\n",
  );
  assert.equal(
    readQrels(join(ds, "qrels", "test.tsv"))
      .get("q1")
      ?.get("d3"),
    2,
  );

  const full = loadEvalSet(ds);
  assert.deepEqual(
    full.queries.map((q) => q.id),
    ["q1", "q3"],
  );
  assert.equal(full.slice, "full");
  assert.equal(full.docs[3]?.text, "T3 text 3", "title and text, as the indexer embeds them");

  const s1 = loadEvalSet(ds, { maxQueries: 1, maxDocs: 5 });
  const ids = s1.docs.map((d) => d.id);
  assert.equal(ids.length, 5);
  assert.ok(ids.includes("d3") && ids.includes("d17"), "judged documents of the chosen query stay");
  assert.equal(s1.slice, "d5-q1");
  assert.deepEqual(
    loadEvalSet(ds, { maxQueries: 1, maxDocs: 5 }).docs.map((d) => d.id),
    ids,
    "the sample is stable",
  );
});

test("BEIR loader: a missing dataset is named, with what a BEIR directory holds and where the default comes from", () => {
  assert.throws(
    () => loadEvalSet(join(dir, "no-such-dataset")),
    (err: Error) =>
      err.message.includes(`dataset ${join(dir, "no-such-dataset")} not found`) &&
      err.message.includes("corpus.jsonl, queries.jsonl, qrels/test.tsv") &&
      err.message.includes("TANDEM_DATASETS_DIR") &&
      err.message.includes("not part of the repository"),
  );
  const partial = join(dir, "no-qrels");
  mkdirSync(partial, { recursive: true });
  writeFileSync(join(partial, "corpus.jsonl"), '{"_id":"d1","text":"x"}\n');
  writeFileSync(join(partial, "queries.jsonl"), '{"_id":"q1","text":"y"}\n');
  assert.throws(
    () => loadEvalSet(partial, { split: "dev" }),
    (err: Error) => err.message.startsWith(`${join(partial, "qrels", "dev.tsv")} not found: --dataset must be a BEIR`),
  );
});

test("pingRedis: a refused port and a server that answers PONG", async () => {
  const refused = await pingRedis("redis://127.0.0.1:1");
  assert.match(refused ?? "", /ECONNREFUSED/);
  const fake = createServer((s) => s.on("data", () => s.write("+PONG\r\n")));
  await new Promise<void>((r) => fake.listen(0, "127.0.0.1", r));
  const port = (fake.address() as { port: number }).port;
  try {
    assert.equal(await pingRedis(`redis://127.0.0.1:${port}`), null);
  } finally {
    fake.close();
  }
  assert.match((await pingRedis("http://x")) ?? "", /redis:\/\//);
});

test("loopback env: a deployment's TLS, token and probe variables are left out and named; clients then speak plaintext", () => {
  const shell = {
    PATH: "/usr/bin",
    REDIS_URL: "redis://127.0.0.1:6379",
    ANN_TLS_CA_FILE: join(dir, "no-such-ca.pem"),
    ENCODER_TLS_SERVER_NAME: "query-encoder.tandem.svc",
    TLS_CERT_FILE: join(dir, "no-such.crt"),
    TLS_KEY_FILE: join(dir, "no-such.key"),
    AUTH_TOKEN_FILE: "",
    HEALTH_PORT: "8081",
  };
  const local = loopbackEnv(shell);
  assert.deepEqual(local.dropped, [
    "ANN_TLS_CA_FILE",
    "ENCODER_TLS_SERVER_NAME",
    "HEALTH_PORT",
    "TLS_CERT_FILE",
    "TLS_KEY_FILE",
  ]);
  assert.deepEqual(local.vars, { PATH: "/usr/bin", REDIS_URL: "redis://127.0.0.1:6379" });
  // The shell's settings would make the client reach for TLS files; the loopback ones do not.
  assert.throws(() => annClient("127.0.0.1:1", shell), /ANN_TLS_CA_FILE=.*no such file/);
  annClient("127.0.0.1:1", local.vars).close();
});
