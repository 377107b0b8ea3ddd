import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { credentials } from "@grpc/grpc-js";
import {
  AnnClient,
  type Document,
  IndexerClient,
  JobState,
  type JobStatusResponse,
  Metric,
  type SubmitResponse,
} from "@tandem/proto";
import { type ClientSecurity, clientTransport, unary } from "@tandem/service-kit";
import { Redis } from "ioredis";
import { DATASETS, MODELS, REPO_ROOT } from "../../../../test/support/paths.js";
import { annConfig, startAnn } from "../../../ann/src/service.js";
import { type IndexerConfig, indexerConfig } from "../../src/config.js";
import { dropNamespace } from "../../src/queue.js";

export const SCIFACT = `${DATASETS}/scifact`;
export const MINILM = `${MODELS}/all-minilm-l6-v2`;
export const MINILM_SPACE = "all-minilm-l6-v2/384";
/** The same model quantised to int8: a second teacher bundle in the same space. */
export const MINILM_INT8 = `${MODELS}/all-minilm-l6-v2-int8`;
export const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

export interface AnnHandle {
  port: number;
  stop(): Promise<void>;
}

/**
 * The real ANN service (services/ann), in-process, storing under `dataDir`; `vars` adds to its
 * config (e.g. AUTH_TOKENS_FILE). Starting it again on the same port and directory reopens what
 * the previous one persisted.
 */
export async function startAnnForTest(
  dataDir: string,
  port = 0,
  vars: Record<string, string> = {},
): Promise<AnnHandle> {
  const ann = await startAnn(
    annConfig({
      PORT: String(port),
      HOST: "127.0.0.1",
      DATA_DIR: dataDir,
      LOG_LEVEL: "warn",
      METRICS_PORT: "0",
      ...vars,
    }),
  );
  return { port: ann.port, stop: () => ann.stop() };
}

/** A queue namespace of its own per test file run; removed by `cleanup`. */
export function testPrefix(name: string): string {
  return `t-${name}-${process.pid}-${Date.now().toString(36)}`;
}

export function testConfig(prefix: string, annPort: number, vars: Record<string, string> = {}): IndexerConfig {
  return indexerConfig({
    PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: "warn",
    REDIS_URL,
    QUEUE_PREFIX: prefix,
    ANN_ADDR: `127.0.0.1:${annPort}`,
    TEACHER_BUNDLE_DIR: MINILM,
    PROVIDERS: "cpu",
    INTRA_OP_THREADS: "2",
    SHUTDOWN_GRACE_MS: "2000",
    ...vars,
  });
}

export async function cleanup(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL);
  await dropNamespace(redis, prefix);
  redis.disconnect();
}

/** Clients of the indexer and the ANN service; `annSec` for an ANN that requires a token or TLS. */
export function clients(indexerPort: number, annPort: number, annSec: ClientSecurity = {}) {
  const ann = clientTransport(64 * 1024 * 1024, annSec);
  return {
    indexer: new IndexerClient(`127.0.0.1:${indexerPort}`, credentials.createInsecure()),
    ann: new AnnClient(`127.0.0.1:${annPort}`, ann.credentials, ann.options),
  };
}

export function createCollection(ann: AnnClient, name: string, space = MINILM_SPACE, dims = 384) {
  return unary(ann.createCollection.bind(ann), { name, space, dims, metric: Metric.METRIC_COSINE, index: undefined });
}

/** Client-streams documents in messages of `perMessage`. */
export function submit(
  indexer: IndexerClient,
  collection: string,
  docs: Document[],
  perMessage = 50,
): Promise<SubmitResponse> {
  return new Promise((resolve, reject) => {
    const call = indexer.submit((err, res) => (err ? reject(err) : resolve(res)));
    for (let i = 0; i < docs.length || i === 0; i += perMessage) {
      call.write({ collection, documents: docs.slice(i, i + perMessage) });
    }
    call.end();
  });
}

export function jobStatus(indexer: IndexerClient, jobId: string): Promise<JobStatusResponse> {
  return unary(indexer.jobStatus.bind(indexer), { jobId });
}

export async function waitJob(
  indexer: IndexerClient,
  jobId: string,
  timeoutMs = 120_000,
  until = (s: JobStatusResponse) => s.state === JobState.JOB_STATE_COMPLETED || s.state === JobState.JOB_STATE_FAILED,
  pollMs = 100,
): Promise<JobStatusResponse> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await jobStatus(indexer, jobId);
    if (until(s)) return s;
    if (Date.now() > deadline) throw new Error(`job ${jobId} still ${JobState[s.state]} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

export interface CorpusDoc {
  id: string;
  title: string;
  text: string;
}

/** The first `n` documents of a BEIR corpus. */
export function loadCorpus(dir: string, n: number): CorpusDoc[] {
  const out: CorpusDoc[] = [];
  for (const line of readFileSync(`${dir}/corpus.jsonl`, "utf8").split("\n")) {
    if (out.length >= n) break;
    if (!line.trim()) continue;
    const d = JSON.parse(line) as { _id: string; title: string; text: string };
    out.push({ id: d._id, title: d.title, text: d.text });
  }
  return out;
}

/** A queue worker as its own process (`worker-main.ts`), its output collected into `log`. */
export function spawnWorkerProcess(
  prefix: string,
  annPort: number,
  log: string[],
  vars: Record<string, string> = {},
): ChildProcess {
  const child = spawn(
    process.execPath,
    ["--conditions=tandem-src", "--import", "tsx", "services/doc-indexer/src/worker-main.ts"],
    {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        REDIS_URL,
        QUEUE_PREFIX: prefix,
        ANN_ADDR: `127.0.0.1:${annPort}`,
        TEACHER_BUNDLE_DIR: MINILM,
        PROVIDERS: "cpu",
        INTRA_OP_THREADS: "2",
        LOG_LEVEL: "info",
        METRICS_PORT: "0",
        ...vars,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  child.stdout?.on("data", (b: Buffer) => log.push(b.toString()));
  child.stderr?.on("data", (b: Buffer) => log.push(b.toString()));
  return child;
}

export function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
}
