import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { DATASETS, MODELS, REPO_ROOT } from "../../../../test/support/paths.js";
import { annConfig, startAnn } from "../../../ann/src/service.js";
import { type IndexerConfig, indexerConfig } from "../../src/config.js";
import { dropNamespace, QUEUE_NAME } from "../../src/queue.js";
import { startIndexer } from "../../src/service.js";

export const SCIFACT = `${DATASETS}/scifact`;
export const MINILM = `${MODELS}/all-minilm-l6-v2`;
export const MINILM_SPACE = "all-minilm-l6-v2/384";
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

/** The indexer's queue under `prefix`, for a test to look at its jobs (attempts made). */
export function testQueue(prefix: string, url = REDIS_URL): Queue {
  return new Queue(QUEUE_NAME, { connection: { url }, prefix });
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

/** A running split stack (see `startSplitStack`): its clients, the worker's output, and how to stop it all. */
export interface SplitStack {
  c: ReturnType<typeof clients>;
  workerLog: string[];
  stop(): Promise<void>;
}

/**
 * The stack as deployed: the indexer API without a worker, the queue worker as its own process
 * (its model loads and inference never hold up the ANN service answering in this process), and
 * the alias `alias` naming collection `<alias>-g0`, which holds the first `docs` SciFact
 * documents, indexed. `vars` go to both the API and the worker. `stop` removes everything,
 * the queue namespace and the data directory included; a failed start stops what it had started.
 */
export async function startSplitStack(
  name: string,
  alias: string,
  docs: number,
  vars: Record<string, string>,
): Promise<SplitStack> {
  const prefix = testPrefix(name);
  const dataDir = mkdtempSync(join(tmpdir(), `indexer-${name}-`));
  const workerLog: string[] = [];
  const undo: (() => Promise<void> | void)[] = [
    () => rmSync(dataDir, { recursive: true, force: true }),
    () => cleanup(prefix),
  ];
  const stop = async () => {
    for (const step of undo.splice(0).reverse()) await step();
  };
  try {
    const ann = await startAnnForTest(dataDir);
    undo.push(() => ann.stop());
    const indexer = await startIndexer(testConfig(prefix, ann.port, { ...vars, RUN_WORKER: "false" }));
    undo.push(() => indexer.stop());
    const worker = spawnWorkerProcess(prefix, ann.port, workerLog, vars);
    undo.push(async () => {
      if (worker.exitCode === null && worker.signalCode === null) {
        worker.kill("SIGTERM");
        await exited(worker);
      }
    });
    const c = clients(indexer.port, ann.port);
    undo.push(() => {
      c.indexer.close();
      c.ann.close();
    });
    await createCollection(c.ann, `${alias}-g0`);
    await unary(c.ann.setAlias.bind(c.ann), { alias, collection: `${alias}-g0` });
    const sub = await unary(c.indexer.submitFile.bind(c.indexer), {
      collection: alias,
      path: `${SCIFACT}/corpus.jsonl`,
      limit: docs,
    });
    const st = await waitJob(c.indexer, sub.jobId);
    if (st.state !== JobState.JOB_STATE_COMPLETED) {
      throw new Error(
        `indexing ${alias}'s first ${docs} documents: ${JobState[st.state]} ${st.error}\n${workerLog.join("")}`,
      );
    }
    return { c, workerLog, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
