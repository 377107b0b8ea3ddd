import { type ChildProcess, spawn } from "node:child_process";
import { freePort } from "./net.js";

const REDIS_SERVER = process.env.REDIS_SERVER_BIN ?? "/usr/bin/redis-server";

export interface RedisServer {
  port: number;
  url: string;
  /** Its log so far (redis-server writes it to stdout). */
  log(): string;
  /** SIGKILL: no shutdown, no final save; resolves once the process is gone. */
  kill(): Promise<void>;
  /** A new redis-server on the same port and directory (so it reloads the AOF). */
  restart(): Promise<void>;
  /** SIGTERM, resolves once the process is gone. */
  stop(): Promise<void>;
}

/**
 * A private redis-server on 127.0.0.1 (a free port unless `port`), data in `dir`, with `args`
 * (e.g. `--appendonly yes`): a test can kill it, restart it and give it settings the shared
 * development Redis must not have. Resolves once it accepts connections.
 */
export async function startRedisServer(dir: string, args: string[], timeoutMs = 20_000): Promise<RedisServer> {
  const port = await freePort();
  const lines: string[] = [];
  let child: ChildProcess = await launch(port, dir, args, lines, timeoutMs);
  const gone = (c: ChildProcess, signal: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      if (c.exitCode !== null || c.signalCode !== null) return resolve();
      c.once("exit", () => resolve());
      c.kill(signal);
    });
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    log: () => lines.join(""),
    kill: () => gone(child, "SIGKILL"),
    async restart() {
      await gone(child, "SIGKILL");
      child = await launch(port, dir, args, lines, timeoutMs);
    },
    stop: () => gone(child, "SIGTERM"),
  };
}

function launch(port: number, dir: string, args: string[], lines: string[], timeoutMs: number): Promise<ChildProcess> {
  const child = spawn(
    REDIS_SERVER,
    ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--daemonize", "no", ...args],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`redis-server on port ${port} not ready within ${timeoutMs} ms:\n${lines.join("")}`));
    }, timeoutMs);
    // Only this launch's output: after a restart the log already holds the first "Ready".
    let seen = "";
    const onData = (b: Buffer) => {
      lines.push(b.toString());
      seen += b.toString();
      if (/Ready to accept connections/.test(seen)) {
        clearTimeout(timer);
        child.stdout?.off("data", onData);
        child.stdout?.on("data", (more: Buffer) => lines.push(more.toString()));
        resolve(child);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", (b: Buffer) => lines.push(b.toString()));
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`redis-server on port ${port} exited (${code ?? signal}):\n${lines.join("")}`));
    });
  });
}
