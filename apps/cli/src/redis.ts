import { connect } from "node:net";

export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";

/**
 * Is Redis answering at `url`? A raw RESP PING (with AUTH when the URL has a
 * password) over one socket: enough to tell the user, before three services
 * start, that the queue has nowhere to live, without pulling a Redis client
 * into the CLI. Resolves null when it answers, else the reason.
 */
export function pingRedis(url: string, timeoutMs = 1500): Promise<string | null> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return Promise.resolve(`REDIS_URL ${JSON.stringify(url)} is not a URL (expected redis://host:port)`);
  }
  if (u.protocol !== "redis:") return Promise.resolve(`only redis:// URLs are checked here, got ${u.protocol}`);
  const host = u.hostname || "127.0.0.1";
  const port = Number(u.port || 6379);
  const commands: string[][] = [];
  if (u.password) {
    commands.push(
      u.username
        ? ["AUTH", decodeURIComponent(u.username), decodeURIComponent(u.password)]
        : ["AUTH", decodeURIComponent(u.password)],
    );
  }
  commands.push(["PING"]);
  const wire = commands
    .map((c) => `*${c.length}\r\n${c.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`)
    .join("");

  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let answer = "";
    const done = (reason: string | null) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(reason);
    };
    const timer = setTimeout(() => done(`no answer from ${host}:${port} within ${timeoutMs} ms`), timeoutMs);
    socket.on("connect", () => socket.write(wire));
    socket.on("error", (err) => done(`${host}:${port}: ${(err as NodeJS.ErrnoException).code ?? err.message}`));
    socket.on("data", (chunk) => {
      answer += chunk.toString("latin1");
      if (answer.startsWith("-")) done(`Redis refused: ${answer.split("\r\n")[0]?.slice(1)}`);
      else if (answer.includes("+PONG")) done(null);
    });
  });
}
