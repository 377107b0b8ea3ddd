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
import { Queue } from "bullmq";
import { DATASETS, MODELS } from "../../../../test/support/paths.js";
import { REDIS_URL, TestStack } from "../../../../test/support/stack.js";
import { QUEUE_NAME } from "../../src/queue.js";

export const SCIFACT = `${DATASETS}/scifact`;
export const MINILM = `${MODELS}/all-minilm-l6-v2`;
export const MINILM_SPACE = "all-minilm-l6-v2/384";

/** The indexer's queue under `prefix`, for a test to look at its jobs (attempts made). */
export function testQueue(prefix: string, url = REDIS_URL): Queue {
  return new Queue(QUEUE_NAME, { connection: { url }, prefix });
}

/**
 * Clients of the indexer and the ANN service, closed at the stack's `stop`; `annSec` for an ANN
 * that requires a token or TLS.
 */
export function clients(stack: TestStack, indexerPort: number, annPort: number, annSec: ClientSecurity = {}) {
  const ann = clientTransport(64 * 1024 * 1024, annSec);
  const c = {
    indexer: new IndexerClient(`127.0.0.1:${indexerPort}`, credentials.createInsecure()),
    ann: new AnnClient(`127.0.0.1:${annPort}`, ann.credentials, ann.options),
  };
  stack.defer(() => {
    c.indexer.close();
    c.ann.close();
  });
  return c;
}

export type Clients = ReturnType<typeof clients>;

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

/** A running split stack (see `startSplitStack`): its clients, the worker's output, and how to stop it all. */
export interface SplitStack {
  c: Clients;
  workerLog: string[];
  stop(): Promise<void>;
}

/**
 * The stack as deployed: the indexer API without a worker, the queue worker as its own process
 * (its model loads and inference never hold up the ANN service answering in this process), and
 * the alias `alias` naming collection `<alias>-g0`, which holds the first `docs` SciFact
 * documents, indexed. `vars` go to both the API and the worker. `stop` removes everything, the
 * queue namespace and the data directory included; a failed start stops what it had started.
 */
export async function startSplitStack(
  name: string,
  alias: string,
  docs: number,
  vars: Record<string, string>,
): Promise<SplitStack> {
  const stack = new TestStack(name);
  const workerLog: string[] = [];
  try {
    const ann = await stack.ann();
    const indexer = await stack.indexer(ann.port, { ...vars, RUN_WORKER: "false" });
    stack.workerProcess(ann.port, workerLog, vars);
    const c = clients(stack, indexer.port, ann.port);
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
    return { c, workerLog, stop: () => stack.stop() };
  } catch (err) {
    await stack.stop();
    throw err;
  }
}
