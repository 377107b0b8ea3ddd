import { Redis } from "ioredis";

export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";

/**
 * Is Redis answering at `url`? One ioredis connection, no retries, no offline queue: PING (after
 * AUTH when the URL has a password), enough to tell the user, before three services start, that
 * the queue has nowhere to live. Resolves null when it answers, else the reason.
 */
export async function pingRedis(url: string, timeoutMs = 1500): Promise<string | null> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `REDIS_URL ${JSON.stringify(url)} is not a URL (expected redis://host:port)`;
  }
  if (u.protocol !== "redis:") return `only redis:// URLs are checked here, got ${u.protocol}`;
  const host = u.hostname || "127.0.0.1";
  const port = Number(u.port || 6379);
  // No handshake beyond the connection (RESP2, no CLIENT SETINFO, no ready check): the first
  // command is ours, and a connection failure is not retried.
  const redis = new Redis({
    host,
    port,
    lazyConnect: true,
    protocol: 2,
    enableReadyCheck: false,
    disableClientInfo: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    reconnectOnError: () => false,
  });
  let socketError: NodeJS.ErrnoException | undefined;
  redis.on("error", (err: NodeJS.ErrnoException) => {
    socketError ??= err;
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`no answer from ${host}:${port} within ${timeoutMs} ms`), timeoutMs);
  });
  const ping = (async (): Promise<string | null> => {
    try {
      await redis.connect();
      // AUTH as a command, not in ioredis's handshake (which lets a password the server does not
      // expect pass with a warning): a refused AUTH is reported as before.
      if (u.password) {
        const password = decodeURIComponent(u.password);
        await (u.username ? redis.auth(decodeURIComponent(u.username), password) : redis.auth(password));
      }
      await redis.ping();
      return null;
    } catch (err) {
      const e = socketError ?? (err as NodeJS.ErrnoException);
      if (e.name === "ReplyError") return `Redis refused: ${e.message}`;
      return `${host}:${port}: ${e.code ?? e.message}`;
    }
  })();
  try {
    return await Promise.race([ping, timeout]);
  } finally {
    clearTimeout(timer);
    redis.disconnect();
  }
}
