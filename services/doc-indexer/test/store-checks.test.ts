import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, describe, it } from "node:test";
import { ConfigError, createLogger, type Logger } from "@tandem/service-kit";
import { REPO_ROOT } from "../../../test/support/paths.js";
import { type RedisServer, startRedisServer } from "../../../test/support/redis-server.js";
import { indexerConfig } from "../src/config.js";
import { checkStore } from "../src/store-checks.js";
import { MINILM } from "./support/harness.js";

interface LogLine {
  level: number;
  msg: string;
}

/** A logger whose lines land in `lines` (pino levels: 30 info, 40 warn). */
function capture(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split("\n")) if (l.trim()) lines.push(JSON.parse(l) as LogLine);
      done();
    },
  });
  return { log: createLogger("store-checks-test", "info", sink), lines };
}

/** An entry point run as its own process until it exits (a refusal) or `timeoutMs` passes. */
function runEntry(
  entry: string,
  vars: Record<string, string>,
  timeoutMs = 60_000,
): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ["--conditions=tandem-src", "--import", "tsx", entry], {
    cwd: REPO_ROOT,
    env: { ...process.env, LOG_LEVEL: "info", METRICS_PORT: "0", PORT: "0", TEACHER_BUNDLE_DIR: MINILM, ...vars },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (b: Buffer) => {
    output += b.toString();
  });
  child.stderr.on("data", (b: Buffer) => {
    output += b.toString();
  });
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

const API = "services/doc-indexer/src/main.ts";
const WORKER = "services/doc-indexer/src/worker-main.ts";

describe("start-up checks of Redis persistence and eviction (private redis-servers)", () => {
  const dirs: string[] = [];
  const servers: RedisServer[] = [];
  async function redis(args: string[]): Promise<RedisServer> {
    const dir = mkdtempSync(join(tmpdir(), "store-checks-"));
    dirs.push(dir);
    const server = await startRedisServer(dir, args);
    servers.push(server);
    return server;
  }

  after(async () => {
    for (const s of servers) await s.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("an evicting Redis (allkeys-lru): the API and the worker both refuse to start, exit 2, and say why", async () => {
    const server = await redis(["--appendonly", "yes", "--maxmemory-policy", "allkeys-lru"]);
    for (const entry of [API, WORKER]) {
      const run = await runEntry(entry, { REDIS_URL: server.url, QUEUE_PREFIX: "t-checks" });
      assert.equal(run.code, 2, `${entry} exit code\n${run.output}`);
      assert.match(run.output, new RegExp(`Redis at 127\\.0\\.0\\.1:${server.port} has maxmemory-policy allkeys-lru`));
      assert.match(run.output, /noeviction/);
      assert.doesNotMatch(run.output, /teacher loaded|doc-indexer serving|worker started/, "refused before starting");
    }
  });

  it("AOF off with REQUIRE_DURABLE_QUEUE=true: the API and the worker both refuse to start", async () => {
    const server = await redis(["--appendonly", "no", "--maxmemory-policy", "noeviction"]);
    for (const entry of [API, WORKER]) {
      const run = await runEntry(entry, { REDIS_URL: server.url, REQUIRE_DURABLE_QUEUE: "true" });
      assert.equal(run.code, 2, `${entry} exit code\n${run.output}`);
      assert.match(
        run.output,
        /REQUIRE_DURABLE_QUEUE=true and Redis at 127\.0\.0\.1:\d+ has AOF off \(appendonly no\)/,
      );
    }
  });

  it("AOF off by default: a warning naming the fix, and the start goes on", async () => {
    const server = await redis(["--appendonly", "no", "--maxmemory-policy", "noeviction"]);
    const { log, lines } = capture();
    await checkStore(indexerConfig({ REDIS_URL: server.url }), log);
    const warning = lines.find((l) => l.level === 40 && /has AOF off/.test(l.msg));
    assert.ok(warning, JSON.stringify(lines));
    assert.match(warning.msg, /REQUIRE_DURABLE_QUEUE=true/);
    const durability = lines.find((l) => l.level === 30 && /queue durability/.test(l.msg));
    assert.ok(durability);
    assert.match(JSON.stringify(durability), /none: AOF is off/);
  });

  it("AOF on with fsync always: no warning, and the durability it gives is logged", async () => {
    const server = await redis(["--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction"]);
    const { log, lines } = capture();
    await checkStore(indexerConfig({ REDIS_URL: server.url, REQUIRE_DURABLE_QUEUE: "true" }), log);
    assert.deepEqual(
      lines.filter((l) => l.level >= 40),
      [],
    );
    assert.match(
      JSON.stringify(lines),
      /AOF fsync always: an acknowledged Submit survives a Redis crash and a machine crash/,
    );
  });

  it("CONFIG renamed away (as managed Redis services do): a warning that nothing could be checked, no crash", async () => {
    const server = await redis([
      "--appendonly",
      "no",
      "--maxmemory-policy",
      "allkeys-lru",
      "--rename-command",
      "CONFIG",
      "",
    ]);
    const { log, lines } = capture();
    // Even REQUIRE_DURABLE_QUEUE=true cannot be enforced here: it warns rather than refuse blind.
    await checkStore(indexerConfig({ REDIS_URL: server.url, REQUIRE_DURABLE_QUEUE: "true" }), log);
    const warning = lines.find((l) => l.level === 40);
    assert.ok(warning, JSON.stringify(lines));
    assert.match(warning.msg, /does not allow CONFIG GET .*could not check maxmemory-policy .* nor AOF persistence/);
  });

  it("refusals are configuration errors: in-process callers get a ConfigError naming the setting", async () => {
    const server = await redis(["--appendonly", "yes", "--maxmemory-policy", "volatile-ttl"]);
    await assert.rejects(
      checkStore(indexerConfig({ REDIS_URL: server.url }), capture().log),
      (err: unknown) => err instanceof ConfigError && /maxmemory-policy volatile-ttl/.test(err.message),
    );
  });
});
