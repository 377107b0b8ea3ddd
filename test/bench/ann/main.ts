// ANN benchmark: the bare usearch library in-process, hnswlib-node (the
// alternative the library choice was made against), and the ANN service over
// gRPC in its own process (as deployed), on the same clustered synthetic
// vectors, with brute force as ground truth. The service's concurrent cells run
// twice: with its search batching, then restarted with SEARCH_BATCH_MAX=1.
// Bounded loops, 127.0.0.1 only. Prints tables, then one JSON line.
//
//   pnpm bench:ann                 # n=100k x 768
//   pnpm bench:ann --n 1000000     # the full run
//   pnpm bench:ann --modes f32,f16,i8   # instead: the graph precisions side by side (modes.ts)
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { usearch } from "@tandem/ann";
import { Metric } from "@tandem/proto";
import { unary } from "@tandem/service-kit";
import hnswlib from "hnswlib-node";

const { exactSearch, Index, MetricKind, ScalarKind } = usearch;

import { annClient } from "../../support/grpc.js";
import { freePort } from "../../support/net.js";
import { startServiceProcess } from "../../support/process.js";
import { clusteredDataset, row } from "./data.js";
import { benchModes, type Mode } from "./modes.js";
import { benchServiceEnv, ingest, type Measure, pct, RESTART_MS, residentMb, searchLoad } from "./service.js";

const { values: args } = parseArgs({
  options: {
    n: { type: "string", default: "100000" },
    dims: { type: "string", default: "768" },
    queries: { type: "string", default: "500" },
    clusters: { type: "string" },
    ef: { type: "string", default: "32,64,128" },
    m: { type: "string", default: "16" },
    "ef-construction": { type: "string", default: "128" },
    requests: { type: "string", default: "1500" },
    concurrency: { type: "string", default: "16" },
    quantization: { type: "string", default: "f32" },
    "skip-hnswlib": { type: "boolean", default: false },
    modes: { type: "string" },
  },
});
const N = Number(args.n);
const DIMS = Number(args.dims);
const NQ = Number(args.queries);
const CLUSTERS = Number(args.clusters ?? Math.max(10, Math.round(N / 100)));
const EFS = args.ef.split(",").map(Number);
const M = Number(args.m);
const EFC = Number(args["ef-construction"]);
const REQUESTS = Number(args.requests);
const CONC = Number(args.concurrency);
const QUANT = args.quantization as "f32" | "f16" | "i8";
const K = 10;
const machine = `${cpus()[0]?.model ?? "unknown cpu"} x${cpus().length}`;

const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
const rssMb = () => process.memoryUsage().rss / 2 ** 20;
const log = (msg: string) => process.stderr.write(`[bench:ann] ${msg}\n`);

// ---- data + ground truth ---------------------------------------------------
log(`generating ${N} x ${DIMS} clustered vectors (${CLUSTERS} clusters) + ${NQ} queries`);
let t0 = performance.now();
const data = clusteredDataset(N, NQ, DIMS, CLUSTERS, 1);
const genS = (performance.now() - t0) / 1000;

t0 = performance.now();
const gtRaw = exactSearch(data.base, data.queries, DIMS, K, MetricKind.Cos, 0);
const truth: Set<number>[] = Array.from({ length: NQ }, (_, q) => {
  const keys = NQ === 1 ? gtRaw.keys : gtRaw.keys.subarray(q * K, (q + 1) * K);
  return new Set(Array.from(keys, Number));
});
const gtS = (performance.now() - t0) / 1000;
// The SIMD brute force checked against a plain-JS scan on a few queries.
for (let q = 0; q < 3; q++) {
  const qv = row(data.queries, q, DIMS);
  const scores: Array<[number, number]> = [];
  for (let i = 0; i < N; i++) {
    let s = 0;
    const b = i * DIMS;
    for (let j = 0; j < DIMS; j++) s += data.base[b + j]! * qv[j]!;
    scores.push([s, i]);
  }
  scores.sort((a, b) => b[0] - a[0]);
  const js = scores.slice(0, K).map((x) => x[1]);
  const agree = js.filter((i) => truth[q]!.has(i)).length;
  if (agree < K - 1) throw new Error(`ground truth disagrees with the JS scan on query ${q}: ${agree}/${K}`);
}
const recallOf = (q: number, keys: ArrayLike<number | bigint>) => {
  let hit = 0;
  for (let i = 0; i < Math.min(K, keys.length); i++) if (truth[q]!.has(Number(keys[i]))) hit++;
  return hit / K;
};

if (args.modes !== undefined) {
  const modes = args.modes.split(",");
  for (const m of modes) if (m !== "f32" && m !== "f16" && m !== "i8") throw new Error(`--modes: unknown mode ${m}`);
  await benchModes(
    {
      modes: modes as Mode[],
      base: data.base,
      queries: data.queries,
      n: N,
      dims: DIMS,
      nq: NQ,
      k: K,
      efs: EFS,
      m: M,
      efc: EFC,
      requests: REQUESTS,
      concurrency: CONC,
      recallOf,
      log,
    },
    `# ANN graph precisions — ${machine}, ${round(totalmem() / 2 ** 30, 1)} GiB RAM\nn=${N} dims=${DIMS} clusters=${CLUSTERS} queries=${NQ} k=${K} M=${M} efC=${EFC}; ${REQUESTS} searches per cell; data ${round(genS, 1)} s, ground truth ${round(gtS, 1)} s`,
  );
  // The comparison with the bare library and hnswlib below is another run.
  process.exit(0);
}

// ---- bare usearch ------------------------------------------------------------
log("bare usearch: build");
let rss0 = rssMb();
t0 = performance.now();
const bare = new Index({
  dimensions: DIMS,
  metric: MetricKind.Cos,
  quantization: ScalarKind[QUANT === "f32" ? "F32" : QUANT === "f16" ? "F16" : "I8"],
  connectivity: M,
  expansion_add: EFC,
  expansion_search: 1,
  multi: false,
});
const keys = BigUint64Array.from({ length: N }, (_, i) => BigInt(i));
const CHUNK = 10_000;
for (let i = 0; i < N; i += CHUNK) {
  const end = Math.min(N, i + CHUNK);
  bare.add(keys.subarray(i, end), data.base.subarray(i * DIMS, end * DIMS), 0);
}
const bareBuildS = (performance.now() - t0) / 1000;
const bareMemMb = rssMb() - rss0;

function bareOne(ef: number): Measure {
  let recall = 0;
  for (let q = 0; q < NQ; q++) recall += recallOf(q, bare.search(row(data.queries, q, DIMS), Math.max(K, ef), 1).keys);
  const lat: number[] = [];
  const start = performance.now();
  for (let i = 0; i < REQUESTS; i++) {
    const t = performance.now();
    bare.search(row(data.queries, i % NQ, DIMS), Math.max(K, ef), 1);
    lat.push(performance.now() - t);
  }
  return {
    qps: REQUESTS / ((performance.now() - start) / 1000),
    p50: pct(lat, 50),
    p99: pct(lat, 99),
    recall: recall / NQ,
  };
}

/** The library's best on this machine for `CONC` queries at a time: one batch call on every core. */
function bareBatch(ef: number): Measure {
  const lat: number[] = [];
  let recall = 0;
  let done = 0;
  const start = performance.now();
  for (let i = 0; done < REQUESTS; i += CONC) {
    const qs = Array.from({ length: CONC }, (_, j) => (i + j) % NQ);
    const batch = new Float32Array(CONC * DIMS);
    qs.forEach((q, j) => {
      batch.set(row(data.queries, q, DIMS), j * DIMS);
    });
    const t = performance.now();
    const res = bare.search(batch, Math.max(K, ef), 0) as unknown as {
      get(i: number): { keys: BigUint64Array };
    };
    lat.push(performance.now() - t);
    qs.forEach((q, j) => {
      recall += recallOf(q, res.get(j).keys);
    });
    done += CONC;
  }
  return {
    qps: done / ((performance.now() - start) / 1000),
    p50: pct(lat, 50),
    p99: pct(lat, 99),
    recall: recall / done,
  };
}

const bareRuns = EFS.map((ef) => {
  log(`bare usearch: ef=${ef}`);
  return { ef, one: bareOne(ef), many: bareBatch(ef) };
});
// Each part's figures go to the log as they land: a run of an hour that fails later keeps them.
log(`bare usearch measured: ${JSON.stringify({ buildS: bareBuildS, memMb: bareMemMb, runs: bareRuns })}`);

// ---- hnswlib-node --------------------------------------------------------------
let hnsw: { buildS: number; memMb: number; runs: Array<{ ef: number; one: Measure }> } | null = null;
if (!args["skip-hnswlib"]) {
  log("hnswlib-node: build (single-threaded: the binding has no parallel add)");
  rss0 = rssMb();
  t0 = performance.now();
  const h = new hnswlib.HierarchicalNSW("cosine", DIMS);
  h.initIndex(N, M, EFC, 100);
  for (let i = 0; i < N; i++) h.addPoint(Array.from(row(data.base, i, DIMS)), i);
  const buildS = (performance.now() - t0) / 1000;
  const memMb = rssMb() - rss0;
  const runs = EFS.map((ef) => {
    log(`hnswlib-node: ef=${ef}`);
    h.setEf(Math.max(K, ef));
    const qs = Array.from({ length: NQ }, (_, q) => Array.from(row(data.queries, q, DIMS)));
    let recall = 0;
    for (let q = 0; q < NQ; q++) recall += recallOf(q, h.searchKnn(qs[q]!, K).neighbors);
    const lat: number[] = [];
    const start = performance.now();
    for (let i = 0; i < REQUESTS; i++) {
      const t = performance.now();
      h.searchKnn(qs[i % NQ]!, K);
      lat.push(performance.now() - t);
    }
    return {
      ef,
      one: {
        qps: REQUESTS / ((performance.now() - start) / 1000),
        p50: pct(lat, 50),
        p99: pct(lat, 99),
        recall: recall / NQ,
      },
    };
  });
  hnsw = { buildS, memMb, runs };
}

// ---- the service over gRPC ---------------------------------------------------------
const dataDir = mkdtempSync(join(tmpdir(), "bench-ann-"));
const port = await freePort();
log(`service: starting services/ann on 127.0.0.1:${port} (data ${dataDir})`);
const svcEnv = benchServiceEnv(dataDir);
let svc = await startServiceProcess("services/ann/src/main.ts", port, svcEnv);
let client = annClient(port);
const call = <Req, Res>(m: Parameters<typeof unary<Req, Res>>[0], req: Req) => unary(m, req, { timeoutMs: 600_000 });

let svcRuns: Array<{ ef: number; one: Measure; many: Measure; unbatched?: Measure }> = [];
let ingestS = 0;
let svcRssMb = 0;
let svcStats: { memoryBytes: number; diskBytes: number } = { memoryBytes: 0, diskBytes: 0 };
try {
  await call(client.createCollection.bind(client), {
    name: "bench",
    space: `synthetic/${DIMS}`,
    dims: DIMS,
    metric: Metric.METRIC_COSINE,
    index: { m: M, efConstruction: EFC, efSearch: 64, quantization: QUANT },
  });
  log("service: ingesting over gRPC (batches of 500, WAL fsync per batch)");
  ingestS = await ingest(client, "bench", data.base, DIMS, 0, N);
  const stats = await call(client.stats.bind(client), { collection: "bench" });
  svcStats = { memoryBytes: stats.memoryBytes, diskBytes: stats.diskBytes };
  svcRssMb = residentMb(svc.child.pid!).rss;
  log(`service ingest measured: ${JSON.stringify({ ingestS, svcRssMb, ...svcStats })}`);

  const serviceLoad = (ef: number, clients: number, total: number): Promise<Measure> =>
    searchLoad(client, {
      collection: "bench",
      ef,
      k: K,
      clients,
      total,
      nq: NQ,
      query: (q) => row(data.queries, q, DIMS),
      recallOf,
    });

  // Warm the channel and the index pages.
  await serviceLoad(EFS[0]!, 4, 200);
  svcRuns = [];
  for (const ef of EFS) {
    log(`service: ef=${ef}`);
    svcRuns.push({ ef, one: await serviceLoad(ef, 1, REQUESTS), many: await serviceLoad(ef, CONC, REQUESTS) });
    log(`service measured: ${JSON.stringify(svcRuns[svcRuns.length - 1])}`);
  }

  // The same concurrent cells with SEARCH_BATCH_MAX=1 (one native call per search, on the event
  // loop): the service restarted on its own data, so only the batching differs.
  // The shutdown snapshot and the restart's load grow with n (minutes at 1M): wait for both.
  client.close();
  await svc.stop(RESTART_MS);
  svc = await startServiceProcess(
    "services/ann/src/main.ts",
    port,
    { ...svcEnv, SEARCH_BATCH_MAX: "1" },
    { timeoutMs: RESTART_MS },
  );
  client = annClient(port);
  await serviceLoad(EFS[0]!, 4, 200);
  for (const r of svcRuns) {
    log(`service, one search per call: ef=${r.ef}`);
    r.unbatched = await serviceLoad(r.ef, CONC, REQUESTS);
  }
} finally {
  client.close();
  await svc.stop(RESTART_MS);
  rmSync(dataDir, { recursive: true, force: true });
}

// ---- report --------------------------------------------------------------------------
console.log(`# ANN benchmark — ${machine}, ${round(totalmem() / 2 ** 30, 1)} GiB RAM`);
console.log(
  `n=${N} dims=${DIMS} clusters=${CLUSTERS} queries=${NQ} k=${K} M=${M} efC=${EFC} quantization=${QUANT}; ${REQUESTS} searches per cell`,
);
console.log(`data ${round(genS, 1)} s, brute-force ground truth ${round(gtS, 1)} s`);
console.log("");
console.log("| build | time s | memory MiB |");
console.log("|---|---|---|");
console.log(`| usearch (${cpus().length} threads) | ${round(bareBuildS, 1)} | ${round(bareMemMb, 0)} |`);
if (hnsw) console.log(`| hnswlib-node (1 thread) | ${round(hnsw.buildS, 1)} | ${round(hnsw.memMb, 0)} |`);
console.log(
  `| service ingest over gRPC (WAL+LMDB+index) | ${round(ingestS, 1)} | RSS ${round(svcRssMb, 0)}, index ~${round(svcStats.memoryBytes / 2 ** 20, 0)}, disk ${round(svcStats.diskBytes / 2 ** 20, 0)} |`,
);
console.log("");
console.log(
  `| ef | recall@10 bare | recall@10 service | bare qps 1 | service qps 1 | bare qps ${CONC} (batch) | service qps ${CONC} | ratio ${CONC} | service p50/p99 ms @${CONC} | service qps ${CONC}, one search per call | batching gain | hnswlib recall | hnswlib qps 1 |`,
);
console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
const rows = EFS.map((ef, i) => {
  const b = bareRuns[i]!;
  const s = svcRuns[i]!;
  const h = hnsw?.runs[i];
  const r = {
    ef,
    recall_bare: round(b.one.recall, 4),
    recall_service: round(s.one.recall, 4),
    bare_qps_1: round(b.one.qps, 0),
    qps_1: round(s.one.qps, 0),
    bare_qps_16: round(b.many.qps, 0),
    qps_16: round(s.many.qps, 0),
    service_ratio: round(s.many.qps / b.many.qps, 3),
    service_ratio_1: round(s.one.qps / b.one.qps, 3),
    qps_16_unbatched: s.unbatched ? round(s.unbatched.qps, 0) : null,
    batching_gain: s.unbatched ? round(s.many.qps / s.unbatched.qps, 3) : null,
    p50_ms_1: round(s.one.p50, 3),
    p99_ms_1: round(s.one.p99, 3),
    p50_ms_16: round(s.many.p50, 3),
    p99_ms_16: round(s.many.p99, 3),
    bare_p50_ms_1: round(b.one.p50, 3),
    hnswlib_recall: h ? round(h.one.recall, 4) : null,
    hnswlib_qps_1: h ? round(h.one.qps, 0) : null,
  };
  console.log(
    `| ${ef} | ${r.recall_bare} | ${r.recall_service} | ${r.bare_qps_1} | ${r.qps_1} | ${r.bare_qps_16} | ${r.qps_16} | ${r.service_ratio} | ${r.p50_ms_16}/${r.p99_ms_16} | ${r.qps_16_unbatched ?? "-"} | ${r.batching_gain ?? "-"} | ${r.hnswlib_recall ?? "-"} | ${r.hnswlib_qps_1 ?? "-"} |`,
  );
  return r;
});
// The headline: the smallest ef whose service recall@10 reaches 0.95 (else the largest).
const head = rows.find((r) => r.recall_service >= 0.95) ?? rows[rows.length - 1]!;
console.log(
  JSON.stringify({
    n: N,
    dims: DIMS,
    machine,
    ef: head.ef,
    recall_at_10: head.recall_service,
    qps_1: head.qps_1,
    qps_16: head.qps_16,
    bare_qps_1: head.bare_qps_1,
    bare_qps_16: head.bare_qps_16,
    service_ratio: head.service_ratio,
    service_ratio_1: head.service_ratio_1,
    batching_gain: head.batching_gain,
    p99_ms_16: head.p99_ms_16,
    build_s: round(bareBuildS, 1),
    hnswlib_build_s: hnsw ? round(hnsw.buildS, 1) : null,
    ingest_s: round(ingestS, 1),
    service_rss_mb: round(svcRssMb, 0),
    quantization: QUANT,
    runs: rows,
  }),
);
