import assert from "node:assert/strict";
import { appendFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { type AnnClient, decodeVector } from "@tandem/proto";
import {
  type Child,
  createReq,
  kill9,
  point,
  rng,
  searchReq,
  spawnAnn,
  startTestAnn,
  tempDir,
  unary,
  upsert,
} from "./support.js";

const D = 32;

/** The vector of point n: recomputable by the checker, different for every n. */
function vectorOf(n: number): Float32Array {
  const r = rng(n + 1);
  return Float32Array.from({ length: D }, () => r() - 0.5);
}

async function expectAll(client: AnnClient, collection: string, ids: number[]): Promise<void> {
  for (let i = 0; i < ids.length; i += 500) {
    const chunk = ids.slice(i, i + 500);
    const got = await unary(
      client.get.bind(client),
      { collection, ids: chunk.map((n) => `p-${n}`), withVectors: true },
      { timeoutMs: 30_000 },
    );
    assert.deepEqual(got.missing, [], `acknowledged ids missing after restart: ${got.missing.slice(0, 5).join(", ")}`);
    for (const p of got.points) {
      const n = Number(p.id.slice(2));
      assert.deepEqual(decodeVector(p.vector, D), vectorOf(n), `vector of ${p.id}`);
      assert.deepEqual(JSON.parse(p.payloadJson), { n });
    }
  }
}

function walFiles(dir: string, collection: string): string[] {
  return readdirSync(join(dir, "collections", collection, "wal")).sort();
}

describe("ann: restart = snapshot + WAL replay (in-process)", () => {
  test("writes survive a restart without snapshot, with snapshot, and WAL after a snapshot", async () => {
    const tmp = tempDir("restart");
    try {
      let s = await startTestAnn(tmp.dir, { SNAPSHOT_ON_SHUTDOWN: "false" });
      await unary(s.client.createCollection.bind(s.client), createReq("c", D));
      await upsert(s.client, [
        { collection: "c", points: [0, 1, 2, 3].map((n) => point(`p-${n}`, vectorOf(n), { n })) },
      ]);
      await unary(s.client.delete.bind(s.client), { collection: "c", ids: ["p-3"] });
      await s.stop();

      s = await startTestAnn(tmp.dir, { SNAPSHOT_ON_SHUTDOWN: "true" });
      await expectAll(s.client, "c", [0, 1, 2]);
      const gone = await unary(s.client.get.bind(s.client), { collection: "c", ids: ["p-3"], withVectors: false });
      assert.deepEqual(gone.missing, ["p-3"]);
      await upsert(s.client, [{ collection: "c", points: [4, 5].map((n) => point(`p-${n}`, vectorOf(n), { n })) }]);
      await s.stop(); // final snapshot: the WAL it covers is deleted, a fresh empty segment remains
      const left = walFiles(tmp.dir, "c");
      assert.equal(left.length, 1);
      assert.equal(statSync(join(tmp.dir, "collections", "c", "wal", left[0]!)).size, 0);

      s = await startTestAnn(tmp.dir, { SNAPSHOT_ON_SHUTDOWN: "false" });
      await expectAll(s.client, "c", [0, 1, 2, 4, 5]);
      await upsert(s.client, [{ collection: "c", points: [6, 7].map((n) => point(`p-${n}`, vectorOf(n), { n })) }]);
      // Replace after the snapshot: the replay must end with the new value.
      await upsert(s.client, [{ collection: "c", points: [point("p-0", vectorOf(100), { n: 100 })] }]);
      await s.stop();

      s = await startTestAnn(tmp.dir);
      await expectAll(s.client, "c", [1, 2, 4, 5, 6, 7]);
      const replaced = await unary(s.client.get.bind(s.client), { collection: "c", ids: ["p-0"], withVectors: true });
      assert.deepEqual(decodeVector(replaced.points[0]!.vector, D), vectorOf(100));
      const hit = await unary(s.client.search.bind(s.client), searchReq("c", vectorOf(100), { k: 1 }));
      assert.equal(hit.hits[0]?.id, "p-0");
      const stats = await unary(s.client.stats.bind(s.client), { collection: "c" });
      assert.equal(stats.info?.count, 7);
      // Fresh ids after restarts never collide with stored keys.
      await upsert(s.client, [{ collection: "c", points: [8].map((n) => point(`p-${n}`, vectorOf(n), { n })) }]);
      await expectAll(s.client, "c", [1, 2, 4, 5, 6, 7, 8]);
      await s.stop();
    } finally {
      tmp.remove();
    }
  });

  test("a torn WAL tail is detected by its checksum, dropped, and the log stays appendable", async () => {
    const tmp = tempDir("torn");
    try {
      let s = await startTestAnn(tmp.dir, { SNAPSHOT_ON_SHUTDOWN: "false" });
      await unary(s.client.createCollection.bind(s.client), createReq("c", D));
      await upsert(s.client, [{ collection: "c", points: [0, 1].map((n) => point(`p-${n}`, vectorOf(n), { n })) }]);
      await s.stop();
      const wal = join(tmp.dir, "collections", "c", "wal");
      const last = join(wal, walFiles(tmp.dir, "c").at(-1)!);
      const good = statSync(last).size;
      assert.ok(good > 0);
      // A frame header promising 1000 bytes followed by only 10: a write cut short by a crash.
      const header = Buffer.alloc(8);
      header.writeUInt32LE(1000, 0);
      header.writeUInt32LE(12345, 4);
      appendFileSync(last, Buffer.concat([header, Buffer.alloc(10, 7)]));

      s = await startTestAnn(tmp.dir, { SNAPSHOT_ON_SHUTDOWN: "false" });
      await expectAll(s.client, "c", [0, 1]);
      assert.equal(statSync(last).size, good, "torn tail truncated");
      await upsert(s.client, [{ collection: "c", points: [point("p-2", vectorOf(2), { n: 2 })] }]);
      await s.stop();

      // A whole frame with a wrong checksum (bit rot in the last record) is dropped too.
      const newest = join(wal, walFiles(tmp.dir, "c").at(-1)!);
      const frame = Buffer.alloc(8 + 4);
      frame.writeUInt32LE(4, 0);
      frame.writeUInt32LE(0xdeadbeef, 4);
      appendFileSync(newest, frame);
      s = await startTestAnn(tmp.dir);
      await expectAll(s.client, "c", [0, 1, 2]);
      await s.stop();
    } finally {
      tmp.remove();
    }
  });
});

// ---- the real process, killed with SIGKILL ------------------------------

/**
 * Concurrent upsert streams of fresh points until `until` resolves; returns
 * the ids whose Upsert call was acknowledged.
 */
async function writeLoad(
  client: AnnClient,
  next: { n: number },
  until: Promise<unknown>,
  onAck: (count: number) => void = () => undefined,
): Promise<number[]> {
  const acked: number[] = [];
  let stop = false;
  void until.then(
    () => {
      stop = true;
    },
    () => {
      stop = true;
    },
  );
  const writer = async () => {
    while (!stop) {
      const batch = Array.from({ length: 2 }, () =>
        Array.from({ length: 25 }, () => {
          const n = next.n++;
          return n;
        }),
      );
      try {
        await upsert(
          client,
          batch.map((ns) => ({ collection: "c", points: ns.map((n) => point(`p-${n}`, vectorOf(n), { n })) })),
          10_000,
        );
        acked.push(...batch.flat());
        onAck(acked.length);
      } catch {
        return; // the server died: unacknowledged writes may or may not exist
      }
    }
  };
  await Promise.all(Array.from({ length: 4 }, writer));
  return acked;
}

describe("ann: SIGKILL of the real server process loses no acknowledged write", () => {
  test("kill -9 mid-stream, mid-snapshot, and at random points with frequent snapshots", async () => {
    const tmp = tempDir("crash");
    const next = { n: 0 };
    const acked: number[] = [];
    // Killed in `finally` too: a live server left by a failed assertion would keep the test running.
    let child: Child | null = null;
    try {
      // 1. Killed in the middle of a stream of upserts.
      const first = await spawnAnn(tmp.dir);
      child = first;
      await unary(first.client.createCollection.bind(first.client), createReq("c", D));
      // Killed once a few hundred writes are acknowledged, not after a fixed time: on a loaded machine
      // 1.5 s may hold only a few dozen. The minute's cap turns a server that never acknowledges into
      // the assertion below instead of a hang.
      let enough = (): void => undefined;
      const acknowledged = new Promise<void>((r) => {
        enough = r;
      });
      const cap = new Promise<void>((r) => setTimeout(r, 60_000).unref());
      let killAt = Promise.race([acknowledged, cap]).then(() => kill9(first));
      acked.push(...(await writeLoad(child.client, next, killAt, (count) => count > 300 && enough())));
      await killAt;
      assert.ok(acked.length > 200, `acknowledged before the kill: ${acked.length}`);

      // 2. Killed inside a snapshot: index temp file written, nothing committed.
      const stalling = await spawnAnn(tmp.dir, { SNAPSHOT_WAL_BYTES: "65536", FAULT_SNAPSHOT_STALL_MS: "30000" });
      child = stalling;
      await expectAll(stalling.client, "c", acked);
      killAt = stalling.waitFor(/stalling before the commit/).then(() => kill9(stalling));
      acked.push(...(await writeLoad(child.client, next, killAt)));
      await killAt;
      assert.ok(
        readdirSync(join(tmp.dir, "collections", "c")).some((f) => f.endsWith(".usearch.tmp")),
        "killed while the snapshot's temp file existed",
      );

      // 3. Frequent snapshots, killed at random moments.
      const r = rng(42);
      for (let round = 0; round < 3; round++) {
        child = await spawnAnn(tmp.dir, { SNAPSHOT_WAL_BYTES: "32768" });
        await expectAll(child.client, "c", acked);
        const c = child;
        // Snapshots run on a graph thread while writes go on: each round lets one commit, then
        // kills at a random moment of the writes and snapshots that follow.
        const delay = 300 + r() * 900;
        killAt = c
          .waitFor(/"snapshot committed"/)
          .then(() => new Promise((res) => setTimeout(res, delay)))
          .then(() => kill9(c));
        acked.push(...(await writeLoad(child.client, next, killAt)));
        await killAt;
      }
      assert.ok(
        child.lines.some((l) => l.includes('"snapshot committed"')),
        "snapshots were committed between the kills",
      );

      child = await spawnAnn(tmp.dir);
      await expectAll(child.client, "c", acked);
      const stats = await unary(child.client.stats.bind(child.client), { collection: "c" });
      assert.ok(stats.info!.count >= acked.length && stats.info!.count <= next.n);
      const some = acked[Math.floor(acked.length / 2)]!;
      const hit = await unary(child.client.search.bind(child.client), searchReq("c", vectorOf(some), { k: 1 }));
      assert.equal(hit.hits[0]?.id, `p-${some}`);
    } finally {
      if (child) await kill9(child);
      tmp.remove();
    }
  });
});
