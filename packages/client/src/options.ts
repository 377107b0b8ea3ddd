import type { ClientSecurity } from "@tandem/service-kit";

/** Backoff on UNAVAILABLE for the calls that are safe to repeat (each method's comment says whether it is). */
export interface RetryOptions {
  /** Give up once this much time has passed since the first failure of a streak; 0 never retries. */
  limitMs: number;
  /** First pause, doubled after every further failure (default 250 ms, ±20 % jitter). */
  firstDelayMs?: number;
  /** Longest pause (default 8 s). */
  maxDelayMs?: number;
}

/** How to reach one service. */
export interface ServiceOptions {
  /** host:port */
  address: string;
  /**
   * TLS and caller identity, as the services accept them: `caFile` turns TLS on (with `serverName`
   * when the certificate names another host), `certFile` + `keyFile` present a client certificate
   * (mTLS), `tokenFile` sends its content as the bearer token, re-read when it changes.
   */
  security?: ClientSecurity;
  /** A bearer token given as a value, for callers that hold it in memory rather than in a file. */
  token?: string;
  /** Deadline of a unary call unless the call says otherwise (default 30 s). */
  deadlineMs?: number;
  /** Deadline of a client stream (Upsert, Submit) unless the call says otherwise (default 10 min). */
  streamDeadlineMs?: number;
  /** Retries on UNAVAILABLE for idempotent calls (default: for up to 10 s); false: none. */
  retry?: RetryOptions | false;
  /** Largest message sent or received (default 64 MiB: a 1000-hit search with vectors, a batch of 768-d points). */
  maxMessageBytes?: number;
}

export interface CallOptions {
  /** Milliseconds from the call's start; null: no deadline. Default: the service's `deadlineMs`. */
  deadlineMs?: number | null;
  /** Cancels the call (it then fails with CANCELLED) and any pause between retries. */
  signal?: AbortSignal;
}

export const DEFAULTS = {
  deadlineMs: 30_000,
  streamDeadlineMs: 600_000,
  retry: { limitMs: 10_000 } satisfies RetryOptions,
  maxMessageBytes: 64 * 1024 * 1024,
} as const;
