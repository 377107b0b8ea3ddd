import { once } from "node:events";
import { type ClientWritableStream, status } from "@grpc/grpc-js";
import {
  type Document,
  IndexerClient,
  type IndexerInfoResponse,
  JobState,
  type JobStatusResponse,
  type ReindexRequest,
  type SubmitRequest,
  type SubmitResponse,
} from "@tandem/proto";
import { DEFAULT_RETRY_LIMIT_MS, type RetryNotice } from "@tandem/service-kit";
import type { CallOptions, ServiceOptions } from "./options.js";
import { ServiceClient } from "./service-client.js";

/** A document to index: `payloadJson` (a JSON object, optional) is stored with its vector, beside the text. */
export type SubmitDocument = Pick<Document, "id" | "text"> & { payloadJson?: string };

export interface FollowOptions {
  /** Pause between two JobStatus polls (default 500 ms). */
  intervalMs?: number;
  /**
   * How long one outage (the indexer or its Redis away: UNAVAILABLE, or polls past their deadline)
   * is ridden out with backoff before the follow fails (default 120 s). JobStatus is a read, so
   * repeating it is safe.
   */
  retryForMs?: number;
  /** Deadline of each poll (default 30 s: the API may share its process and cores with a busy teacher worker). */
  pollDeadlineMs?: number;
  /** Told before each pause of an outage. */
  onRetry?: (notice: RetryNotice) => void;
  signal?: AbortSignal;
}

export const isFinished = (s: JobStatusResponse) =>
  s.state === JobState.JOB_STATE_COMPLETED || s.state === JobState.JOB_STATE_FAILED;

/**
 * The indexer. Submissions and reindexes create jobs, so they are sent once; status, listings and
 * Info are reads, retried on UNAVAILABLE.
 */
export class Indexer extends ServiceClient<IndexerClient> {
  constructor(options: ServiceOptions) {
    super(IndexerClient, "Indexer", options);
  }

  /**
   * Streams `documents` into one indexing job on `collection`, in messages of `docsPerMessage`,
   * honouring back-pressure. Sent once. Resolves with the job id and the documents refused, each
   * with its position and reason.
   */
  async submit(
    collection: string,
    documents: Iterable<SubmitDocument> | AsyncIterable<SubmitDocument>,
    opts: CallOptions & { docsPerMessage?: number } = {},
  ): Promise<SubmitResponse> {
    const perMessage = opts.docsPerMessage ?? 256;
    const deadlineMs = this.streamDeadline(opts);
    let call!: ClientWritableStream<SubmitRequest>;
    const answer = new Promise<SubmitResponse>((resolve, reject) => {
      call = this.client.submit(
        this.metadata(),
        { deadline: deadlineMs === undefined ? undefined : Date.now() + deadlineMs },
        (err, res) => (err ? reject(this.fail(err, "Submit")) : resolve(res)),
      );
    });
    // A refusal mid-stream ends the reading of `documents`; it is thrown by the `return` below.
    let failed = false;
    answer.catch(() => {
      failed = true;
    });
    opts.signal?.addEventListener("abort", () => call.cancel(), { once: true });
    try {
      let batch: Document[] = [];
      for await (const d of documents) {
        if (failed) break;
        batch.push({ id: d.id, text: d.text, payloadJson: d.payloadJson ?? "" });
        if (batch.length >= perMessage) {
          // The answer settles a stream that failed (grpc-js sends no "error" event for it).
          if (!call.write({ collection, documents: batch })) await Promise.race([once(call, "drain"), answer]);
          batch = [];
        }
      }
      if (!failed) {
        // Always one last message, even empty: it names the collection of an empty submission.
        call.write({ collection, documents: batch });
        call.end();
      }
    } catch (err) {
      call.cancel();
      throw err;
    }
    return answer;
  }

  /** A file the indexer's workers read themselves (a server-side path); `limit` 0: all of it. Sent once. */
  submitFile(collection: string, path: string, limit = 0, opts: CallOptions = {}): Promise<SubmitResponse> {
    return this.call("SubmitFile", this.client.submitFile, { collection, path, limit }, opts, "once");
  }

  /** Idempotent. NOT_FOUND (an RpcError) for an unknown job. */
  jobStatus(jobId: string, opts: CallOptions = {}): Promise<JobStatusResponse> {
    return this.call("JobStatus", this.client.jobStatus, { jobId }, opts, "idempotent");
  }

  /** Idempotent. The latest jobs first. */
  async listJobs(limit = 20, opts: CallOptions = {}): Promise<JobStatusResponse[]> {
    return (await this.call("ListJobs", this.client.listJobs, { limit }, opts, "idempotent")).jobs;
  }

  /**
   * Yields the job's status every `intervalMs` until it completes or fails (the last status
   * yielded is the final one). An outage of the indexer or its Redis does not end the follow: each
   * poll is retried with backoff for up to `retryForMs`; a longer outage or any other error is thrown.
   */
  async *follow(jobId: string, opts: FollowOptions = {}): AsyncGenerator<JobStatusResponse, void> {
    const poll = () =>
      this.call(
        "JobStatus",
        this.client.jobStatus,
        { jobId },
        { deadlineMs: opts.pollDeadlineMs ?? 30_000, signal: opts.signal },
        "idempotent",
        // A slow answer is not a failed job either: retried like an outage.
        {
          limitMs: opts.retryForMs ?? DEFAULT_RETRY_LIMIT_MS,
          codes: [status.UNAVAILABLE, status.DEADLINE_EXCEEDED],
          onRetry: opts.onRetry,
        },
      );
    for (;;) {
      const s = await poll();
      yield s;
      if (isFinished(s)) return;
      if (opts.signal?.aborted) throw new Error("interrupted");
      await new Promise((r) => setTimeout(r, opts.intervalMs ?? 500));
    }
  }

  /**
   * Re-embeds the documents behind `alias` with a new teacher into a new collection generation,
   * checks parity and swaps the alias. Sent once: it starts a job (follow it like an indexing job).
   */
  reindex(request: ReindexRequest, opts: CallOptions = {}): Promise<SubmitResponse> {
    return this.call("Reindex", this.client.reindex, request, opts, "once");
  }

  /** Idempotent. The teacher's model card (its space is the one to create collections in) and the queue. */
  info(opts: CallOptions = {}): Promise<IndexerInfoResponse> {
    return this.call("Info", this.client.info, {}, opts, "idempotent");
  }
}
