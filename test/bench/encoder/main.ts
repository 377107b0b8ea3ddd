// Query-encoder benchmark: the service over gRPC (its own process, as deployed)
// side by side with a bare in-process onnxruntime call on the same bundle and the
// same real queries, in one run. Prints a table, then one JSON line.
import { existsSync } from "node:fs";
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import { type EncodeRequest, type EncodeResponse, type QueryEncoderClient, TextKind } from "@tandem/proto";
import { unary } from "@tandem/service-kit";
import { BareEmbedder } from "../../support/bare.js";
import { loadQueries } from "../../support/datasets.js";
import { encoderClient } from "../../support/grpc.js";
import { freePort } from "../../support/net.js";
import { MODELS, REPO_ROOT } from "../../support/paths.js";
import { startServiceProcess } from "../../support/process.js";

const { values: args } = parseArgs({
  options: {
    bundle: { type: "string", multiple: true },
    threads: { type: "string", default: "1" },
    requests: { type: "string", default: "400" },
  },
});
const threads = Number(args.threads);
const requests = Number(args.requests);
// The distilled student beside the undistilled model it started from, so the student's query cost is read
// against all-MiniLM-L6-v2's in the same run (the projection to the teacher's width is its only extra work).
const STUDENT = "leaf-minilm-mpnet";
const BASELINE = "all-minilm-l6-v2";
const bundles = (
  args.bundle ??
  [`${STUDENT}-int8`, STUDENT, `${BASELINE}-int8`, BASELINE].filter((b) => existsSync(`${MODELS}/${b}/manifest.json`))
).filter((b, i, all) => all.indexOf(b) === i);
const queries = [...loadQueries("scifact"), ...loadQueries("nfcorpus")].map((q) => q.text);

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

const encode = (c: QueryEncoderClient, text: string) =>
  unary<EncodeRequest, EncodeResponse>(c.encode.bind(c), { texts: [text], kind: TextKind.TEXT_KIND_QUERY });

/** `clients` concurrent loops sharing `requests` calls; bounded, loopback only. */
async function load(client: QueryEncoderClient, clients: number, total: number) {
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < total) {
        const i = next++;
        const t = performance.now();
        await encode(client, queries[(i * 7919) % queries.length]!);
        lat.push(performance.now() - t);
      }
    }),
  );
  return { p50: pct(lat, 50), p99: pct(lat, 99), qps: total / ((performance.now() - t0) / 1000) };
}

/**
 * Single-client latency, bare and service interleaved request by request so
 * both see the same machine load (these machines are shared and noisy), then
 * service throughput at 1, 8 and 32 concurrent clients.
 */
async function measure(dir: string) {
  const model = await BareEmbedder.load(dir, threads);
  const port = await freePort();
  const svc = await startServiceProcess(`${REPO_ROOT}services/query-encoder/src/main.ts`, port, {
    MODEL_DIR: dir,
    INTRA_OP_THREADS: String(threads),
    CACHE_ENTRIES: "0",
    MAX_QUEUED_REQUESTS: "1024",
  });
  const client = encoderClient(port);
  try {
    for (const q of queries.slice(0, 20)) await Promise.all([model.embed([q]), encode(client, q)]);
    const bareLat: number[] = [];
    const svcLat: number[] = [];
    for (let i = 0; i < requests; i++) {
      const q = queries[i % queries.length]!;
      let t = performance.now();
      await model.embed([q]);
      bareLat.push(performance.now() - t);
      t = performance.now();
      await encode(client, q);
      svcLat.push(performance.now() - t);
    }
    const one = await load(client, 1, requests);
    const eight = await load(client, 8, requests);
    const many = await load(client, 32, requests * 2);
    return {
      bare: { p50: pct(bareLat, 50), p99: pct(bareLat, 99) },
      single: { p50: pct(svcLat, 50), p99: pct(svcLat, 99) },
      one,
      eight,
      many,
    };
  } finally {
    client.close();
    await svc.stop();
  }
}

const machine = `${cpus()[0]?.model ?? "unknown cpu"} x${cpus().length}`;
console.log(`# query-encoder benchmark — ${machine}, ORT intra-op threads ${threads}, ${queries.length} real queries`);
console.log(
  "| bundle | bare p50 ms | service p50 ms | service p99 ms | overhead ratio | qps 1 | qps 8 | qps 32 | qps32/qps1 |",
);
console.log("|---|---|---|---|---|---|---|---|---|");
interface Row {
  bundle: string;
  bare_p50_ms: number;
  bare_p99_ms: number;
  p50_ms: number;
  p99_ms: number;
  overhead_ratio: number;
  qps_1: number;
  qps_8: number;
  qps_32: number;
  p99_ms_32: number;
  batching_gain: number;
}
const results: Row[] = [];
for (const name of bundles) {
  const dir = `${MODELS}/${name}`;
  const s = await measure(dir);
  const row: Row = {
    bundle: name,
    bare_p50_ms: round(s.bare.p50),
    bare_p99_ms: round(s.bare.p99),
    p50_ms: round(s.single.p50),
    p99_ms: round(s.single.p99),
    overhead_ratio: round(s.single.p50 / s.bare.p50, 3),
    qps_1: round(s.one.qps, 1),
    qps_8: round(s.eight.qps, 1),
    qps_32: round(s.many.qps, 1),
    p99_ms_32: round(s.many.p99),
    batching_gain: round(s.many.qps / s.one.qps, 2),
  };
  results.push(row);
  console.log(
    `| ${name} | ${row.bare_p50_ms} | ${row.p50_ms} | ${row.p99_ms} | ${row.overhead_ratio} | ${row.qps_1} | ${row.qps_8} | ${row.qps_32} | ${row.batching_gain} |`,
  );
}
// Student vs baseline of the same precision: the query-latency price of distillation.
const versus = results.flatMap((r) => {
  const base = results.find((b) => b.bundle === r.bundle.replace(STUDENT, BASELINE));
  return r.bundle.startsWith(STUDENT) && base && base !== r
    ? [
        {
          student: r.bundle,
          baseline: base.bundle,
          bare_p50_ratio: round(r.bare_p50_ms / base.bare_p50_ms, 3),
          p50_ratio: round(r.p50_ms / base.p50_ms, 3),
        },
      ]
    : [];
});
if (versus.length) {
  console.log("\n| student | undistilled baseline | bare p50 ratio | service p50 ratio |\n|---|---|---|---|");
  for (const v of versus) console.log(`| ${v.student} | ${v.baseline} | ${v.bare_p50_ratio} | ${v.p50_ratio} |`);
}
const head = results[0]!;
console.log(JSON.stringify({ ...head, machine, threads, runs: results, versus }));
