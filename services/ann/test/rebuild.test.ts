// Graph rebuilds: churn (replaces, deletes) is counted, a rebuild builds a new graph on a worker
// thread while writes go on, applies those writes before the swap, and survives a restart; a
// close mid-rebuild abandons it cleanly; a restart with an unreadable snapshot index rebuilds it
// the same way; over gRPC, churn past INDEX_REBUILD_CHURN triggers one.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { ConfigError, createLogger } from "@tandem/service-kit";
import { freePort } from "../../../test/support/net.js";
import { Collection, type CollectionOptions, type NewPoint } from "../src/collection.js";
import { annConfig } from "../src/config.js";
import {
  bruteForce,
  clustered,
  createReq,
  failure,
  point,
  searchReq,
  startTestAnn,
  tempDir,
  testMeta,
  unary,
  upsert,
} from "./support.js";

const DIMS = 32;

const META = testMeta("churn", DIMS);

const OPTS: CollectionOptions = {
  log: createLogger("ann-rebuild-test", "warn"),
  maxPoints: 1_000_000,
  filterMaxStringBytes: 256,
  filterExactMax: 0,
  filterMaxOverfetch: 20_000,
  threads: 2,
  snapshotWalBytes: 0,
  faultSnapshotStallMs: 0,
  rebuildChurn: 0, // the tests below start rebuilds themselves
  rebuildMinPoints: 1,
  searchBatchMax: 64,
};

function newPoint(id: string, v: Float32Array): NewPoint {
  return { id, vector: new Uint8Array(v.buffer.slice(0)), values: v, payload: "{}", payloadObject: {} };
}

async function open(dir: string): Promise<Collection> {
  return Collection.open(dir, OPTS);
}

/** The id of the nearest point to `v` (HNSW, ef 64). */
async function top1(c: Collection, v: Float32Array): Promise<string | undefined> {
  const res = await c.search(v, { k: 1, ef: 64, exact: false, filter: null });
  return res.keys[0] === undefined ? undefined : c.entry(res.keys[0])?.id;
}

/** Writes `vectors` as points p0, p1, ... in upserts of 1,000. */
async function writeAll(c: Collection, vectors: Float32Array[]): Promise<void> {
  for (let i = 0; i < vectors.length; i += 1000) {
    await c.upsert(vectors.slice(i, i + 1000).map((v, j) => newPoint(`p${i + j}`, v)));
  }
}

/** A collection in a directory of its own, holding `vectors` as p0, p1, ...; `body` may close and reopen it through the handle. */
async function withCollection(
  name: string,
  vectors: Float32Array[],
  body: (h: { c: Collection; dir: string }) => Promise<void>,
): Promise<void> {
  const tmp = tempDir(name);
  const dir = `${tmp.dir}/churn`;
  await Collection.initialise(dir, META);
  const h = { c: await open(dir), dir };
  try {
    await writeAll(h.c, vectors);
    await body(h);
  } finally {
    await h.c.close(false);
    tmp.remove();
  }
}

/** Files a rebuild or a snapshot left behind. */
const leftovers = (dir: string) => readdirSync(dir).filter((f) => f.endsWith(".tmp"));

describe("ann: index rebuilds", () => {
  test("writes made during a rebuild are in the new graph; churn is counted and reset; a restart keeps it all", async () => {
    const N = 8000;
    const base = clustered(N + 200, DIMS, 80, 7);
    await withCollection("rebuild", base.slice(0, N), async (h) => {
      const c = h.c;
      const live = new Map<string, Float32Array>();
      for (let i = 0; i < N; i++) live.set(`p${i}`, base[i]!);
      assert.equal(c.stats().indexChurn, 0, "first writes are not churn");

      // Replace half of the points with other vectors: churn 4,000.
      const moved = clustered(N / 2, DIMS, 80, 8);
      await writeAll(c, moved);
      for (let i = 0; i < N / 2; i++) live.set(`p${i}`, moved[i]!);
      assert.equal(c.stats().indexChurn, N / 2);

      let swapped = false;
      const rebuild = c.rebuild().then((done) => {
        swapped = true;
        return done;
      });
      assert.equal(c.rebuild(), c.rebuild(), "concurrent calls share one run");
      // Meanwhile: new points, deletes and replaces.
      const fresh = base.slice(N, N + 100).map((v, j) => newPoint(`new${j}`, v));
      await c.upsert(fresh);
      for (const p of fresh) live.set(p.id, p.values);
      const deleted = Array.from({ length: 50 }, (_, j) => `p${N - 1 - j}`);
      assert.equal(await c.delete(deleted), 50);
      for (const id of deleted) live.delete(id);
      const replaced = base.slice(N + 100, N + 150).map((v, j) => newPoint(`p${N / 2 + j}`, v));
      await c.upsert(replaced);
      for (const p of replaced) live.set(p.id, p.values);
      assert.equal(swapped, false, "the writes landed while the rebuild was running");

      assert.equal(await rebuild, true);
      const stats = c.stats();
      assert.ok(stats.lastRebuildMs > 0);
      assert.equal(
        stats.indexChurn,
        100,
        "churn from before the rebuild is reset; the 50 deletes + 50 replaces during it stay",
      );
      assert.equal(c.count, live.size);

      const check = async (col: Collection) => {
        // All at once, as concurrent requests would: the searches go through the batcher.
        const tops = await Promise.all([...live].map(([, v]) => top1(col, v)));
        let found = 0;
        [...live.keys()].forEach((id, i) => {
          if (tops[i] === id) found++;
        });
        // Each point is its own nearest neighbour; HNSW at ef 64 finds nearly all of them.
        assert.ok(found / live.size >= 0.99, `${found} of ${live.size} points are their own nearest neighbour`);
        for (const id of deleted) assert.equal(col.keyOf(id), undefined);
        for (const p of [...fresh, ...replaced]) assert.equal(await top1(col, p.values), p.id, `${p.id} is searchable`);
        const points = [...live].map(([id, vector]) => ({ id, vector }));
        let hits = 0;
        const queries = clustered(50, DIMS, 80, 9);
        for (const q of queries) {
          const truth = new Set(bruteForce(points, q, 10).map((p) => p.id));
          const got = await col.search(q, { k: 10, ef: 64, exact: false, filter: null });
          for (const key of got.keys) if (truth.has(col.entry(key)?.id ?? "")) hits++;
        }
        assert.ok(hits / (queries.length * 10) >= 0.95, `recall@10 ${hits / (queries.length * 10)}`);
      };
      await check(c);
      assert.deepEqual(leftovers(h.dir), [], "the rebuild's file is gone");

      await c.close(true);
      h.c = await open(h.dir);
      assert.equal(h.c.count, live.size);
      await check(h.c);
    });
  });

  test("a close during a rebuild abandons it: no error, no file left, the data intact", async () => {
    const vs = clustered(6000, DIMS, 60, 11);
    await withCollection("rebuild-close", vs, async (h) => {
      const rebuild = h.c.rebuild();
      await h.c.close(true);
      assert.equal(await rebuild, false, "the rebuild reports that it did not swap");
      assert.deepEqual(leftovers(h.dir), []);
      await assert.rejects(h.c.rebuild(), /closed/, "a closed collection refuses a rebuild");
      h.c = await open(h.dir);
      assert.equal(h.c.count, vs.length);
      assert.equal(await top1(h.c, vs[123]!), "p123");
    });
  });

  test("a restart whose snapshot index is unreadable rebuilds the graph from the store", async () => {
    const vs = clustered(3000, DIMS, 30, 31);
    await withCollection("rebuild-restart", vs, async (h) => {
      await h.c.close(true);
      const { indexFile } = JSON.parse(readFileSync(`${h.dir}/snapshot.json`, "utf8")) as { indexFile: string };
      writeFileSync(`${h.dir}/${indexFile}`, "not a usearch file");
      h.c = await open(h.dir);
      assert.equal(h.c.count, vs.length);
      const reopened = h.c;
      const tops = await Promise.all(vs.map((v) => top1(reopened, v)));
      const found = tops.filter((id, i) => id === `p${i}`).length;
      assert.ok(found / vs.length >= 0.99, `${found} of ${vs.length} points are their own nearest neighbour`);
      assert.deepEqual(leftovers(h.dir), []);
    });
  });

  test("over gRPC: churn past INDEX_REBUILD_CHURN rebuilds the graph; Stats and /metrics show it", async () => {
    const tmp = tempDir("rebuild-grpc");
    const metricsPort = await freePort();
    const ann = await startTestAnn(tmp.dir, {
      INDEX_REBUILD_CHURN: "0.5",
      INDEX_REBUILD_MIN_POINTS: "1000",
      METRICS_PORT: String(metricsPort),
    });
    const churnGauge = async () => {
      const scrape = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      return Number(/^ann_index_churn\{collection="g",[^}]*\} (\d+)/m.exec(scrape)?.[1]);
    };
    try {
      await unary(ann.client.createCollection.bind(ann.client), createReq("g", DIMS));
      const vs = clustered(1200, DIMS, 40, 21);
      const all = vs.map((v, i) => point(`p${i}`, v));
      await upsert(ann.client, [
        { collection: "g", points: all.slice(0, 600) },
        { collection: "g", points: all.slice(600) },
      ]);
      const stats = () => unary(ann.client.stats.bind(ann.client), { collection: "g" });
      // 599 replaces: just under half of 1,200, no rebuild.
      const moved = clustered(600, DIMS, 40, 22);
      await upsert(ann.client, [{ collection: "g", points: moved.slice(0, 599).map((v, i) => point(`p${i}`, v)) }]);
      let s = await stats();
      assert.equal(s.indexChurn, 599);
      assert.equal(s.lastRebuildMs, 0);
      assert.equal(await churnGauge(), 599, "the ann_index_churn gauge");
      // One more reaches the threshold.
      await upsert(ann.client, [{ collection: "g", points: [point("p599", moved[599]!)] }]);
      const deadline = Date.now() + 60_000;
      for (s = await stats(); s.lastRebuildMs === 0; s = await stats()) {
        assert.ok(Date.now() < deadline, "no rebuild within 60 s");
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(s.indexChurn, 0);
      assert.equal(await churnGauge(), 0);
      assert.equal(s.info?.count, 1200);
      const res = await unary(ann.client.search.bind(ann.client), searchReq("g", moved[5]!, { k: 1 }));
      assert.equal(res.hits[0]?.id, "p5", "a replaced point is found at its new vector");
      const kept = await unary(ann.client.search.bind(ann.client), searchReq("g", vs[900]!, { k: 1 }));
      assert.equal(kept.hits[0]?.id, "p900");
    } finally {
      await ann.stop();
      tmp.remove();
    }
  });

  test("RebuildIndex over gRPC: Stats shows its progress, it answers after the swap; an unknown name is NOT_FOUND", async () => {
    const tmp = tempDir("rebuild-rpc");
    const ann = await startTestAnn(tmp.dir, { INDEX_REBUILD_CHURN: "0" });
    try {
      await unary(ann.client.createCollection.bind(ann.client), createReq("r", DIMS));
      const vs = clustered(8000, DIMS, 60, 41);
      const all = vs.map((v, i) => point(`p${i}`, v));
      await upsert(
        ann.client,
        Array.from({ length: 8 }, (_, m) => ({ collection: "r", points: all.slice(m * 1000, (m + 1) * 1000) })),
      );
      await unary(ann.client.setAlias.bind(ann.client), { alias: "live", collection: "r" });
      const stats = () => unary(ann.client.stats.bind(ann.client), { collection: "r" });

      let answered = false;
      const call = unary(ann.client.rebuildIndex.bind(ann.client), { collection: "live" }).finally(() => {
        answered = true;
      });
      const seen: Array<{ inserted: number; total: number }> = [];
      while (!answered) {
        const s = await stats();
        if (s.rebuildTotal > 0) seen.push({ inserted: s.rebuildInserted, total: s.rebuildTotal });
        await new Promise((r) => setTimeout(r, 5));
      }
      const res = await call;
      assert.equal(res.collection, "r", "the alias is resolved");
      assert.equal(res.points, 8000);
      assert.ok(seen.length > 0, "Stats showed the rebuild while it ran");
      for (const p of seen) {
        assert.equal(p.total, 8000);
        assert.ok(p.inserted <= p.total);
      }
      const after = await stats();
      assert.equal(after.rebuildTotal, 0);
      assert.ok(after.lastRebuildMs > 0);
      const hit = await unary(ann.client.search.bind(ann.client), searchReq("live", vs[4321]!, { k: 1 }));
      assert.equal(hit.hits[0]?.id, "p4321");

      const unknown = await failure(unary(ann.client.rebuildIndex.bind(ann.client), { collection: "nope" }));
      assert.equal(unknown.code, status.NOT_FOUND);
    } finally {
      await ann.stop();
      tmp.remove();
    }
  });

  test("below INDEX_REBUILD_MIN_POINTS any churn leaves the graph alone; at it the threshold applies", async () => {
    const vs = clustered(400, DIMS, 20, 51);
    const tmp = tempDir("rebuild-min");
    const dir = `${tmp.dir}/churn`;
    await Collection.initialise(dir, META);
    const c = await Collection.open(dir, { ...OPTS, rebuildChurn: 0.5, rebuildMinPoints: 500 });
    try {
      await writeAll(c, vs);
      await writeAll(c, clustered(400, DIMS, 20, 52)); // every point replaced: churn 400 of 400
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(c.stats().indexChurn, 400);
      assert.equal(c.stats().lastRebuildMs, 0, "400 points < INDEX_REBUILD_MIN_POINTS=500: no rebuild");
      // 600 points now, churn 400 >= 0.5 x 600: the write that crosses the size starts one.
      await c.upsert(clustered(200, DIMS, 20, 53).map((v, j) => newPoint(`n${j}`, v)));
      const deadline = Date.now() + 30_000;
      while (c.stats().lastRebuildMs === 0) {
        assert.ok(Date.now() < deadline, "no rebuild within 30 s");
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(c.stats().indexChurn, 0);
    } finally {
      await c.close(false);
      tmp.remove();
    }
  });

  test("the rebuild and batching variables are checked at start-up, naming the variable", () => {
    const bad: Array<[string, string]> = [
      ["INDEX_REBUILD_CHURN", "-1"],
      ["INDEX_REBUILD_CHURN", "lots"],
      ["INDEX_REBUILD_MIN_POINTS", "0"],
      ["SEARCH_BATCH_MAX", "0"],
      ["SEARCH_BATCH_MAX", "5000"],
    ];
    for (const [name, value] of bad) {
      assert.throws(
        () => annConfig({ [name]: value }),
        (err: unknown) => err instanceof ConfigError && err.message.includes(`${name}=`),
        `${name}=${value} is refused`,
      );
    }
    const ok = annConfig({ INDEX_REBUILD_CHURN: "0", SEARCH_BATCH_MAX: "1" });
    assert.equal(ok.INDEX_REBUILD_CHURN, 0);
    assert.equal(ok.SEARCH_BATCH_MAX, 1);
  });
});
