// Where the query encoder's fixed cost goes: the same queries through each layer in turn,
// interleaved request by request so all see the same machine load. Prints one table and
// one JSON line. `pnpm bench:encoder --parts [--bundle NAME]`.
//
//   bare                 onnxruntime session.run in this thread + tokenize + pool (the floor)
//   model                EmbeddingModel.embed in this process: the same, with the hop to the
//                        inference thread and back
//   grpc info            the service's Info over gRPC: a round trip through the server, no model
//   grpc encode          Encode over gRPC as served by default: every batch on the inference thread
//   grpc encode, inline  Encode with INLINE_MAX_TOKENS=64: a lone query runs on the event loop
//
// model - bare is the inference thread's hop; info is gRPC itself; the two encodes are the
// service with and without the hop for a lone query.
import { cpus } from "node:os";
import { EmbeddingModel } from "@tandem/model-runtime";
import { type EncodeRequest, type EncodeResponse, type InfoResponse, TextKind } from "@tandem/proto";
import { unary } from "@tandem/service-kit";
import { BareEmbedder } from "../../support/bare.js";
import { encoderClient } from "../../support/grpc.js";
import { freePort } from "../../support/net.js";
import { REPO_ROOT } from "../../support/paths.js";
import { startServiceProcess } from "../../support/process.js";

export interface PartsOptions {
  dir: string;
  name: string;
  threads: number;
  requests: number;
  queries: string[];
  pct: (xs: number[], p: number) => number;
}

export async function benchParts(o: PartsOptions): Promise<void> {
  const bare = await BareEmbedder.load(o.dir, o.threads);
  const model = await EmbeddingModel.load(o.dir, { intraOpThreads: o.threads });
  const env = { MODEL_DIR: o.dir, INTRA_OP_THREADS: String(o.threads), CACHE_ENTRIES: "0" };
  const entry = `${REPO_ROOT}services/query-encoder/src/main.ts`;
  const [port, inlinePort] = [await freePort(), await freePort()];
  const svc = await startServiceProcess(entry, port, env);
  const inlineSvc = await startServiceProcess(entry, inlinePort, { ...env, INLINE_MAX_TOKENS: "64" });
  const client = encoderClient(port);
  const inlineClient = encoderClient(inlinePort);
  const encode = (c: typeof client, q: string) =>
    unary<EncodeRequest, EncodeResponse>(c.encode.bind(c), { texts: [q], kind: TextKind.TEXT_KIND_QUERY });
  const parts: Record<string, (q: string) => Promise<unknown>> = {
    bare: (q) => bare.embed([q]),
    model: (q) => model.embed([q], "query"),
    "grpc info": () => unary<object, InfoResponse>(client.info.bind(client), {}),
    "grpc encode": (q) => encode(client, q),
    "grpc encode, inline": (q) => encode(inlineClient, q),
  };
  const lat: Record<string, number[]> = Object.fromEntries(Object.keys(parts).map((k) => [k, []]));
  try {
    for (let i = 0; i < 50; i++) for (const f of Object.values(parts)) await f(o.queries[i]!);
    for (let i = 0; i < o.requests; i++) {
      const q = o.queries[i % o.queries.length]!;
      for (const [k, f] of Object.entries(parts)) {
        const t = performance.now();
        await f(q);
        lat[k]!.push(performance.now() - t);
      }
    }
  } finally {
    client.close();
    inlineClient.close();
    await Promise.all([svc.stop(), inlineSvc.stop(), model.release()]);
  }
  const p50 = Object.fromEntries(Object.entries(lat).map(([k, xs]) => [k, o.pct(xs, 50)])) as Record<string, number>;
  const r = (x: number) => Math.round(x * 1000) / 1000;
  const split = {
    bare_ms: r(p50.bare!),
    thread_hop_ms: r(p50.model! - p50.bare!),
    grpc_round_trip_ms: r(p50["grpc info"]!),
    encode_ms: r(p50["grpc encode"]!),
    encode_inline_ms: r(p50["grpc encode, inline"]!),
    ratio: r(p50["grpc encode"]! / p50.bare!),
    ratio_inline: r(p50["grpc encode, inline"]! / p50.bare!),
  };
  const machine = `${cpus()[0]?.model ?? "unknown cpu"} x${cpus().length}`;
  console.log(`# query-encoder fixed cost by layer — ${o.name}, ${machine}, ${o.requests} interleaved rounds`);
  console.log("| part | p50 ms | p99 ms |\n|---|---|---|");
  for (const [k, xs] of Object.entries(lat)) console.log(`| ${k} | ${r(o.pct(xs, 50))} | ${r(o.pct(xs, 99))} |`);
  console.log(
    `\nthread hop (model - bare) ${split.thread_hop_ms} ms; gRPC round trip ${split.grpc_round_trip_ms} ms; encode / bare: ${split.ratio} as served (every batch on the thread), ${split.ratio_inline} with a lone query inline`,
  );
  console.log(JSON.stringify({ bench: "encoder-parts", bundle: o.name, machine, ...split }));
}
