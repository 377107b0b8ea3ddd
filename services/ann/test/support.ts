import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import {
  AnnClient,
  type CreateCollectionRequest,
  encodeVector,
  Metric,
  SearchRequest,
  type UpsertRequest,
  type UpsertResponse,
} from "@tandem/proto";
import { createLogger, globalMeter, unary } from "@tandem/service-kit";
import { rng } from "../../../test/support/random.js";
import type { CollectionMeta } from "../src/backend.js";
import { annConfig, type RunningAnn, startAnn } from "../src/service.js";

export { rng, unary };

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

export function tempDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), `ann-${prefix}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface TestAnn {
  ann: RunningAnn;
  client: AnnClient;
  port: number;
  stop(): Promise<void>;
}

/** The real service in-process on a free loopback port, over a real data directory; `vars` add to its config. */
export async function startTestAnn(dataDir: string, vars: Record<string, string> = {}): Promise<TestAnn> {
  const config = annConfig({
    PORT: "0",
    HOST: "127.0.0.1",
    DATA_DIR: dataDir,
    LOG_LEVEL: "warn",
    SNAPSHOT_INTERVAL_MS: "0",
    ...vars,
  });
  // With METRICS_PORT the service makes its own meter and serves /metrics, as deployed.
  const ann = await startAnn(config, {
    log: createLogger("ann-test", config.LOG_LEVEL),
    meter: vars.METRICS_PORT ? undefined : globalMeter("ann-test"),
  });
  const client = new AnnClient(`127.0.0.1:${ann.port}`, credentials.createInsecure());
  return {
    ann,
    client,
    port: ann.port,
    async stop() {
      client.close();
      await ann.stop();
    },
  };
}

export function createReq(
  name: string,
  dims: number,
  extra: Partial<CreateCollectionRequest> = {},
): CreateCollectionRequest {
  return { name, space: "test-space/8", dims, metric: Metric.METRIC_COSINE, index: undefined, ...extra };
}

export function searchReq(collection: string, vector: Float32Array, extra: Partial<SearchRequest> = {}): SearchRequest {
  return SearchRequest.fromPartial({
    collection,
    k: 10,
    query: { $case: "vector", value: encodeVector(vector) },
    ...extra,
  });
}

/** One client-streaming Upsert call with the given messages. */
export function upsert(client: AnnClient, messages: UpsertRequest[], timeoutMs = 60_000): Promise<UpsertResponse> {
  return new Promise((resolve, reject) => {
    const call = client.upsert(new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
      err ? reject(err) : resolve(res),
    );
    for (const m of messages) call.write(m);
    call.end();
  });
}

export function point(id: string, vector: Float32Array, payload: unknown = {}) {
  return { id, vector: encodeVector(vector), payloadJson: JSON.stringify(payload) };
}

export function gaussian(rand: () => number): number {
  const u = Math.max(rand(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

/** `n` unit vectors around `clusters` random centres (a retrieval-like distribution). */
export function clustered(n: number, dims: number, clusters: number, seed: number, spread = 0.35): Float32Array[] {
  const rand = rng(seed);
  const centres = Array.from({ length: clusters }, () =>
    normalize(Float32Array.from({ length: dims }, () => gaussian(rand))),
  );
  return Array.from({ length: n }, () => {
    const c = centres[Math.floor(rand() * clusters)]!;
    return normalize(Float32Array.from(c, (x) => x + ((spread * gaussian(rand)) / Math.sqrt(dims)) * 4));
  });
}

export function normalize(v: Float32Array): Float32Array {
  let s = 0;
  for (const x of v) s += x * x;
  const n = Math.sqrt(s) || 1;
  return v.map((x) => x / n);
}

export function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** Plain-JS cosine top-k: ground truth independent of the service and of usearch. */
export function bruteForce(
  points: Array<{ id: string; vector: Float32Array }>,
  q: Float32Array,
  k: number,
): Array<{ id: string; score: number }> {
  const qn = Math.sqrt(dot(q, q));
  return points
    .map((p) => ({ id: p.id, score: dot(p.vector, q) / (Math.sqrt(dot(p.vector, p.vector)) * qn) }))
    .sort((a, b) => b.score - a.score)
    .slice(0, k);
}

/** The error of a call expected to fail. */
export async function failure(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error("expected the call to fail, it succeeded");
}

// ---- the real process, killed with SIGKILL ------------------------------

export interface Child {
  proc: ChildProcess;
  port: number;
  client: AnnClient;
  lines: string[];
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

/** The service as its own process (services/ann/src/main.ts), as deployed: what SIGKILL tests kill. */
export async function spawnAnn(dataDir: string, env: Record<string, string> = {}): Promise<Child> {
  const proc = spawn(process.execPath, ["--conditions=tandem-src", "--import", "tsx", "services/ann/src/main.ts"], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      PORT: "0",
      HOST: "127.0.0.1",
      DATA_DIR: dataDir,
      LOG_LEVEL: "info",
      SNAPSHOT_INTERVAL_MS: "0",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const waiters: Array<{ pattern: RegExp; resolve: (l: string) => void }> = [];
  let buf = "";
  proc.stdout!.on("data", (d: Buffer) => {
    buf += d.toString("utf8");
    let nl = buf.indexOf("\n");
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.pattern.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
      nl = buf.indexOf("\n");
    }
  });
  let stderr = "";
  proc.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString("utf8");
  });
  const waitFor = (pattern: RegExp, timeoutMs = 60_000) =>
    new Promise<string>((resolve, reject) => {
      const seen = lines.find((l) => pattern.test(l));
      if (seen) return resolve(seen);
      const timer = setTimeout(
        () =>
          reject(new Error(`no log line matching ${pattern} within ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}`)),
        timeoutMs,
      );
      waiters.push({
        pattern,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      proc.once("exit", (code) =>
        reject(new Error(`ann exited (${code}) before ${pattern}; stderr: ${stderr.slice(-2000)}`)),
      );
    });
  const serving = await waitFor(/"ann serving"/);
  const port = (JSON.parse(serving) as { port: number }).port;
  const client = new AnnClient(`127.0.0.1:${port}`, credentials.createInsecure());
  return { proc, port, client, lines, waitFor };
}

export function kill9(child: Child): Promise<void> {
  child.client.close();
  return new Promise((resolve) => {
    // A process that already died (by a signal too: then only signalCode is set) exits no more.
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) return resolve();
    child.proc.once("exit", () => resolve());
    child.proc.kill("SIGKILL");
  });
}

/** A collection's settings as the in-process tests create it: f32 cosine HNSW (m 16, ef 64) unless `extra` says otherwise. */
export function testMeta(name: string, dims: number, extra: Partial<CollectionMeta> = {}): CollectionMeta {
  return {
    name,
    space: `test/${dims}`,
    dims,
    metric: "cosine",
    m: 16,
    efConstruction: 64,
    efSearch: 64,
    quantization: "f32",
    rescore: false,
    oversampling: 1,
    createdAtMs: 0,
    ...extra,
  };
}
