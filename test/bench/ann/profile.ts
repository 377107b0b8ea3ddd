// Where the ANN service's time goes under concurrent searches: the service (own process, fed over
// gRPC as in `pnpm bench:ann`) runs under V8's CPU profiler while `--clients` loops search at one
// ef, and the bench process profiles itself (the client on the same cores). Each profile's samples
// are summed by where they land: the native search, gRPC and HTTP/2, protobuf coding, the
// service's own code, GC, idle. Only the service's samples taken while the clients searched count
// (both processes read the same monotonic clock), not its start-up or the ingest. Prints a table
// and one JSON line.
//
//   pnpm bench:ann-profile --n 100000 --ef 64 --clients 16
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Metric } from "@tandem/proto";
import { unary } from "@tandem/service-kit";
import { annClient } from "../../support/grpc.js";
import { freePort } from "../../support/net.js";
import { startServiceProcess } from "../../support/process.js";
import { clusteredDataset, row } from "./data.js";
import { benchServiceEnv, ingest, searchLoad } from "./service.js";

const { values: args } = parseArgs({
  options: {
    n: { type: "string", default: "100000" },
    dims: { type: "string", default: "768" },
    ef: { type: "string", default: "64" },
    clients: { type: "string", default: "16" },
    requests: { type: "string", default: "10000" },
  },
});
const N = Number(args.n);
const DIMS = Number(args.dims);
const EF = Number(args.ef);
const CLIENTS = Number(args.clients);
const log = (msg: string) => process.stderr.write(`[bench:ann-profile] ${msg}\n`);

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Where a sample's own frame (and, for natives, its caller) lands. */
const CATEGORIES: Array<[string, (url: string, fn: string) => boolean]> = [
  ["idle", (_u, f) => f === "(idle)"],
  ["garbage collection", (_u, f) => f === "(garbage collector)"],
  ["usearch (native search, its JS wrapper)", (u) => u.includes("usearch")],
  ["grpc-js", (u) => u.includes("@grpc/grpc-js")],
  [
    "HTTP/2 and sockets (node internals)",
    (u) =>
      /node:(internal\/)?(http2|net|stream|_http|timers|events)|internal\/http2|internal\/streams/.test(u) ||
      u.startsWith("node:"),
  ],
  ["protobuf coding (generated)", (u) => u.includes("/proto/") || u.includes("protobufjs") || u.includes("wire")],
  ["the service's code", (u) => u.includes("/services/") || u.includes("/packages/")],
  ["LMDB", (u) => u.includes("lmdb")],
  ["other JS", (u) => u !== ""],
  ["native, unattributed ((program))", () => true],
];

/** Microseconds on the monotonic clock V8's profiler stamps samples with. */
const nowUs = () => Number(process.hrtime.bigint() / 1000n);

/** Time per category of the samples taken between `fromUs` and `toUs`. */
function categorise(p: CpuProfile, fromUs: number, toUs: number): Map<string, number> {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const out = new Map<string, number>(CATEGORIES.map(([name]) => [name, 0]));
  let at = p.startTime;
  p.samples.forEach((id, i) => {
    at += p.timeDeltas[i] ?? 0;
    if (at < fromUs || at > toUs) return;
    let node = byId.get(id)!;
    // A native frame has no URL: charge it to its nearest JS caller (a search is usearch's).
    while (node.callFrame.url === "" && !node.callFrame.functionName.startsWith("(") && parent.has(node.id)) {
      node = byId.get(parent.get(node.id)!)!;
    }
    const { url, functionName } = node.callFrame;
    const [name] = CATEGORIES.find(([, match]) => match(url, functionName))!;
    out.set(name, out.get(name)! + (p.timeDeltas[i] ?? 0));
  });
  return out;
}

const machine = `${cpus()[0]?.model ?? "unknown cpu"} x${cpus().length}`;
log(`generating ${N} x ${DIMS} vectors`);
const data = clusteredDataset(N, 500, DIMS, Math.max(10, Math.round(N / 100)), 1);
const dataDir = mkdtempSync(join(tmpdir(), "bench-ann-profile-"));
const profDir = mkdtempSync(join(tmpdir(), "bench-ann-cpuprof-"));
const port = await freePort();
const svc = await startServiceProcess("services/ann/src/main.ts", port, benchServiceEnv(dataDir), {
  execArgv: ["--cpu-prof", `--cpu-prof-dir=${profDir}`],
});
const client = annClient(port);
let qps = 0;
const window = { from: 0, to: 0 };
let clientProfile: CpuProfile;
try {
  await unary(client.createCollection.bind(client), {
    name: "bench",
    space: `synthetic/${DIMS}`,
    dims: DIMS,
    metric: Metric.METRIC_COSINE,
    index: { m: 16, efConstruction: 128, efSearch: EF, quantization: "f32" },
  });
  log(`ingesting ${N} points over gRPC`);
  await ingest(client, "bench", data.base, DIMS, 0, N);
  const load = (total: number) =>
    searchLoad(client, {
      collection: "bench",
      ef: EF,
      k: 10,
      clients: CLIENTS,
      total,
      nq: 500,
      query: (q) => row(data.queries, q, DIMS),
      recallOf: () => 0,
    });
  await load(500);
  log(`profiling ${args.requests} searches from ${CLIENTS} clients at ef ${EF}`);
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.start");
  window.from = nowUs();
  qps = (await load(Number(args.requests))).qps;
  window.to = nowUs();
  clientProfile = (await session.post("Profiler.stop")).profile as unknown as CpuProfile;
  session.disconnect();
} finally {
  client.close();
  await svc.stop(600_000);
  rmSync(dataDir, { recursive: true, force: true });
}
const file = readdirSync(profDir).find((f) => f.endsWith(".cpuprofile"));
if (!file) throw new Error(`the service wrote no profile in ${profDir}`);
const serviceProfile = JSON.parse(readFileSync(join(profDir, file), "utf8")) as CpuProfile;
rmSync(profDir, { recursive: true, force: true });

const shares = (p: CpuProfile) => {
  const cats = categorise(p, window.from, window.to);
  const total = [...cats.values()].reduce((a, b) => a + b, 0);
  const span = window.to - window.from;
  if (total < 0.8 * span)
    throw new Error(`the profile holds ${total} us of samples in a ${span} us window: clocks differ?`);
  return new Map([...cats].map(([k, v]) => [k, v / total]));
};
const svcShares = shares(serviceProfile);
const clientShares = shares(clientProfile!);
const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
console.log(
  `# ANN service profile — ${machine}; n=${N} dims=${DIMS} ef=${EF}, ${CLIENTS} clients, ${Math.round(qps)} searches/s`,
);
console.log("| where the main thread's time went | service process | bench process (the gRPC client) |\n|---|---|---|");
for (const [name] of CATEGORIES)
  console.log(`| ${name} | ${pct(svcShares.get(name)!)} | ${pct(clientShares.get(name)!)} |`);
console.log(
  JSON.stringify({
    bench: "ann-profile",
    machine,
    n: N,
    dims: DIMS,
    ef: EF,
    clients: CLIENTS,
    qps: Math.round(qps),
    service: Object.fromEntries([...svcShares].map(([k, v]) => [k, Math.round(v * 1000) / 1000])),
    client: Object.fromEntries([...clientShares].map(([k, v]) => [k, Math.round(v * 1000) / 1000])),
  }),
);
