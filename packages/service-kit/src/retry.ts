import { type ServiceError, status } from "@grpc/grpc-js";

/** How long a client keeps retrying a call that answers UNAVAILABLE before it gives up. */
export const DEFAULT_RETRY_LIMIT_MS = 120_000;

export interface RetryPolicy {
  /** Give up once this much time has passed since the first failure of the streak. */
  limitMs: number;
  /** Statuses worth retrying; default UNAVAILABLE. */
  codes?: readonly status[];
  /** First pause; doubled after every further failure (default 250 ms). */
  firstDelayMs?: number;
  /** Longest pause (default 8 s). */
  maxDelayMs?: number;
  signal?: AbortSignal;
  /** Called before each pause: what failed, how long the client has waited and will wait next. */
  onRetry?: (notice: RetryNotice) => void;
}

export interface RetryNotice {
  error: ServiceError;
  attempt: number;
  /** Since the first failure of this streak. */
  waitedMs: number;
  delayMs: number;
  limitMs: number;
}

function isServiceError(err: unknown): err is ServiceError {
  return typeof err === "object" && err !== null && typeof (err as { code?: unknown }).code === "number";
}

/**
 * Runs `call` until it succeeds, retrying the statuses in `policy.codes` with exponential backoff
 * (±20 % jitter, so clients that lost the same server do not come back in step) until
 * `policy.limitMs` has passed since the first failure; then, or on any other error, throws the
 * last error unchanged. Only for calls that are safe to repeat (reads such as JobStatus).
 */
export async function retryUnavailable<T>(call: () => Promise<T>, policy: RetryPolicy): Promise<T> {
  const codes = policy.codes ?? [status.UNAVAILABLE];
  const first = policy.firstDelayMs ?? 250;
  const max = policy.maxDelayMs ?? 8000;
  let started = 0;
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (!isServiceError(err) || !codes.includes(err.code)) throw err;
      started ||= Date.now();
      const waitedMs = Date.now() - started;
      const delayMs = Math.round(Math.min(first * 2 ** Math.min(attempt - 1, 20), max) * (0.8 + 0.4 * Math.random()));
      if (waitedMs + delayMs > policy.limitMs) throw err;
      policy.onRetry?.({ error: err, attempt, waitedMs, delayMs, limitMs: policy.limitMs });
      await pause(delayMs, policy.signal);
      if (policy.signal?.aborted) throw err;
    }
  }
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
