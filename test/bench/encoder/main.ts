// Query-encoder benchmark: the service over gRPC and over its OpenAI-compatible HTTP endpoint
// (its own process, as deployed) side by side with a bare in-process onnxruntime call on the same
// bundle and the same real queries, in one run. Prints a table, then one JSON line.
// `--parts` instead splits one bundle's fixed cost by layer (parts.ts).
import { existsSync, readFileSync } from "node:fs";
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
import { benchParts } from "./parts.js";

const { values: args } = parseArgs({
  options: {
    bundle: { type: "string", multiple: true },
    threads: { type: "string", default: "1" },
    requests: { type: "string", default: "400" },
    parts: { type: "boolean", default: false },
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

if (args.parts) {
  // Instead of the comparison below: one bundle's fixed cost split by layer (parts.ts).
  const name = bundles[0]!;
  await benchParts({ dir: `${MODELS}/${name}`, name, threads, requests, queries, pct });
  process.exit(0);
}

const encode = (c: QueryEncoderClient, text: string) =>
  unary<EncodeRequest, EncodeResponse>(c.encode.bind(c), { texts: [text], kind: TextKind.TEXT_KIND_QUERY });

/**
 * POST /v1/embeddings with plain fetch (keep-alive), not the openai SDK: the service's cost, not a
 * client library's. base64, as the SDK asks for by default.
 */
async function embedHttp(port: number, model: string, text: string): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/embeddings`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, input: text, encoding_format: "base64" }),
  });
  const body = (await res.json()) as { data?: unknown[] };
  if (!res.ok || body.data?.length !== 1) throw new Error(`HTTP ${res.status}: ${JSON.stringify(body)}`);
}

/** `clients` concurrent loops sharing `requests` calls of `call`; bounded, loopback only. */
async function load(call: (text: string) => Promise<unknown>, clients: number, total: number) {
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < total) {
        const i = next++;
        const t = performance.now();
        await call(queries[(i * 7919) % queries.length]!);
        lat.push(performance.now() - t);
      }
    }),
  );
  return { p50: pct(lat, 50), p99: pct(lat, 99), qps: total / ((performance.now() - t0) / 1000) };
}

/**
 * Single-client latency, bare, gRPC and HTTP interleaved request by request so
 * all see the same machine load (these machines are shared and noisy), then
 * gRPC throughput at 1, 8 and 32 concurrent clients and HTTP's at 32.
 */
async function measure(dir: string) {
  const model = await BareEmbedder.load(dir, threads);
  const name = (JSON.parse(readFileSync(`${dir}/manifest.json`, "utf8")) as { name: string }).name;
  const [port, httpPort] = [await freePort(), await freePort()];
  const svc = await startServiceProcess(`${REPO_ROOT}services/query-encoder/src/main.ts`, port, {
    MODEL_DIR: dir,
    INTRA_OP_THREADS: String(threads),
    CACHE_ENTRIES: "0",
    MAX_QUEUED_REQUESTS: "1024",
    HTTP_PORT: String(httpPort),
  });
  const client = encoderClient(port);
  const grpc = (q: string) => encode(client, q);
  const http = (q: string) => embedHttp(httpPort, name, q);
  try {
    for (const q of queries.slice(0, 20)) await Promise.all([model.embed([q]), grpc(q), http(q)]);
    const bareLat: number[] = [];
    const svcLat: number[] = [];
    const httpLat: number[] = [];
    for (let i = 0; i < requests; i++) {
      const q = queries[i % queries.length]!;
      let t = performance.now();
      await model.embed([q]);
      bareLat.push(performance.now() - t);
      t = performance.now();
      await grpc(q);
      svcLat.push(performance.now() - t);
      t = performance.now();
      await http(q);
      httpLat.push(performance.now() - t);
    }
    const one = await load(grpc, 1, requests);
    const eight = await load(grpc, 8, requests);
    const many = await load(grpc, 32, requests * 2);
    const httpMany = await load(http, 32, requests * 2);
    return {
      bare: { p50: pct(bareLat, 50), p99: pct(bareLat, 99) },
      single: { p50: pct(svcLat, 50), p99: pct(svcLat, 99) },
      http: { p50: pct(httpLat, 50), p99: pct(httpLat, 99) },
      one,
      eight,
      many,
      httpMany,
    };
  } finally {
    client.close();
    await svc.stop();
  }
}

const machine = `${cpus()[0]?.model ?? "unknown cpu"} x${cpus().length}`;
console.log(`# query-encoder benchmark — ${machine}, ORT intra-op threads ${threads}, ${queries.length} real queries`);
console.log(
  "| bundle | bare p50 ms | service p50 ms | service p99 ms | overhead ratio | qps 1 | qps 8 | qps 32 | qps32/qps1 | HTTP p50 ms | HTTP/gRPC p50 | HTTP qps 32 |",
);
console.log("|---|---|---|---|---|---|---|---|---|---|---|---|");
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
  http_p50_ms: number;
  http_p99_ms: number;
  http_p50_ratio: number;
  http_qps_32: number;
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
    http_p50_ms: round(s.http.p50),
    http_p99_ms: round(s.http.p99),
    http_p50_ratio: round(s.http.p50 / s.single.p50, 3),
    http_qps_32: round(s.httpMany.qps, 1),
  };
  results.push(row);
  console.log(
    `| ${name} | ${row.bare_p50_ms} | ${row.p50_ms} | ${row.p99_ms} | ${row.overhead_ratio} | ${row.qps_1} | ${row.qps_8} | ${row.qps_32} | ${row.batching_gain} | ${row.http_p50_ms} | ${row.http_p50_ratio} | ${row.http_qps_32} |`,
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
