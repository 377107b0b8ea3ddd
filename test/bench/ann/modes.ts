// The ANN service's graph precisions side by side (`pnpm bench:ann --modes f32,f16,i8`): per mode,
// the service in its own process, fed over gRPC; recall@10 (rescored for f16 and i8, with the
// service's default oversampling), QPS at 1 and `concurrency` clients, resident memory per vector,
// and one snapshot under search load: how long it took, the event loop's longest stall meanwhile
// (the service measures it), and the longest search a client waited. For comparison, the same
// graph saved in one native call, which is how long a snapshot held the event loop before
// snapshots moved to a graph thread.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { usearch } from "@tandem/ann";
import { Metric } from "@tandem/proto";
import { unary } from "@tandem/service-kit";
import { annClient } from "../../support/grpc.js";
import { freePort } from "../../support/net.js";
import { startServiceProcess } from "../../support/process.js";
import { row } from "./data.js";
import {
  benchServiceEnv,
  ingest,
  type Measure,
  pct,
  RESTART_MS,
  residentMb,
  searchLoad,
  searchReq,
} from "./service.js";

export type Mode = "f32" | "f16" | "i8";

export interface ModesBench {
  modes: Mode[];
  base: Float32Array;
  queries: Float32Array;
  n: number;
  dims: number;
  nq: number;
  k: number;
  efs: number[];
  m: number;
  efc: number;
  requests: number;
  concurrency: number;
  recallOf: (q: number, rows: number[]) => number;
  log: (msg: string) => void;
}

const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

/** Points replaced under search load to make the snapshot's work: 2 % of the collection, at least 200. */
const deltaOf = (n: number) => Math.min(n, Math.max(200, Math.round(n * 0.02)));

async function benchMode(b: ModesBench, mode: Mode) {
  const dataDir = mkdtempSync(join(tmpdir(), `bench-ann-${mode}-`));
  const port = await freePort();
  const env = benchServiceEnv(dataDir, { SNAPSHOT_WAL_BYTES: "0" });
  const entry = "services/ann/src/main.ts";
  let svc = await startServiceProcess(entry, port, env);
  let client = annClient(port);
  const call = <Req, Res>(method: Parameters<typeof unary<Req, Res>>[0], req: Req) =>
    unary(method, req, { timeoutMs: 600_000 });
  try {
    const empty = residentMb(svc.child.pid!);
    const created = await call(client.createCollection.bind(client), {
      name: "bench",
      space: `synthetic/${b.dims}`,
      dims: b.dims,
      metric: Metric.METRIC_COSINE,
      index: { m: b.m, efConstruction: b.efc, efSearch: 64, quantization: mode },
    });
    b.log(`${mode}: ingesting ${b.n} points over gRPC`);
    const ingestS = await ingest(client, "bench", b.base, b.dims, 0, b.n);
    const runs: Array<{ ef: number; one: Measure; many: Measure }> = [];
    const load = (ef: number, clients: number, total: number) =>
      searchLoad(client, {
        collection: "bench",
        ef,
        k: b.k,
        clients,
        total,
        nq: b.nq,
        query: (q) => row(b.queries, q, b.dims),
        recallOf: b.recallOf,
      });
    await load(b.efs[0]!, 4, 200); // warm the channel and the pages
    for (const ef of b.efs) {
      b.log(`${mode}: ef=${ef}`);
      runs.push({ ef, one: await load(ef, 1, b.requests), many: await load(ef, b.concurrency, b.requests) });
    }
    // After the searches: rescoring has read (mapped in) the originals it needed.
    const loaded = residentMb(svc.child.pid!);
    const stats = await call(client.stats.bind(client), { collection: "bench" });

    // A snapshot under search load. The restart loads the shutdown snapshot; replacing 2 % of
    // the points then passes SNAPSHOT_WAL_BYTES, and the snapshot starts on its graph thread
    // (the previous graph + those points) while the clients keep searching.
    client.close();
    await svc.stop(600_000);
    const delta = deltaOf(b.n);
    const walBytes = Math.floor(delta * (4 * b.dims + 24) * 0.9);
    svc = await startServiceProcess(
      entry,
      port,
      { ...env, SNAPSHOT_WAL_BYTES: String(walBytes) },
      { timeoutMs: RESTART_MS },
    );
    client = annClient(port);
    await load(b.efs[0]!, 4, 200);
    let snapshotted = false;
    const lat: number[] = [];
    const searching = Array.from({ length: b.concurrency }, async (_, c) => {
      for (let i = c; !snapshotted; i += b.concurrency) {
        const t = performance.now();
        await unary(client.search.bind(client), searchReq("bench", row(b.queries, i % b.nq, b.dims), b.k, 64), {
          timeoutMs: 30_000,
        });
        lat.push(performance.now() - t);
      }
    });
    b.log(`${mode}: replacing ${delta} points, snapshot under ${b.concurrency} search clients`);
    // Rows from the far end of the data under the ids of the first ones: replaces, as churn is.
    await ingest(client, "bench", b.base, b.dims, b.n - delta, b.n, (r) => r - (b.n - delta));
    let snap = await call(client.stats.bind(client), { collection: "bench" });
    while (snap.lastSnapshotTookMs === 0) {
      await new Promise((r) => setTimeout(r, 100));
      snap = await call(client.stats.bind(client), { collection: "bench" });
    }
    snapshotted = true;
    await Promise.all(searching);
    client.close();
    await svc.stop(600_000);

    // The old way, for comparison: the same graph saved in one native call on this thread.
    const manifest = JSON.parse(readFileSync(join(dataDir, "collections", "bench", "snapshot.json"), "utf8")) as {
      indexFile: string;
    };
    const graph = new usearch.Index({
      dimensions: b.dims,
      metric: usearch.MetricKind.Cos,
      quantization: { f32: usearch.ScalarKind.F32, f16: usearch.ScalarKind.F16, i8: usearch.ScalarKind.I8 }[mode],
      connectivity: b.m,
      expansion_add: b.efc,
      expansion_search: 1,
      multi: false,
    });
    graph.load(join(dataDir, "collections", "bench", manifest.indexFile));
    const t0 = performance.now();
    graph.save(join(dataDir, "save-on-loop.usearch"));
    const saveOnLoopMs = performance.now() - t0;

    const perVector = (mb: number) => round((mb * 2 ** 20) / b.n, 0);
    return {
      mode,
      rescore: created.index?.rescore ?? false,
      oversampling: created.index?.oversampling ?? null,
      ingest_s: round(ingestS, 1),
      rss_bytes_per_vector: perVector(loaded.rss - empty.rss),
      anon_bytes_per_vector: perVector(loaded.anon - empty.anon),
      file_bytes_per_vector: perVector(loaded.file - empty.file),
      index_bytes_per_vector: round(stats.memoryBytes / b.n, 0),
      runs: runs.map((r) => ({
        ef: r.ef,
        recall: round(r.one.recall, 4),
        qps_1: round(r.one.qps, 0),
        p99_ms_1: round(r.one.p99, 2),
        qps_many: round(r.many.qps, 0),
        p99_ms_many: round(r.many.p99, 2),
      })),
      snapshot_points: delta,
      snapshot_ms: snap.lastSnapshotTookMs,
      snapshot_max_loop_stall_ms: round(snap.lastSnapshotMaxStallMs, 1),
      snapshot_searches: lat.length,
      snapshot_search_p50_ms: round(pct(lat, 50), 2),
      snapshot_search_max_ms: round(Math.max(...lat), 1),
      save_on_loop_ms: round(saveOnLoopMs, 1),
    };
  } finally {
    client.close();
    await svc.stop(600_000);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Runs every mode in turn and prints the tables and one JSON line. */
export async function benchModes(b: ModesBench, header: string): Promise<void> {
  const results = [];
  for (const mode of b.modes) results.push(await benchMode(b, mode));
  console.log(header);
  console.log("");
  console.log(
    `| mode | ef | recall@10 | qps 1 | p99 ms 1 | qps ${b.concurrency} | p99 ms ${b.concurrency} | RSS B/vector (anon + file) | index B/vector (estimate) | ingest s |`,
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  for (const r of results) {
    const name = r.rescore ? `${r.mode} + rescore x${r.oversampling}` : r.mode;
    for (const run of r.runs) {
      console.log(
        `| ${name} | ${run.ef} | ${run.recall} | ${run.qps_1} | ${run.p99_ms_1} | ${run.qps_many} | ${run.p99_ms_many} | ${r.rss_bytes_per_vector} (${r.anon_bytes_per_vector} + ${r.file_bytes_per_vector}) | ${r.index_bytes_per_vector} | ${r.ingest_s} |`,
      );
    }
  }
  console.log("");
  console.log(
    `| mode | snapshot of (points replaced) | took ms | longest event-loop stall ms | searches meanwhile | search p50 / max ms | one native save on the loop ms (before) |`,
  );
  console.log("|---|---|---|---|---|---|---|");
  for (const r of results) {
    console.log(
      `| ${r.mode} | ${r.snapshot_points} | ${r.snapshot_ms} | ${r.snapshot_max_loop_stall_ms} | ${r.snapshot_searches} | ${r.snapshot_search_p50_ms} / ${r.snapshot_search_max_ms} | ${r.save_on_loop_ms} |`,
    );
  }
  console.log(JSON.stringify({ bench: "ann-modes", n: b.n, dims: b.dims, k: b.k, modes: results }));
}
