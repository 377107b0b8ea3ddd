import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { FieldMatch } from "@tandem/proto";
import {
  bruteForce,
  clustered,
  createReq,
  point,
  rng,
  searchReq,
  startTestAnn,
  type TestAnn,
  tempDir,
  unary,
  upsert,
} from "./support.js";

const D = 32;
const N = 3000;

const str = (value: string) => ({ kind: { $case: "stringValue" as const, value } });
const num = (value: number) => ({ kind: { $case: "numberValue" as const, value } });

describe("ann: HNSW recall and filtered search against plain-JS ground truth", () => {
  const tmp = tempDir("search");
  let s: TestAnn;
  const vectors = clustered(N, D, 30, 7);
  const langs = ["en", "de", "fr"];
  const docs = vectors.map((vector, i) => ({
    id: `d${i}`,
    vector,
    payload: {
      lang: langs[i % 3]!,
      // ~1% of points: selective filter, answered by the exact scan of the matching set.
      rare: i % 97 === 0,
      year: 2000 + (i % 20),
      tags: i % 2 === 0 ? ["even", `t${i % 5}`] : [`t${i % 5}`],
      text: `document ${i} `.repeat(30),
    },
  }));
  const matches = (p: (typeof docs)[number]["payload"], filter: FieldMatch[]) =>
    filter.every((f) => {
      const raw = (p as Record<string, unknown>)[f.field];
      const vals = Array.isArray(raw) ? raw : [raw];
      return f.anyOf.some((sc) => vals.includes(sc.kind?.value));
    });
  const queries = clustered(40, D, 30, 7).map((q, i) => q.map((x) => x + (rng(i)() - 0.5) * 0.05));

  before(async () => {
    // FILTER_EXACT_MAX low enough that the lang filter (1/3 of points) goes through HNSW over-fetch.
    s = await startTestAnn(tmp.dir, { FILTER_EXACT_MAX: "100", MAX_POINTS_PER_REQUEST: "500" });
    await unary(s.client.createCollection.bind(s.client), createReq("c", D));
    await unary(
      s.client.createCollection.bind(s.client),
      createReq("half", D, { index: { m: 16, efConstruction: 128, efSearch: 64, quantization: "f16" } }),
    );
    for (const name of ["c", "half"]) {
      const msgs = [];
      for (let i = 0; i < N; i += 500) {
        msgs.push({ collection: name, points: docs.slice(i, i + 500).map((d) => point(d.id, d.vector, d.payload)) });
      }
      assert.equal((await upsert(s.client, msgs)).upserted, N);
    }
  });
  after(async () => {
    await s.stop();
    tmp.remove();
  });

  async function recall(collection: string, ef: number): Promise<number> {
    let hit = 0;
    for (const q of queries) {
      const truth = new Set(bruteForce(docs, q, 10).map((h) => h.id));
      const res = await unary(s.client.search.bind(s.client), searchReq(collection, q, { k: 10, ef }));
      hit += res.hits.filter((h) => truth.has(h.id)).length;
    }
    return hit / (queries.length * 10);
  }

  test("exact search equals the plain-JS brute force (ids and scores)", async () => {
    for (const q of queries.slice(0, 10)) {
      const truth = bruteForce(docs, q, 10);
      const res = await unary(s.client.search.bind(s.client), searchReq("c", q, { k: 10, exact: true }));
      assert.deepEqual(
        res.hits.map((h) => h.id),
        truth.map((t) => t.id),
      );
      for (const [i, h] of res.hits.entries()) assert.ok(Math.abs(h.score - truth[i]!.score) < 1e-4);
    }
  });

  test("HNSW recall@10 vs exact is high and grows with ef (f32 and f16)", async () => {
    const low = await recall("c", 10);
    const high = await recall("c", 128);
    const half = await recall("half", 128);
    assert.ok(high >= 0.97, `recall@10 at ef=128: ${high}`);
    assert.ok(high >= low, `ef=10 ${low} vs ef=128 ${high}`);
    assert.ok(half >= 0.95, `f16 recall@10 at ef=128: ${half}`);
  });

  test("filtered search returns exactly the filtered ground truth, k hits when they exist", async () => {
    const filters: FieldMatch[][] = [
      [{ field: "lang", anyOf: [str("de")] }], // 1/3: HNSW over-fetch
      [{ field: "rare", anyOf: [{ kind: { $case: "boolValue", value: true } }] }], // ~1%: exact scan
      [
        { field: "lang", anyOf: [str("en"), str("fr")] },
        { field: "tags", anyOf: [str("even")] },
      ], // AND + array membership
      [
        { field: "year", anyOf: [num(2003), num(2007)] },
        { field: "tags", anyOf: [str("t1"), str("t2")] },
      ],
    ];
    for (const filter of filters) {
      const allowed = docs.filter((d) => matches(d.payload, filter));
      assert.ok(allowed.length >= 10);
      for (const q of queries.slice(0, 10)) {
        const truth = bruteForce(allowed, q, 10).map((h) => h.id);
        const res = await unary(
          s.client.search.bind(s.client),
          searchReq("c", q, { k: 10, filter, ef: 64, withPayload: true }),
        );
        assert.equal(res.hits.length, 10, `k hits for ${JSON.stringify(filter)}`);
        for (const h of res.hits) assert.ok(matches(JSON.parse(h.payloadJson), filter), `hit ${h.id} fails the filter`);
        const overlap = res.hits.filter((h) => truth.includes(h.id)).length;
        assert.ok(overlap >= 9, `filtered recall ${overlap}/10 for ${JSON.stringify(filter)}`);
        const exact = await unary(s.client.search.bind(s.client), searchReq("c", q, { k: 10, filter, exact: true }));
        assert.deepEqual(
          exact.hits.map((h) => h.id),
          truth,
        );
      }
    }
  });

  test("a filter matching fewer than k points returns all of them; a filter matching none returns none", async () => {
    const filter = [
      { field: "year", anyOf: [num(2005)] },
      { field: "rare", anyOf: [{ kind: { $case: "boolValue" as const, value: true } }] },
    ];
    const allowed = docs.filter((d) => matches(d.payload, filter));
    const res = await unary(s.client.search.bind(s.client), searchReq("c", queries[0]!, { k: 50, filter }));
    assert.deepEqual(res.hits.map((h) => h.id).sort(), allowed.map((d) => d.id).sort());
    const none = await unary(
      s.client.search.bind(s.client),
      searchReq("c", queries[0]!, { filter: [{ field: "lang", anyOf: [str("xx")] }] }),
    );
    assert.equal(none.hits.length, 0);
    // A number is not the string of its digits.
    const typed = await unary(
      s.client.search.bind(s.client),
      searchReq("c", queries[0]!, { filter: [{ field: "year", anyOf: [str("2005")] }] }),
    );
    assert.equal(typed.hits.length, 0);
  });

  test("filters follow replaces and deletes", async () => {
    const filter = [{ field: "lang", anyOf: [str("xx")] }];
    await upsert(s.client, [{ collection: "c", points: [point("d1", docs[1]!.vector, { lang: "xx" })] }]);
    let res = await unary(s.client.search.bind(s.client), searchReq("c", queries[0]!, { filter }));
    assert.deepEqual(
      res.hits.map((h) => h.id),
      ["d1"],
    );
    const de = await unary(
      s.client.search.bind(s.client),
      searchReq("c", docs[1]!.vector, { k: 1, filter: [{ field: "lang", anyOf: [str(docs[1]!.payload.lang)] }] }),
    );
    assert.notEqual(de.hits[0]?.id, "d1");
    await unary(s.client.delete.bind(s.client), { collection: "c", ids: ["d1"] });
    res = await unary(s.client.search.bind(s.client), searchReq("c", queries[0]!, { filter }));
    assert.equal(res.hits.length, 0);
  });
});
