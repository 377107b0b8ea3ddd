// Quantised graphs with exact rescoring: an i8 graph alone misorders points closer together
// than its resolution, and rescoring against the stored float32 originals gives back exact
// search's top-k; the settings are refused where they would do nothing; a quantised collection
// comes back from kill -9 with its originals and its settings.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { type AnnClient, type CreateCollectionRequest, decodeVector, type IndexParams, Metric } from "@tandem/proto";
import {
  createReq,
  failure,
  gaussian,
  kill9,
  normalize,
  point,
  rng,
  searchReq,
  spawnAnn,
  startTestAnn,
  tempDir,
  unary,
  upsert,
} from "./support.js";

const D = 64;
const K = 10;

function params(extra: Partial<IndexParams>): IndexParams {
  return { m: 16, efConstruction: 128, efSearch: 64, quantization: "f32", ...extra };
}

/**
 * Per query: 30 points within a hair of it (cosines 1 - 5e-7 .. 1 - 5e-4, graded, so exact
 * search has one clear order), far inside one i8 step (1/127 per component), and random points
 * far from every query. The graph finds the 30 near ones, but in an order the rounding decides.
 */
function nearDuplicates(queries: number, seed: number) {
  const rand = rng(seed);
  const randomUnit = () => normalize(Float32Array.from({ length: D }, () => gaussian(rand)));
  const qs = Array.from({ length: queries }, randomUnit);
  const points: Array<{ id: string; vector: Float32Array }> = [];
  qs.forEach((q, qi) => {
    for (let i = 0; i < 30; i++) {
      const t = 0.001 * (i + 1);
      const u = randomUnit();
      points.push({ id: `q${qi}-n${i}`, vector: normalize(q.map((x, j) => x + t * u[j]!)) });
    }
  });
  for (let i = 0; i < 300; i++) points.push({ id: `far${i}`, vector: randomUnit() });
  return { qs, points };
}

async function create(client: AnnClient, req: CreateCollectionRequest) {
  return unary(client.createCollection.bind(client), req);
}

async function topIds(client: AnnClient, collection: string, q: Float32Array, exact = false) {
  const res = await unary(client.search.bind(client), searchReq(collection, q, { k: K, exact }));
  return res.hits;
}

describe("ann: quantised graphs with exact rescoring", () => {
  test("an i8 graph misorders near-duplicates; rescored, it answers exact search's top-k and scores", async () => {
    const tmp = tempDir("rescore");
    // FILTER_EXACT_MAX=0: a filtered search goes through the graph, however few points match.
    const s = await startTestAnn(tmp.dir, { FILTER_EXACT_MAX: "0" });
    try {
      const { qs, points } = nearDuplicates(8, 3);
      const variants: Array<[string, Partial<IndexParams>]> = [
        ["graph", { quantization: "i8", rescore: false }],
        ["rescored", { quantization: "i8" }],
        ["half", { quantization: "f16", oversampling: 3 }],
      ];
      for (const [name, p] of variants) {
        await create(s.client, createReq(name, D, { index: params(p) }));
        await upsert(s.client, [{ collection: name, points: points.map((x) => point(x.id, x.vector)) }]);
      }
      let graphMisses = 0;
      for (const q of qs) {
        const exact = await topIds(s.client, "rescored", q, true);
        const graph = await topIds(s.client, "graph", q);
        if (graph.map((h) => h.id).join() !== exact.map((h) => h.id).join()) graphMisses++;
        for (const name of ["rescored", "half"]) {
          const got = await topIds(s.client, name, q);
          assert.deepEqual(
            got.map((h) => h.id),
            exact.map((h) => h.id),
            `${name}: the exact top-${K}, in its order`,
          );
          got.forEach((h, i) => {
            assert.ok(Math.abs(h.score - exact[i]!.score) < 1e-6, `${name}: exact score of ${h.id}`);
          });
        }
      }
      // The case shows something only if the graph alone gets it wrong.
      assert.ok(graphMisses >= qs.length / 2, `the i8 graph alone misordered ${graphMisses} of ${qs.length} queries`);

      // The same holds through a filter (over-fetch, then rescoring of the matches).
      await create(s.client, createReq("tagged", D, { index: params({ quantization: "i8" }) }));
      await upsert(s.client, [
        {
          collection: "tagged",
          points: points.map((x, i) => point(x.id, x.vector, { parity: i % 2 })),
        },
      ]);
      const filter = [{ field: "parity", anyOf: [{ kind: { $case: "numberValue" as const, value: 0 } }] }];
      for (const q of qs.slice(0, 3)) {
        const exact = await unary(
          s.client.search.bind(s.client),
          searchReq("tagged", q, { k: K, exact: true, filter }),
        );
        const got = await unary(s.client.search.bind(s.client), searchReq("tagged", q, { k: K, filter }));
        assert.deepEqual(
          got.hits.map((h) => h.id),
          exact.hits.map((h) => h.id),
        );
      }
    } finally {
      await s.stop();
      tmp.remove();
    }
  });

  test("settings are reported, defaulted for the quantised kinds, and refused where they would do nothing", async () => {
    const tmp = tempDir("rescore-refusals");
    const s = await startTestAnn(tmp.dir);
    try {
      const i8 = await create(s.client, createReq("i8", D, { index: params({ quantization: "i8" }) }));
      assert.equal(i8.index?.rescore, true, "rescoring is on by default for i8");
      assert.equal(i8.index?.oversampling, 4);
      const f16 = await create(
        s.client,
        createReq("f16", D, { index: params({ quantization: "f16", rescore: false }) }),
      );
      assert.equal(f16.index?.rescore, false);
      assert.equal(f16.index?.oversampling, undefined);
      const wide = await create(
        s.client,
        createReq("wide", D, { index: params({ quantization: "i8", oversampling: 1.5 }) }),
      );
      assert.equal(wide.index?.oversampling, 1.5);
      const listed = await unary(s.client.listCollections.bind(s.client), {});
      assert.deepEqual(
        listed.collections.map((c) => [c.name, c.index?.quantization, c.index?.rescore, c.index?.oversampling]),
        [
          ["f16", "f16", false, undefined],
          ["i8", "i8", true, 4],
          ["wide", "i8", true, 1.5],
        ],
      );

      const refused: Array<[Partial<IndexParams>, RegExp]> = [
        [{ quantization: "i4" }, /quantization must be f32, f16 or i8, not "i4"/],
        [
          { quantization: "f32", rescore: true },
          /rescore=true does nothing with quantization=f32.*choose quantization f16 or i8/,
        ],
        [{ oversampling: 4 }, /oversampling=4 applies only to rescoring, which quantization=f32 does not need/],
        [
          { quantization: "i8", rescore: false, oversampling: 2 },
          /rescore=false; set rescore to true or leave oversampling unset/,
        ],
        [{ quantization: "i8", oversampling: 0.5 }, /oversampling must be a number in \[1, 64\].*not 0\.5/],
        [{ quantization: "f16", oversampling: Number.NaN }, /oversampling must be a number in \[1, 64\].*not NaN/],
        [{ quantization: "i8", oversampling: 100 }, /not 100; for more, search with exact: true/],
      ];
      for (const [p, message] of refused) {
        const err = await failure(create(s.client, createReq("bad", D, { index: params(p) })));
        assert.equal(err.code, status.INVALID_ARGUMENT, JSON.stringify(p));
        assert.match(err.details, message);
      }
      const l2 = await failure(
        create(s.client, createReq("bad", D, { metric: Metric.METRIC_L2, index: params({ quantization: "i8" }) })),
      );
      assert.equal(l2.code, status.INVALID_ARGUMENT);
      assert.match(l2.details, /i8 is only supported with the cosine metric/);
      const names = (await unary(s.client.listCollections.bind(s.client), {})).collections.map((c) => c.name);
      assert.deepEqual(names, ["f16", "i8", "wide"], "nothing refused was created");
    } finally {
      await s.stop();
      tmp.remove();
    }
  });

  test("a quantised collection survives kill -9 with its float32 originals, its settings and its rescoring", async () => {
    const tmp = tempDir("rescore-kill");
    const { qs, points } = nearDuplicates(4, 11);
    const vectors = new Map(points.map((p) => [p.id, p.vector]));
    // Small WAL segments: part of the data comes back from snapshots, the rest from the WAL.
    const env = { SNAPSHOT_WAL_BYTES: "16384" };
    let child = await spawnAnn(tmp.dir, env);
    try {
      await create(child.client, createReq("q", D, { index: params({ quantization: "i8", oversampling: 3 }) }));
      for (let i = 0; i < points.length; i += 20) {
        await upsert(child.client, [
          { collection: "q", points: points.slice(i, i + 20).map((x) => point(x.id, x.vector, { i })) },
        ]);
      }
      const before = await Promise.all(qs.map((q) => topIds(child.client, "q", q)));
      await child.waitFor(/"snapshot committed"/);
      await kill9(child);

      child = await spawnAnn(tmp.dir, env);
      const info = await unary(child.client.stats.bind(child.client), { collection: "q" });
      assert.equal(info.info?.count, points.length);
      assert.equal(info.info?.index?.quantization, "i8");
      assert.equal(info.info?.index?.rescore, true);
      assert.equal(info.info?.index?.oversampling, 3);
      for (let i = 0; i < points.length; i += 200) {
        const ids = points.slice(i, i + 200).map((p) => p.id);
        const got = await unary(child.client.get.bind(child.client), { collection: "q", ids, withVectors: true });
        assert.deepEqual(got.missing, []);
        for (const p of got.points) {
          assert.deepEqual(
            decodeVector(p.vector, D),
            vectors.get(p.id),
            `the float32 original of ${p.id}, bit for bit`,
          );
        }
      }
      for (const [i, q] of qs.entries()) {
        const exact = await topIds(child.client, "q", q, true);
        const got = await topIds(child.client, "q", q);
        assert.deepEqual(
          got.map((h) => h.id),
          exact.map((h) => h.id),
          "rescored after the restart",
        );
        assert.deepEqual(
          got.map((h) => h.id),
          before[i]!.map((h) => h.id),
          "the same answer as before the kill",
        );
      }
    } finally {
      await kill9(child);
      tmp.remove();
    }
  });
});
