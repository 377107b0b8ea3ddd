import assert from "node:assert/strict";
import { test } from "node:test";
import { clustered, createReq, point, searchReq, startTestAnn, tempDir, unary, upsert } from "./support.js";

const D = 16;

test("alias swap under a concurrent search loop: zero failed searches, every answer from a whole generation", async () => {
  const tmp = tempDir("alias");
  const s = await startTestAnn(tmp.dir);
  try {
    const vectors = clustered(400, D, 8, 3);
    for (const gen of ["gen1", "gen2"]) {
      await unary(s.client.createCollection.bind(s.client), createReq(gen, D));
      await upsert(s.client, [{ collection: gen, points: vectors.map((v, i) => point(`${gen}-${i}`, v)) }]);
    }
    await unary(s.client.setAlias.bind(s.client), { alias: "live", collection: "gen1" });

    let stop = false;
    let ok = 0;
    const failures: unknown[] = [];
    const seen = new Set<string>();
    const searcher = async (w: number) => {
      let i = w;
      while (!stop) {
        const q = vectors[i++ % vectors.length]!;
        try {
          const res = await unary(s.client.search.bind(s.client), searchReq("live", q, { k: 5 }), { timeoutMs: 5000 });
          // Hits come from the collection that answered, never a mix.
          assert.equal(res.hits.length, 5);
          assert.ok(res.hits.every((h) => h.id.startsWith(`${res.collection}-`)));
          seen.add(res.collection);
          ok++;
        } catch (err) {
          failures.push(err);
        }
      }
    };
    const loops = Array.from({ length: 6 }, (_, w) => searcher(w));
    for (let swap = 0; swap < 60; swap++) {
      const target = swap % 2 === 0 ? "gen2" : "gen1";
      const res = await unary(s.client.setAlias.bind(s.client), { alias: "live", collection: target });
      assert.equal(res.previousCollection, target === "gen2" ? "gen1" : "gen2");
      await new Promise((r) => setTimeout(r, 10));
    }
    stop = true;
    await Promise.all(loops);
    assert.deepEqual(failures, []);
    assert.ok(ok > 100, `searches done: ${ok}`);
    assert.deepEqual([...seen].sort(), ["gen1", "gen2"]);
  } finally {
    await s.stop();
    tmp.remove();
  }
});
