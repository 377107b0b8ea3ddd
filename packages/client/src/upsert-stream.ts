import { once } from "node:events";
import { type ClientWritableStream, Metadata } from "@grpc/grpc-js";
import type { AnnClient, Point, UpsertRequest, UpsertResponse } from "@tandem/proto";

export interface UpsertStreamOptions {
  /** Points per message (default 256): small enough for the message limit at 768-d, large enough to batch. */
  pointsPerMessage?: number;
  /** ms from the stream's start; undefined: none. */
  deadlineMs?: number;
  metadata?: Metadata;
  /** Turns a transport failure into the caller's error type. */
  fail: (err: unknown) => unknown;
}

/**
 * One Upsert client stream. Points are written as they come (the ANN service indexes them while
 * the caller prepares the next ones); `end()` resolves only when the service acknowledged every
 * point as durable. Not retried: a stream cannot be replayed from points already handed over.
 */
export class UpsertStream {
  private readonly call: ClientWritableStream<UpsertRequest>;
  private readonly done: Promise<UpsertResponse>;
  private readonly pointsPerMessage: number;
  private readonly fail: (err: unknown) => unknown;
  private pending: Point[] = [];
  private sent = 0;
  private failure: unknown = null;

  constructor(
    client: AnnClient,
    private readonly collection: string,
    opts: UpsertStreamOptions,
  ) {
    this.pointsPerMessage = opts.pointsPerMessage ?? 256;
    this.fail = opts.fail;
    let resolve!: (r: UpsertResponse) => void;
    let reject!: (e: unknown) => void;
    this.done = new Promise<UpsertResponse>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Marked handled: a failure surfaces through write()/end(), not as an unhandled rejection.
    this.done.catch(() => {});
    const deadline = opts.deadlineMs === undefined ? undefined : Date.now() + opts.deadlineMs;
    this.call = client.upsert(opts.metadata ?? new Metadata(), { deadline }, (err, res) => {
      if (err) {
        this.failure = this.fail(err);
        reject(this.failure);
      } else resolve(res);
    });
  }

  /** Queues points; resolves when the transport can take more (back-pressure from the ANN service). */
  async write(points: Point[]): Promise<void> {
    if (this.failure) throw this.failure;
    this.pending.push(...points);
    while (this.pending.length >= this.pointsPerMessage) {
      await this.send(this.pending.splice(0, this.pointsPerMessage));
    }
  }

  private async send(points: Point[]): Promise<void> {
    this.sent += points.length;
    // grpc-js reports a failed client stream through its callback, never as an "error" event:
    // waiting on "drain" alone would wait forever for a stream that has ended.
    if (!this.call.write({ collection: this.collection, points }))
      await Promise.race([once(this.call, "drain"), this.done]);
  }

  /** Flushes, half-closes, and waits for the acknowledgement; checks the count the service reports. */
  async end(): Promise<number> {
    if (this.pending.length > 0) await this.send(this.pending.splice(0));
    this.call.end();
    const res = await this.done;
    if (res.upserted !== this.sent) {
      throw new Error(`ANN acknowledged ${res.upserted} of ${this.sent} points written to "${this.collection}"`);
    }
    return res.upserted;
  }

  cancel(): void {
    this.call.cancel();
  }
}
