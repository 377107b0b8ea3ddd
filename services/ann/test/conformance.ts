// The behaviour every CollectionBackend must show (src/backend.ts), in the API's terms: ids,
// scores, payloads, filters as the handlers compile them. A backend's own test file calls
// `backendConformance` with a harness that makes its collections on real storage;
// conformance.test.ts runs it on the embedded backend.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { FieldMatch, Scalar } from "@tandem/proto";
import type { BackendHit, CollectionBackend, CollectionMeta, NewPoint } from "../src/backend.js";
import { compileFilter } from "../src/filter.js";
import { clustered, dot, testMeta } from "./support.js";

export interface BackendHarness {
  /** A new, empty collection described by `meta`, on storage of its own. */
  create(meta: CollectionMeta): Promise<CollectionBackend>;
  /** Closes `backend` (with a final snapshot or without) and opens the same collection again. */
  reopen(backend: CollectionBackend, snapshotFirst: boolean): Promise<CollectionBackend>;
  /** Closes whatever is still open and removes the storage. */
  dispose(): Promise<void>;
}

const DIMS = 16;
const N = 400;
const K = 10;

export const meta = (name: string, extra: Partial<CollectionMeta> = {}): CollectionMeta =>
  testMeta(name, DIMS, { space: `conformance/${DIMS}`, ...extra });

export function newPoint(id: string, values: Float32Array, payload: Record<string, unknown> = {}): NewPoint {
  const text = JSON.stringify(payload);
  return { id, vector: new Uint8Array(values.buffer.slice(0)), values, payload: text, payloadObject: payload };
}

/** The API's score for `metric`: similarity for cosine and dot, squared distance for l2. */
function scoreOf(metric: CollectionMeta["metric"], a: Float32Array, b: Float32Array): number {
  if (metric === "dot") return dot(a, b);
  if (metric === "cosine") return dot(a, b) / Math.sqrt(dot(a, a) * dot(b, b));
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return s;
}

interface Truth {
  id: string;
  score: number;
}

function exactTruth(
  metric: CollectionMeta["metric"],
  points: Map<string, Float32Array>,
  q: Float32Array,
  k: number,
  keep: (id: string) => boolean = () => true,
): Truth[] {
  const better = metric === "l2" ? (a: number, b: number) => a - b : (a: number, b: number) => b - a;
  return [...points]
    .filter(([id]) => keep(id))
    .map(([id, v]) => ({ id, score: scoreOf(metric, v, q) }))
    .sort((a, b) => better(a.score, b.score))
    .slice(0, k);
}

/** Exact answers equal the truth rank by rank (scores within float32 error; ids may swap only where scores tie). */
function assertExact(hits: BackendHit[], truth: Truth[], what: string): void {
  assert.equal(hits.length, truth.length, `${what}: hit count`);
  hits.forEach((h, i) => {
    assert.ok(
      Math.abs(h.score - truth[i]!.score) < 1e-4,
      `${what}: rank ${i} scores ${h.score}, exact ${truth[i]!.score}`,
    );
  });
}

function recall(hits: BackendHit[], truth: Truth[]): number {
  const want = new Set(truth.map((t) => t.id));
  return hits.filter((h) => want.has(h.id)).length / truth.length;
}

function scalar(v: string | number | boolean): Scalar {
  if (typeof v === "string") return { kind: { $case: "stringValue", value: v } };
  if (typeof v === "number") return { kind: { $case: "numberValue", value: v } };
  return { kind: { $case: "boolValue", value: v } };
}

function filter(clauses: Record<string, Array<string | number | boolean>>) {
  const req: FieldMatch[] = Object.entries(clauses).map(([field, values]) => ({ field, anyOf: values.map(scalar) }));
  return compileFilter(req, { maxClauses: 16, maxValues: 256, maxStringBytes: 256 });
}

/** N clustered points p0..p(N-1), payload { group: i % 5, tags: [...], even } and their vectors by id. */
function corpus(seed: number): { points: NewPoint[]; vectors: Map<string, Float32Array> } {
  const vectors = new Map<string, Float32Array>();
  const points = clustered(N, DIMS, 8, seed).map((v, i) => {
    vectors.set(`p${i}`, v);
    return newPoint(`p${i}`, v, { group: i % 5, tags: i % 3 === 0 ? ["three", "any"] : ["any"], even: i % 2 === 0 });
  });
  return { points, vectors };
}

const queries = (seed: number) => clustered(12, DIMS, 8, seed);

export function backendConformance(label: string, harness: () => Promise<BackendHarness>): void {
  /** A harness for one test, disposed of after it whatever happens. */
  const withHarness = async (body: (h: BackendHarness) => Promise<void>) => {
    const h = await harness();
    try {
      await body(h);
    } finally {
      await h.dispose();
    }
  };

  describe(`CollectionBackend conformance: ${label}`, () => {
    test("upsert, get and delete round trip by id, with payloads and float32 originals bit for bit", () =>
      withHarness(async (h) => {
        const b = await h.create(meta("roundtrip"));
        assert.equal(b.count, 0);
        assert.deepEqual(await b.get(["nothing"], true), [undefined]);
        const [v1, v2, v3, v4] = clustered(4, DIMS, 2, 1);
        assert.equal(await b.upsert([newPoint("a", v1!, { n: 1 }), newPoint("b", v2!, { n: 2, t: "é" })]), 2);
        assert.equal(b.count, 2);
        const got = await b.get(["b", "missing", "a"], true);
        assert.equal(got[0]?.id, "b");
        assert.equal(got[0]?.payload, JSON.stringify({ n: 2, t: "é" }));
        assert.deepEqual(got[0]?.vector, v2);
        assert.equal(got[1], undefined);
        assert.deepEqual(got[2]?.vector, v1);
        assert.equal((await b.get(["a"], false))[0]?.vector, undefined, "no vector unless asked");

        // A replace keeps the count; within one batch the last of an id wins.
        assert.equal(await b.upsert([newPoint("a", v3!, { n: 10 }), newPoint("a", v4!, { n: 11 })]), 1);
        assert.equal(b.count, 2);
        const replaced = (await b.get(["a"], true))[0];
        assert.equal(replaced?.payload, JSON.stringify({ n: 11 }));
        assert.deepEqual(replaced?.vector, v4);

        // Delete counts what existed, once per id.
        assert.equal(await b.delete(["a", "a", "missing"]), 1);
        assert.equal(b.count, 1);
        assert.deepEqual(await b.get(["a"], false), [undefined]);
        assert.equal(await b.delete(["a"]), 0);
        const hits = await b.search(v4!, { k: 5, ef: 64, exact: false, filter: null, withVectors: false });
        assert.deepEqual(
          hits.map((x) => x.id),
          ["b"],
          "a deleted point is never found",
        );
      }));

    for (const m of [
      meta("cosine"),
      meta("l2", { metric: "l2" }),
      meta("dot", { metric: "dot" }),
      meta("i8", { quantization: "i8", rescore: true, oversampling: 4 }),
    ]) {
      const how = m.quantization === "f32" ? m.metric : `${m.metric} ${m.quantization} + rescore`;
      test(`search (${how}): exact equals brute force, the index finds it, scores in the API's terms, best first`, () =>
        withHarness(async (h) => {
          const b = await h.create(m);
          assert.deepEqual(
            await b.search(queries(3)[0]!, { k: K, ef: 64, exact: false, filter: null, withVectors: false }),
            [],
          );
          const { points, vectors } = corpus(2);
          await b.upsert(points);
          let found = 0;
          for (const [qi, q] of queries(3).entries()) {
            const truth = exactTruth(m.metric, vectors, q, K);
            const exact = await b.search(q, { k: K, ef: 64, exact: true, filter: null, withVectors: false });
            assertExact(exact, truth, `${how} query ${qi} exact`);
            const approx = await b.search(q, { k: K, ef: 64, exact: false, filter: null, withVectors: true });
            assert.equal(approx.length, K);
            for (const [i, hit] of approx.entries()) {
              const v = vectors.get(hit.id)!;
              assert.deepEqual(hit.vector, v, "the hit's vector is its float32 original");
              if (m.quantization === "f32" || m.rescore) {
                assert.ok(Math.abs(hit.score - scoreOf(m.metric, v, q)) < 1e-4, `${how}: ${hit.id}'s score is exact`);
              }
              const prev = approx[i - 1];
              if (prev) assert.ok(m.metric === "l2" ? prev.score <= hit.score : prev.score >= hit.score, "best first");
            }
            found += recall(approx, truth);
          }
          assert.ok(found / queries(3).length >= 0.9, `${how}: recall@${K} ${found / queries(3).length}`);
        }));
    }

    test("filters: AND of any_of clauses, arrays match on any element, k hits whenever k match", () =>
      withHarness(async (h) => {
        const b = await h.create(meta("filters"));
        const { points, vectors } = corpus(4);
        await b.upsert(points);
        const payload = new Map(points.map((p) => [p.id, p.payloadObject]));
        const cases: Array<{
          clauses: Record<string, Array<string | number | boolean>>;
          keep: (id: string) => boolean;
        }> = [
          { clauses: { group: [2] }, keep: (id) => payload.get(id)!.group === 2 },
          { clauses: { group: [1, 3] }, keep: (id) => [1, 3].includes(payload.get(id)!.group as number) },
          {
            clauses: { tags: ["three"], even: [true] },
            keep: (id) => (payload.get(id)!.tags as string[]).includes("three") && payload.get(id)!.even === true,
          },
        ];
        for (const [qi, q] of queries(5).entries()) {
          for (const c of cases) {
            const truth = exactTruth("cosine", vectors, q, K, c.keep);
            const f = filter(c.clauses);
            const exact = await b.search(q, { k: K, ef: 64, exact: true, filter: f, withVectors: false });
            assertExact(exact, truth, `query ${qi} ${JSON.stringify(c.clauses)} exact`);
            const approx = await b.search(q, { k: K, ef: 64, exact: false, filter: f, withVectors: false });
            assert.equal(approx.length, K, `k hits: ${JSON.stringify(c.clauses)}`);
            for (const hit of approx) assert.ok(c.keep(hit.id), `${hit.id} matches ${JSON.stringify(c.clauses)}`);
          }
        }
        const none = await b.search(queries(5)[0]!, {
          k: K,
          ef: 64,
          exact: false,
          filter: filter({ group: [99] }),
          withVectors: false,
        });
        assert.deepEqual(none, []);
        const few = await b.search(queries(5)[0]!, {
          k: K,
          ef: 64,
          exact: false,
          filter: filter({ group: [0], tags: ["three"], even: [false] }),
          withVectors: false,
        });
        const matching = [...vectors.keys()].filter((id) => {
          const p = payload.get(id)!;
          return p.group === 0 && (p.tags as string[]).includes("three") && p.even === false;
        });
        assert.equal(few.length, Math.min(K, matching.length));

        // A replaced payload moves the point between filter answers; a deleted one leaves them.
        await b.upsert([newPoint("p2", vectors.get("p2")!, { group: 4, tags: [], even: true })]);
        await b.delete(["p7"]);
        const g2 = await b.search(vectors.get("p2")!, {
          k: N,
          ef: 64,
          exact: true,
          filter: filter({ group: [2] }),
          withVectors: false,
        });
        assert.ok(!g2.some((x) => x.id === "p2" || x.id === "p7"));
        const g4 = await b.search(vectors.get("p2")!, {
          k: 1,
          ef: 64,
          exact: false,
          filter: filter({ group: [4] }),
          withVectors: false,
        });
        assert.equal(g4[0]?.id, "p2");
      }));

    test("payloads: hits carry the payload as written, the same as get", () =>
      withHarness(async (h) => {
        const b = await h.create(meta("payloads"));
        const { points } = corpus(6);
        const odd = newPoint("odd", points[0]!.values, { title: "Ünïcode ✓", nested: { a: [1, 2] }, n: 1.5 });
        await b.upsert([...points.slice(1), odd]);
        const hits = await b.search(odd.values, { k: 3, ef: 64, exact: false, filter: null, withVectors: false });
        assert.equal(hits[0]?.id, "odd");
        assert.equal(hits[0]?.payload, odd.payload);
        assert.equal(hits[0]?.vector, undefined, "no vector unless asked");
        for (const hit of hits) assert.equal((await b.get([hit.id], false))[0]?.payload, hit.payload);
      }));

    test("stats: the count follows inserts, replaces and deletes; the figures are finite", () =>
      withHarness(async (h) => {
        const b = await h.create(meta("stats"));
        const { points } = corpus(7);
        await b.upsert(points.slice(0, 300));
        assert.equal(b.count, 300);
        await b.upsert(points.slice(200));
        assert.equal(b.count, N);
        await b.delete(points.slice(0, 50).map((p) => p.id));
        assert.equal(b.count, N - 50);
        const stats = await b.stats();
        for (const [field, value] of Object.entries(stats)) {
          assert.ok(Number.isFinite(value) && value >= 0, `${field} = ${value}`);
        }
        assert.ok(Number.isFinite(b.walBytes) && Number.isFinite(b.indexChurn));
      }));

    test("rebuild keeps every point and the same answers", () =>
      withHarness(async (h) => {
        const b = await h.create(meta("rebuild"));
        const { points, vectors } = corpus(8);
        await b.upsert(points);
        // Churn: replaces and deletes, which the rebuild is for.
        const moved = clustered(100, DIMS, 8, 9);
        await b.upsert(moved.map((v, i) => newPoint(`p${i}`, v, { group: 9 })));
        for (const [i, v] of moved.entries()) vectors.set(`p${i}`, v);
        await b.delete(["p100", "p101"]);
        vectors.delete("p100");
        vectors.delete("p101");
        const before = await Promise.all(
          queries(10).map((q) => b.search(q, { k: K, ef: 64, exact: true, filter: null, withVectors: false })),
        );
        assert.equal(await b.rebuild(), true);
        assert.equal(b.count, vectors.size);
        for (const [qi, q] of queries(10).entries()) {
          const exact = await b.search(q, { k: K, ef: 64, exact: true, filter: null, withVectors: false });
          assert.deepEqual(exact, before[qi], `query ${qi}: the same exact answer`);
          const approx = await b.search(q, { k: K, ef: 64, exact: false, filter: null, withVectors: false });
          assert.ok(recall(approx, exactTruth("cosine", vectors, q, K)) >= 0.8, `query ${qi} after the rebuild`);
        }
        const got = await b.get(["p0", "p100"], true);
        assert.deepEqual(got[0]?.vector, moved[0]);
        assert.equal(got[0]?.payload, JSON.stringify({ group: 9 }));
        assert.equal(got[1], undefined);
      }));

    for (const snapshotFirst of [true, false]) {
      test(`close and reopen (${snapshotFirst ? "with" : "without"} a final snapshot) keeps every point, payload and answer`, () =>
        withHarness(async (h) => {
          let b = await h.create(meta("reopen", { quantization: "f16", rescore: true, oversampling: 4 }));
          const { points, vectors } = corpus(11);
          await b.upsert(points);
          await b.snapshot();
          // Written after the snapshot: only the engine's log brings these back.
          await b.upsert([newPoint("late", vectors.get("p5")!, { late: true })]);
          await b.delete(["p6"]);
          const ask = (x: CollectionBackend) =>
            Promise.all(
              queries(12).map((q) => x.search(q, { k: K, ef: 64, exact: true, filter: null, withVectors: false })),
            );
          const before = await ask(b);
          b = await h.reopen(b, snapshotFirst);
          assert.equal(b.count, N);
          assert.deepEqual(b.meta, meta("reopen", { quantization: "f16", rescore: true, oversampling: 4 }));
          const ids = [...points.map((p) => p.id), "late"];
          const got = await b.get(ids, true);
          for (const [i, p] of got.entries()) {
            const id = ids[i]!;
            if (id === "p6") {
              assert.equal(p, undefined, "deleted before the restart");
              continue;
            }
            assert.equal(p?.id, id);
            assert.deepEqual(p?.vector, vectors.get(id === "late" ? "p5" : id));
            assert.equal(p?.payload, id === "late" ? '{"late":true}' : points[i]!.payload);
          }
          assert.deepEqual(await ask(b), before);
          const top = await b.search(vectors.get("p5")!, {
            k: 2,
            ef: 64,
            exact: false,
            filter: filter({ late: [true] }),
            withVectors: false,
          });
          assert.deepEqual(
            top.map((x) => x.id),
            ["late"],
          );
        }));
    }
  });
}
