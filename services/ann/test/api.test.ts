import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Metadata, status } from "@grpc/grpc-js";
import { decodeVector, encodeVector, Metric } from "@tandem/proto";
import { createReq, failure, point, searchReq, startTestAnn, type TestAnn, tempDir, unary, upsert } from "./support.js";

const D = 8;
const v = (...xs: number[]) => Float32Array.from({ length: D }, (_, i) => xs[i] ?? 0);

describe("ann: collections, points, search round trips", () => {
  const tmp = tempDir("api");
  let s: TestAnn;
  before(async () => {
    s = await startTestAnn(tmp.dir, {
      MAX_K: "50",
      MAX_POINTS_PER_REQUEST: "20",
      MAX_PAYLOAD_BYTES: "200",
      MAX_ID_BYTES: "16",
      MAX_COLLECTIONS: "4",
      MIN_DIMS: "2",
      MAX_DIMS: "64",
      MAX_EF: "500",
    });
  });
  after(async () => {
    await s.stop();
    tmp.remove();
  });
  const call = <Req, Res>(m: Parameters<typeof unary<Req, Res>>[0], req: Req) => unary(m, req, { timeoutMs: 10_000 });

  test("create, list, stats; duplicate name is ALREADY_EXISTS", async () => {
    const info = await call(s.client.createCollection.bind(s.client), createReq("docs", D));
    assert.equal(info.name, "docs");
    assert.equal(info.dims, D);
    assert.equal(info.metric, Metric.METRIC_COSINE);
    // An f32 collection has no rescoring settings to report.
    assert.deepEqual(info.index, {
      m: 16,
      efConstruction: 128,
      efSearch: 64,
      quantization: "f32",
      rescore: undefined,
      oversampling: undefined,
    });
    const err = await failure(call(s.client.createCollection.bind(s.client), createReq("docs", D)));
    assert.equal(err.code, status.ALREADY_EXISTS);
    const list = await call(s.client.listCollections.bind(s.client), {});
    assert.deepEqual(
      list.collections.map((c) => c.name),
      ["docs"],
    );
  });

  test("upsert -> get -> search -> delete round trip, with payload projection", async () => {
    const res = await upsert(s.client, [
      {
        collection: "docs",
        points: [point("a", v(1, 0), { text: "alpha", lang: "en" }), point("b", v(0, 1), { text: "beta", lang: "de" })],
      },
      { collection: "docs", points: [point("c", v(1, 1), { text: "gamma", lang: "en" })] },
    ]);
    assert.equal(res.upserted, 3);

    const got = await call(s.client.get.bind(s.client), {
      collection: "docs",
      ids: ["c", "zz", "a"],
      withVectors: true,
    });
    assert.deepEqual(
      got.points.map((p) => p.id),
      ["c", "a"],
    );
    assert.deepEqual(got.missing, ["zz"]);
    assert.deepEqual(decodeVector(got.points[1]!.vector, D), v(1, 0));
    assert.deepEqual(JSON.parse(got.points[0]!.payloadJson), { text: "gamma", lang: "en" });

    const found = await call(
      s.client.search.bind(s.client),
      searchReq("docs", v(1, 0.1), { k: 2, withPayload: true, payloadFields: ["lang"], withVectors: true }),
    );
    assert.deepEqual(
      found.hits.map((h) => h.id),
      ["a", "c"],
    );
    assert.equal(found.collection, "docs");
    assert.equal(found.space, "test-space/8");
    assert.deepEqual(JSON.parse(found.hits[0]!.payloadJson), { lang: "en" });
    assert.deepEqual(decodeVector(found.hits[0]!.vector, D), v(1, 0));
    assert.ok(found.hits[0]!.score > found.hits[1]!.score);
    assert.ok(Math.abs(found.hits[0]!.score - 1 / Math.sqrt(1.01)) < 1e-4, `cosine score ${found.hits[0]!.score}`);

    const exact = await call(s.client.search.bind(s.client), searchReq("docs", v(1, 0.1), { k: 10, exact: true }));
    assert.deepEqual(
      exact.hits.map((h) => h.id),
      ["a", "c", "b"],
    );

    const del = await call(s.client.delete.bind(s.client), { collection: "docs", ids: ["a", "nope", "a"] });
    assert.equal(del.deleted, 1);
    const after = await call(s.client.search.bind(s.client), searchReq("docs", v(1, 0), { k: 10 }));
    assert.deepEqual(after.hits.map((h) => h.id).sort(), ["b", "c"]);
    const stats = await call(s.client.stats.bind(s.client), { collection: "docs" });
    assert.equal(stats.info?.count, 2);
    assert.ok(stats.walRecords >= 3);
    assert.ok(stats.diskBytes > 0);
  });

  test("upsert of an existing id replaces vector and payload", async () => {
    await upsert(s.client, [{ collection: "docs", points: [point("b", v(0, 1), { v: 1 })] }]);
    await upsert(s.client, [{ collection: "docs", points: [point("b", v(0, 0, 1), { v: 2 })] }]);
    const got = await call(s.client.get.bind(s.client), { collection: "docs", ids: ["b"], withVectors: true });
    assert.deepEqual(decodeVector(got.points[0]!.vector, D), v(0, 0, 1));
    assert.deepEqual(JSON.parse(got.points[0]!.payloadJson), { v: 2 });
    const found = await call(s.client.search.bind(s.client), searchReq("docs", v(0, 0, 1), { k: 1 }));
    assert.equal(found.hits[0]?.id, "b");
    assert.ok(Math.abs(found.hits[0]!.score - 1) < 1e-5);
    // The same id twice in one batch: the last one wins, counted once.
    const res = await upsert(s.client, [
      { collection: "docs", points: [point("b", v(1), { v: 3 }), point("b", v(0, 0, 0, 1), { v: 4 })] },
    ]);
    assert.equal(res.upserted, 1);
    const again = await call(s.client.get.bind(s.client), { collection: "docs", ids: ["b"], withVectors: true });
    assert.deepEqual(JSON.parse(again.points[0]!.payloadJson), { v: 4 });
    const stats = await call(s.client.stats.bind(s.client), { collection: "docs" });
    assert.equal(stats.info?.count, 2);
  });

  test("aliases: every read and write accepts one; SetAlias moves it; drop refuses a target", async () => {
    await call(s.client.createCollection.bind(s.client), createReq("docs-v2", D));
    const set = await call(s.client.setAlias.bind(s.client), { alias: "live", collection: "docs" });
    assert.equal(set.previousCollection, "");
    await upsert(s.client, [{ collection: "live", points: [point("x", v(0, 0, 0, 0, 1))] }]);
    const viaAlias = await call(s.client.search.bind(s.client), searchReq("live", v(0, 0, 0, 0, 1), { k: 1 }));
    assert.equal(viaAlias.collection, "docs");
    assert.equal(viaAlias.hits[0]?.id, "x");
    const moved = await call(s.client.setAlias.bind(s.client), { alias: "live", collection: "docs-v2" });
    assert.equal(moved.previousCollection, "docs");
    const empty = await call(s.client.search.bind(s.client), searchReq("live", v(1), { k: 1 }));
    assert.equal(empty.collection, "docs-v2");
    assert.equal(empty.hits.length, 0);
    const list = await call(s.client.listAliases.bind(s.client), {});
    assert.deepEqual(list.aliases, [{ alias: "live", collection: "docs-v2" }]);
    const info = await call(s.client.stats.bind(s.client), { collection: "live" });
    assert.deepEqual(info.info?.aliases, ["live"]);

    const refused = await failure(call(s.client.dropCollection.bind(s.client), { name: "docs-v2" }));
    assert.equal(refused.code, status.FAILED_PRECONDITION);
    assert.match(refused.details, /live/);
    const shadow = await failure(call(s.client.setAlias.bind(s.client), { alias: "docs", collection: "docs-v2" }));
    assert.equal(shadow.code, status.ALREADY_EXISTS);
    const missing = await failure(call(s.client.setAlias.bind(s.client), { alias: "a2", collection: "nope" }));
    assert.equal(missing.code, status.NOT_FOUND);

    assert.equal((await call(s.client.deleteAlias.bind(s.client), { alias: "live" })).deleted, true);
    assert.equal((await call(s.client.dropCollection.bind(s.client), { name: "docs-v2" })).dropped, true);
    assert.equal((await call(s.client.dropCollection.bind(s.client), { name: "docs-v2" })).dropped, false);
    const gone = await failure(call(s.client.search.bind(s.client), searchReq("docs-v2", v(1))));
    assert.equal(gone.code, status.NOT_FOUND);
  });

  test("dimension mismatch is INVALID_ARGUMENT (search and upsert), nothing stored", async () => {
    const err = await failure(call(s.client.search.bind(s.client), searchReq("docs", new Float32Array(D + 1))));
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.match(err.details, /dimensions, expected 8/);
    const up = await failure(upsert(s.client, [{ collection: "docs", points: [point("y", new Float32Array(3))] }]));
    assert.equal(up.code, status.INVALID_ARGUMENT);
    const odd = await failure(
      call(s.client.search.bind(s.client), {
        ...searchReq("docs", v(1)),
        query: { $case: "vector", value: Buffer.alloc(7) },
      }),
    );
    assert.equal(odd.code, status.INVALID_ARGUMENT);
    const nan = await failure(call(s.client.search.bind(s.client), searchReq("docs", v(Number.NaN))));
    assert.equal(nan.code, status.INVALID_ARGUMENT);
    const got = await call(s.client.get.bind(s.client), { collection: "docs", ids: ["y"], withVectors: false });
    assert.deepEqual(got.missing, ["y"]);
  });

  test("bad JSON payload, non-object payload, empty id -> INVALID_ARGUMENT", async () => {
    for (const payloadJson of ["{not json", "[1,2]", "null", '"s"']) {
      const err = await failure(
        upsert(s.client, [{ collection: "docs", points: [{ id: "p", vector: encodeVector(v(1)), payloadJson }] }]),
      );
      assert.equal(err.code, status.INVALID_ARGUMENT, payloadJson);
    }
    const empty = await failure(upsert(s.client, [{ collection: "docs", points: [point("", v(1))] }]));
    assert.equal(empty.code, status.INVALID_ARGUMENT);
    assert.match(empty.details, /id is empty/);
    const mixed = await failure(
      upsert(s.client, [
        { collection: "docs", points: [point("m1", v(1))] },
        { collection: "other", points: [point("m2", v(1))] },
      ]),
    );
    assert.equal(mixed.code, status.INVALID_ARGUMENT);
    const noQuery = await failure(
      call(s.client.search.bind(s.client), { ...searchReq("docs", v(1)), query: undefined }),
    );
    assert.equal(noQuery.code, status.INVALID_ARGUMENT);
    const noEncoder = await failure(
      call(s.client.search.bind(s.client), { ...searchReq("docs", v(1)), query: { $case: "text", value: "hi" } }),
    );
    assert.equal(noEncoder.code, status.FAILED_PRECONDITION);
    const badName = await failure(call(s.client.createCollection.bind(s.client), createReq("../evil", D)));
    assert.equal(badName.code, status.INVALID_ARGUMENT);
    const noSpace = await failure(
      call(s.client.createCollection.bind(s.client), createReq("nospace", D, { space: "" })),
    );
    assert.equal(noSpace.code, status.INVALID_ARGUMENT);
    const i8dot = await failure(
      call(
        s.client.createCollection.bind(s.client),
        createReq("i8dot", D, {
          metric: Metric.METRIC_DOT,
          index: { m: 0, efConstruction: 0, efSearch: 0, quantization: "i8" },
        }),
      ),
    );
    assert.equal(i8dot.code, status.INVALID_ARGUMENT);
  });

  test("invalid UTF-8 in a string field is INVALID_ARGUMENT and the server keeps serving", async () => {
    // GetRequest { collection: "docs" (field 1), ids: [0xff 0xfe] (field 2) }, framed by hand.
    const body = Buffer.from([0x0a, 4, ...Buffer.from("docs"), 0x12, 2, 0xff, 0xfe]);
    const err = await failure(
      new Promise((resolve, reject) => {
        s.client.makeUnaryRequest(
          "/tandem.v1.Ann/Get",
          (b: Buffer) => b,
          (b: Buffer) => b,
          body,
          new Metadata(),
          { deadline: Date.now() + 5000 },
          (e, r) => (e ? reject(e) : resolve(r)),
        );
      }),
    );
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.match(err.details, /UTF-8/);
    // Upsert with a bad id inside a nested Point.
    const pointBytes = Buffer.from([0x0a, 1, 0xc3]);
    const upsertBody = Buffer.from([0x0a, 4, ...Buffer.from("docs"), 0x12, pointBytes.length, ...pointBytes]);
    const streamErr = await failure(
      new Promise((resolve, reject) => {
        const callS = s.client.makeClientStreamRequest(
          "/tandem.v1.Ann/Upsert",
          (b: Buffer) => b,
          (b: Buffer) => b,
          new Metadata(),
          { deadline: Date.now() + 5000 },
          (e, r) => (e ? reject(e) : resolve(r)),
        );
        callS.write(upsertBody);
        callS.end();
      }),
    );
    assert.equal(streamErr.code, status.INVALID_ARGUMENT);
    const ok = await call(s.client.get.bind(s.client), { collection: "docs", ids: ["b"], withVectors: false });
    assert.equal(ok.points.length, 1);
  });

  test("every limit is enforced with its status", async () => {
    const before = (await call(s.client.stats.bind(s.client), { collection: "docs" })).info?.count;
    const big = await failure(call(s.client.search.bind(s.client), searchReq("docs", v(1), { k: 51 })));
    assert.equal(big.code, status.INVALID_ARGUMENT);
    assert.match(big.details, /MAX_K/);
    const ef = await failure(call(s.client.search.bind(s.client), searchReq("docs", v(1), { ef: 501 })));
    assert.equal(ef.code, status.INVALID_ARGUMENT);
    const many = Array.from({ length: 21 }, (_, i) => point(`n${i}`, v(1)));
    const batch = await failure(upsert(s.client, [{ collection: "docs", points: many }]));
    assert.equal(batch.code, status.INVALID_ARGUMENT);
    assert.match(batch.details, /limit of 20/);
    const ids = await failure(
      call(s.client.get.bind(s.client), { collection: "docs", ids: many.map((p) => p.id), withVectors: false }),
    );
    assert.equal(ids.code, status.INVALID_ARGUMENT);
    const payload = await failure(
      upsert(s.client, [{ collection: "docs", points: [point("p", v(1), { t: "x".repeat(300) })] }]),
    );
    assert.equal(payload.code, status.INVALID_ARGUMENT);
    assert.match(payload.details, /limit is 200/);
    const longId = await failure(upsert(s.client, [{ collection: "docs", points: [point("é".repeat(9), v(1))] }]));
    assert.equal(longId.code, status.INVALID_ARGUMENT);
    const dimsLow = await failure(call(s.client.createCollection.bind(s.client), createReq("tiny", 1)));
    assert.equal(dimsLow.code, status.INVALID_ARGUMENT);
    const dimsHigh = await failure(call(s.client.createCollection.bind(s.client), createReq("huge", 65)));
    assert.equal(dimsHigh.code, status.INVALID_ARGUMENT);
    const filterLong = await failure(
      call(
        s.client.search.bind(s.client),
        searchReq("docs", v(1), {
          filter: [{ field: "t", anyOf: [{ kind: { $case: "stringValue", value: "x".repeat(300) } }] }],
        }),
      ),
    );
    assert.equal(filterLong.code, status.INVALID_ARGUMENT);
    // MAX_COLLECTIONS=4: "docs" exists, three more fit, the fifth does not.
    for (const n of ["c2", "c3", "c4"]) await call(s.client.createCollection.bind(s.client), createReq(n, D));
    const full = await failure(call(s.client.createCollection.bind(s.client), createReq("c5", D)));
    assert.equal(full.code, status.RESOURCE_EXHAUSTED);
    for (const n of ["c2", "c3", "c4"]) await call(s.client.dropCollection.bind(s.client), { name: n });
    // Nothing above changed stored data.
    const stats = await call(s.client.stats.bind(s.client), { collection: "docs" });
    assert.equal(stats.info?.count, before);
  });
});

describe("ann: MAX_POINTS_PER_COLLECTION", () => {
  test("an upsert past the capacity is RESOURCE_EXHAUSTED and stores nothing of its batch", async () => {
    const tmp = tempDir("cap");
    const s = await startTestAnn(tmp.dir, { MAX_POINTS_PER_COLLECTION: "3" });
    try {
      await unary(s.client.createCollection.bind(s.client), createReq("c", D));
      await upsert(s.client, [{ collection: "c", points: [point("a", v(1)), point("b", v(0, 1))] }]);
      const err = await failure(upsert(s.client, [{ collection: "c", points: [point("c", v(1)), point("d", v(1))] }]));
      assert.equal(err.code, status.RESOURCE_EXHAUSTED);
      // Replacing existing ids does not count against the capacity.
      await upsert(s.client, [{ collection: "c", points: [point("a", v(1, 1)), point("c", v(1))] }]);
      const stats = await unary(s.client.stats.bind(s.client), { collection: "c" });
      assert.equal(stats.info?.count, 3);
    } finally {
      await s.stop();
      tmp.remove();
    }
  });
});
