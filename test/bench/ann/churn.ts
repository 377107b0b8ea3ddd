// Churn benchmark: what replacing points does to an HNSW graph's recall, and what a rebuild
// (Collection.rebuild: a new graph on a worker thread, swapped in) gives back, on one
// collection through the service's own storage code. Also the longest stall of the event loop
// during the rebuild, which the worker thread is there to keep short.
//
//   pnpm bench:ann-churn [--n 20000] [--dims 384] [--rounds 4] [--share 0.5]
//
// Stdout: a markdown table, then one JSON line (save both as docs/figures/bench-ann-churn.txt
// for `pnpm readme`); progress goes to stderr.
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Collection, type CollectionMeta, type NewPoint, usearch } from "@tandem/ann";
import { createLogger } from "@tandem/service-kit";
import { clusteredDataset, row } from "./data.js";

const { values: args } = parseArgs({
  options: {
    n: { type: "string", default: "20000" },
    dims: { type: "string", default: "384" },
    rounds: { type: "string", default: "4" },
    share: { type: "string", default: "0.5" },
    queries: { type: "string", default: "300" },
    ef: { type: "string", default: "16,32,64" },
  },
});
const N = Number(args.n);
const DIMS = Number(args.dims);
const ROUNDS = Number(args.rounds);
const SHARE = Number(args.share);
const NQ = Number(args.queries);
const EFS = args.ef.split(",").map(Number);
const K = 10;
const machine = `${cpus()[0]?.model ?? "unknown cpu"} x${cpus().length}`;
const log = (msg: string) => process.stderr.write(`[bench:ann-churn] ${msg}\n`);
const round = (x: number, d = 4) => Math.round(x * 10 ** d) / 10 ** d;

// Base points, then one fresh vector per replace, from the same mixture.
const replaces = Math.round(N * SHARE);
const data = clusteredDataset(N + ROUNDS * replaces, NQ, DIMS, Math.max(10, Math.round(N / 100)), 3);
const meta: CollectionMeta = {
  name: "churn",
  space: `bench/${DIMS}`,
  dims: DIMS,
  metric: "cosine",
  m: 16,
  efConstruction: 128,
  efSearch: 64,
  quantization: "f32",
  rescore: false,
  oversampling: 1,
  createdAtMs: 0,
};
const dir = join(mkdtempSync(join(tmpdir(), "ann-churn-")), "churn");
await Collection.initialise(dir, meta);
const col = await Collection.open(dir, {
  log: createLogger("bench-ann-churn", "warn"),
  maxPoints: 100_000_000,
  filterMaxStringBytes: 256,
  filterExactMax: 0,
  filterMaxOverfetch: 20_000,
  threads: 0,
  snapshotWalBytes: 0,
  faultSnapshotStallMs: 0,
  rebuildChurn: 0, // rebuilt below, once, on purpose
  rebuildMinPoints: 1,
  searchBatchMax: 1, // one query at a time: recall is the graph's, whatever the batching
});

/** Which data row each point id holds now. */
const current = new Int32Array(N).map((_, i) => i);
const toPoint = (id: number, r: number): NewPoint => {
  const values = row(data.base, r, DIMS).slice();
  return { id: `p${id}`, vector: new Uint8Array(values.buffer), values, payload: "{}", payloadObject: {} };
};
async function write(ids: number[]): Promise<void> {
  for (let i = 0; i < ids.length; i += 1000) {
    await col.upsert(ids.slice(i, i + 1000).map((id) => toPoint(id, current[id]!)));
  }
}

let t0 = performance.now();
await write(Array.from({ length: N }, (_, i) => i));
const buildS = (performance.now() - t0) / 1000;
log(`built ${N} x ${DIMS} in ${buildS.toFixed(1)} s`);

async function recall(): Promise<number[]> {
  const live = new Float32Array(N * DIMS);
  for (let id = 0; id < N; id++) live.set(row(data.base, current[id]!, DIMS), id * DIMS);
  const truth = usearch.exactSearch(live, data.queries, DIMS, K, usearch.MetricKind.Cos, 0);
  const out: number[] = [];
  for (const ef of EFS) {
    let hits = 0;
    for (let q = 0; q < NQ; q++) {
      const want = new Set(Array.from(truth.keys.subarray(q * K, (q + 1) * K), Number));
      const got = await col.search(row(data.queries, q, DIMS), { k: K, ef, exact: false, filter: null });
      for (const key of got.keys) if (want.has(Number(col.entry(key)?.id.slice(1)))) hits++;
    }
    out.push(hits / (NQ * K));
  }
  return out;
}

const fresh = await recall();
const perRound: number[][] = [];
let next = N;
for (let r = 0; r < ROUNDS; r++) {
  // A different random share of the ids each round gets a new vector.
  const ids = Array.from({ length: N }, (_, i) => i);
  for (let i = 0; i < replaces; i++) {
    const j = i + Math.floor(Math.random() * (N - i));
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  ids.length = replaces;
  for (const id of ids) current[id] = next++;
  await write(ids);
  perRound.push(await recall());
  log(`round ${r + 1}: replaced ${replaces}, churn ${col.stats().indexChurn}`);
}
const churn = col.stats().indexChurn;

// The rebuild, with a timer measuring the longest gap of the event loop meanwhile.
let maxGapMs = 0;
let last = performance.now();
const ticker = setInterval(() => {
  const now = performance.now();
  maxGapMs = Math.max(maxGapMs, now - last);
  last = now;
}, 5);
t0 = performance.now();
const swapped = await col.rebuild();
const rebuildS = (performance.now() - t0) / 1000;
clearInterval(ticker);
if (!swapped) throw new Error("the rebuild did not swap");
const rebuilt = await recall();
await col.close(false);
rmSync(join(dir, ".."), { recursive: true, force: true });

console.log(
  `# ANN churn benchmark — ${machine}; n=${N} dims=${DIMS} M=16 efC=128 f32; ${ROUNDS} rounds replacing ${replaces} points each (churn ${churn}); recall@${K} over ${NQ} queries`,
);
console.log(`| graph | ${EFS.map((ef) => `recall ef ${ef}`).join(" | ")} |`);
console.log(`|---|${EFS.map(() => "---|").join("")}`);
console.log(`| built once, before any replace | ${fresh.map((x) => round(x)).join(" | ")} |`);
perRound.forEach((rec, r) => {
  console.log(`| after round ${r + 1} (churn ${(r + 1) * replaces}) | ${rec.map((x) => round(x)).join(" | ")} |`);
});
console.log(`| rebuilt (Collection.rebuild) | ${rebuilt.map((x) => round(x)).join(" | ")} |`);
console.log(
  `build ${buildS.toFixed(1)} s (upserts of 1,000); rebuild ${rebuildS.toFixed(1)} s on a worker thread, longest event-loop stall meanwhile ${maxGapMs.toFixed(0)} ms`,
);
console.log(
  JSON.stringify({
    bench: "ann-churn",
    machine,
    n: N,
    dims: DIMS,
    rounds: ROUNDS,
    replaces_per_round: replaces,
    ef: EFS,
    recall_fresh: fresh.map((x) => round(x)),
    recall_churned: perRound.at(-1)?.map((x) => round(x)),
    recall_rebuilt: rebuilt.map((x) => round(x)),
    build_s: round(buildS, 2),
    rebuild_s: round(rebuildS, 2),
    rebuild_max_loop_stall_ms: round(maxGapMs, 1),
  }),
);
