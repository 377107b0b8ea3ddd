import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { annConfig, startAnn } from "@tandem/ann";
import {
  dropNamespace,
  type IndexerConfig,
  indexerConfig,
  type RunningIndexer,
  startIndexer,
} from "@tandem/doc-indexer";
import { Redis } from "ioredis";
import { freePort } from "./net.js";
import { bundleDir, REPO_ROOT } from "./paths.js";
import { startServiceProcess } from "./process.js";
import { startRedisServer } from "./redis-server.js";

/** The development Redis every indexer test uses, each under a queue namespace of its own. */
export const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

/** A service this stack started, on 127.0.0.1. */
export interface Served {
  port: number;
  /** host:port, as clients and the other services dial it. */
  addr: string;
  stop(): Promise<void>;
}

/**
 * The services one test file runs against, on free loopback ports with the real Redis, and all
 * they leave behind: `stop` undoes every start in reverse order (however far a failed set-up got),
 * then drops the queue namespaces and removes the scratch directory. Services run in this process
 * (`ann`, `indexer`: a test can reach into them, restart them on the same port) or as processes of
 * their own main.ts, as deployed (`annProcess`, `indexerProcess`, `encoderProcess`, `workerProcess`).
 */
export class TestStack {
  /** The queue namespace of this stack's indexers. */
  readonly prefix: string;
  /** A directory of this stack alone: ANN data, files a test writes. */
  readonly scratch: string;
  /** Where the indexers find Redis: the shared one, or this stack's own (`privateRedis`). */
  redisUrl = REDIS_URL;
  private ownRedis = false;
  private readonly prefixes = new Set<string>();
  private readonly undo: Array<() => unknown> = [];

  constructor(name: string) {
    this.prefix = `t-${name}-${process.pid}-${Date.now().toString(36)}`;
    this.scratch = mkdtempSync(join(tmpdir(), `tandem-${name}-`));
    this.defer(() => rmSync(this.scratch, { recursive: true, force: true }));
    // A private Redis goes away with its data; the shared one keeps what is not dropped.
    this.defer(async () => {
      if (!this.ownRedis) for (const p of this.prefixes) await dropNamespaceAt(REDIS_URL, p);
    });
  }

  /** A queue namespace of its own under this stack's prefix (another indexer, a `tandem up`), dropped at `stop`. */
  namespace(name: string): string {
    const prefix = `${this.prefix}-${name}`;
    this.prefixes.add(prefix);
    return prefix;
  }

  /** Runs `step` at `stop`, before everything started earlier is stopped. */
  defer(step: () => unknown): void {
    this.undo.push(step);
  }

  async stop(): Promise<void> {
    for (const step of this.undo.splice(0).reverse()) await step();
  }

  /** A redis-server of this stack alone (it can be killed and restarted), with `args`; the indexers started after use it. */
  async privateRedis(args: string[]) {
    const redis = await startRedisServer(this.scratch, args);
    this.defer(() => redis.stop());
    this.redisUrl = redis.url;
    this.ownRedis = true;
    return redis;
  }

  /**
   * The real ANN service in this process, data under `dataDir` (default: the scratch's `ann`);
   * started again on the same port and directory, it reopens what the previous one persisted.
   */
  async ann(vars: Record<string, string> = {}, opts: { port?: number; dataDir?: string } = {}): Promise<Served> {
    const ann = await startAnn(
      annConfig({
        PORT: String(opts.port ?? 0),
        HOST: "127.0.0.1",
        DATA_DIR: opts.dataDir ?? join(this.scratch, "ann"),
        LOG_LEVEL: "warn",
        METRICS_PORT: "0",
        ...vars,
      }),
    );
    let stopped: Promise<void> | null = null;
    const stop = () => {
      stopped ??= ann.stop();
      return stopped;
    };
    this.defer(stop);
    return { port: ann.port, addr: `127.0.0.1:${ann.port}`, stop };
  }

  /**
   * An indexer's configuration against the ANN service on `annPort`: this stack's Redis and queue
   * namespace (or `prefix`, dropped at `stop` as well), MiniLM as the teacher on the CPU; `vars` win.
   */
  indexerConfig(annPort: number, vars: Record<string, string> = {}, prefix = this.prefix): IndexerConfig {
    this.prefixes.add(prefix);
    return indexerConfig({
      PORT: "0",
      HOST: "127.0.0.1",
      LOG_LEVEL: "warn",
      REDIS_URL: this.redisUrl,
      QUEUE_PREFIX: prefix,
      ANN_ADDR: `127.0.0.1:${annPort}`,
      TEACHER_BUNDLE_DIR: bundleDir("all-minilm-l6-v2"),
      PROVIDERS: "cpu",
      INTRA_OP_THREADS: "2",
      SHUTDOWN_GRACE_MS: "2000",
      ...vars,
    });
  }

  /** The indexer (API, and its worker unless RUN_WORKER=false) in this process; see `indexerConfig`. */
  async indexer(annPort: number, vars: Record<string, string> = {}, prefix = this.prefix): Promise<RunningIndexer> {
    const indexer = await startIndexer(this.indexerConfig(annPort, vars, prefix));
    this.defer(() => indexer.stop());
    return indexer;
  }

  /**
   * A queue worker as its own process (`worker-main.ts`) with `indexerConfig`'s settings and
   * `vars`, its output collected into `log`; sent SIGTERM at `stop` unless it is gone already.
   */
  workerProcess(annPort: number, log: string[], vars: Record<string, string> = {}): ChildProcess {
    const config = this.indexerConfig(annPort);
    const child = spawn(
      process.execPath,
      ["--conditions=tandem-src", "--import", "tsx", "services/doc-indexer/src/worker-main.ts"],
      {
        cwd: REPO_ROOT,
        env: {
          ...process.env,
          REDIS_URL: config.REDIS_URL,
          QUEUE_PREFIX: config.QUEUE_PREFIX,
          ANN_ADDR: config.ANN_ADDR,
          TEACHER_BUNDLE_DIR: config.TEACHER_BUNDLE_DIR,
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
    this.defer(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        await exited(child);
      }
    });
    return child;
  }

  /** The query encoder as its own process, serving the bundle in directory `bundle` (see `bundleDir`). */
  encoderProcess(bundle: string, vars: Record<string, string> = {}): Promise<Served> {
    return this.serviceProcess("services/query-encoder/src/main.ts", {
      MODEL_DIR: bundle,
      INTRA_OP_THREADS: "1",
      ...vars,
    });
  }

  /** The ANN service as its own process, data under the scratch's `ann`. */
  annProcess(vars: Record<string, string> = {}): Promise<Served> {
    return this.serviceProcess("services/ann/src/main.ts", { DATA_DIR: join(this.scratch, "ann"), ...vars });
  }

  /**
   * The indexer (API and a teacher worker) as its own process, writing to the ANN service at
   * `annAddr` with the teacher bundle in directory `teacher`, under this stack's namespace.
   */
  indexerProcess(annAddr: string, teacher: string, vars: Record<string, string> = {}): Promise<Served> {
    this.prefixes.add(this.prefix);
    return this.serviceProcess(
      "services/doc-indexer/src/main.ts",
      {
        REDIS_URL: this.redisUrl,
        QUEUE_PREFIX: this.prefix,
        ANN_ADDR: annAddr,
        TEACHER_BUNDLE_DIR: teacher,
        PROVIDERS: "cpu",
        INTRA_OP_THREADS: "1",
        ...vars,
      },
      // A teacher's bundle is hashed and its graph loaded before the indexer reports SERVING.
      300_000,
    );
  }

  private async serviceProcess(entry: string, env: Record<string, string>, timeoutMs?: number): Promise<Served> {
    const svc = await startServiceProcess(entry, await freePort(), env, { timeoutMs });
    const stop = () => svc.stop();
    this.defer(stop);
    return { port: svc.port, addr: `127.0.0.1:${svc.port}`, stop };
  }
}

/** Resolves once `child` has exited (at once when it already has). */
export function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
}

async function dropNamespaceAt(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url);
  try {
    await dropNamespace(redis, prefix);
  } finally {
    redis.disconnect();
  }
}
