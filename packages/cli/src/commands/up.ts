import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, createReadStream, existsSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseCorpusLine, streamCorpusFile } from "@tandem/doc-indexer";
import { JobState } from "@tandem/proto";
import { unary } from "@tandem/service-kit";
import { address } from "../addresses.js";
import { annClient, collectionInfo, describeError, ensureCollection, indexerClient, loopbackEnv } from "../clients.js";
import { indexerSpace } from "../collection-space.js";
import { checkHealth } from "../health.js";
import { followJob, jobLine } from "../jobs.js";
import { bundleExists, bundlePath, EXAMPLE_CORPUS, REPO_ROOT, STATE_DIR, userPath } from "../paths.js";
import { DEFAULT_REDIS_URL, pingRedis } from "../redis.js";

/**
 * `tandem up`: the whole stack on one machine, as child processes that run the
 * services' own entry points (the same processes a deployment runs), with
 * embedded defaults: the distilled student in the query encoder, the teacher in
 * the indexer's worker on CPU, the ANN data under .tandem/. Then an example
 * corpus (examples/tandem-docs: the repository's own documentation, so nothing
 * outside the checkout is needed) is indexed through the real indexer, and the
 * services stay up until Ctrl-C.
 */
export interface UpFlags {
  /** Index only the first `docs` documents; absent: all of them. */
  docs?: number;
  corpus?: string;
  collection: string;
  teacher?: string;
  student?: string;
  index: boolean;
  /** Seconds the indexing follow retries an unavailable indexer or Redis (--retry-for). */
  retryFor: number;
}

interface Pair {
  teacher: string;
  student: string;
  note: string | null;
}

/** The best teacher/student pair that is built, preferring the asymmetric one. */
export function choosePair(flags: Pick<UpFlags, "teacher" | "student">): Pair {
  if (flags.teacher || flags.student) {
    const teacher = bundlePath(flags.teacher ?? "all-mpnet-base-v2-int8");
    const student = bundlePath(flags.student ?? "leaf-minilm-mpnet");
    for (const b of [teacher, student]) if (!bundleExists(b)) throw new Error(`bundle ${b} is not built`);
    return { teacher, student, note: null };
  }
  const student = bundlePath("leaf-minilm-mpnet");
  // int8 first: the same space as fp32, and two to three times faster on a CPU,
  // which is what keeps the quickstart's indexing to minutes.
  const teacher = ["all-mpnet-base-v2-int8", "all-mpnet-base-v2"].map(bundlePath).find(bundleExists);
  if (teacher && bundleExists(student)) return { teacher, student, note: null };
  const small = ["all-minilm-l6-v2-int8", "all-minilm-l6-v2"].map(bundlePath).find(bundleExists);
  if (!small) throw new Error("no model bundle is built: run scripts/setup.sh (it builds them into .cache/models)");
  return {
    teacher: small,
    student: small,
    note:
      "the distilled student (leaf-minilm-mpnet) or the teacher (all-mpnet-base-v2) is not built yet, so both sides use " +
      `${small.split("/").pop()} (symmetric). Build them with scripts/setup.sh for the asymmetric pair.`,
  };
}

function portOf(addr: string): number {
  const port = Number(addr.slice(addr.lastIndexOf(":") + 1));
  if (!Number.isInteger(port) || port <= 0) throw new Error(`address ${addr} has no port`);
  return port;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

interface Service {
  name: string;
  entry: string;
  addr: string;
  env: Record<string, string>;
  log: string;
  child?: ChildProcess;
  exited?: Promise<void>;
}

const say = (line: string) => process.stderr.write(`${line}\n`);

function logTail(path: string, lines = 15): string {
  if (!existsSync(path)) return "";
  return readFileSync(path, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
}

function start(
  svc: Service,
  base: NodeJS.ProcessEnv,
  onExit: (code: number | null, signal: NodeJS.Signals | null) => void,
): void {
  const fd = openSync(svc.log, "a");
  // Own process group (detached): Ctrl-C in the terminal reaches only this
  // process, which then stops the services in order (indexer before the ANN
  // service it writes to, the encoder last) instead of all at once.
  const child = spawn(process.execPath, ["--conditions=tandem-src", "--import", "tsx", svc.entry], {
    cwd: REPO_ROOT,
    env: { ...base, LOG_LEVEL: "info", METRICS_PORT: "0", HOST: "127.0.0.1", ...svc.env },
    stdio: ["ignore", fd, fd],
    detached: true,
  });
  closeSync(fd);
  svc.child = child;
  svc.exited = new Promise((resolve) => child.once("exit", () => resolve()));
  child.once("exit", onExit);
}

async function stop(svc: Service, graceMs = 20_000): Promise<void> {
  const child = svc.child;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await svc.exited;
  clearTimeout(timer);
}

async function waitServing(svc: Service, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if ((await checkHealth(svc.addr, 1000)) === "SERVING") return;
    const child = svc.child as ChildProcess;
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `${svc.name} exited (${child.exitCode ?? child.signalCode}) before serving; the end of ${svc.log}:\n${logTail(svc.log)}`,
      );
    }
    if (Date.now() > deadline) {
      throw new Error(`${svc.name} did not report SERVING within ${timeoutMs / 1000} s; see ${svc.log}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

export async function upCommand(flags: UpFlags): Promise<number> {
  const redisUrl = process.env.REDIS_URL || DEFAULT_REDIS_URL;
  const redisProblem = await pingRedis(redisUrl);
  if (redisProblem) {
    say(`tandem up: Redis is not reachable at ${redisUrl} (${redisProblem}).`);
    say("The indexer keeps its job queue in Redis. Start one locally with:");
    say("    redis-server --daemonize yes        (or: bash scripts/ensure-redis.sh)");
    say("or point Tandem at yours:  REDIS_URL=redis://host:6379 pnpm tandem up");
    return 1;
  }

  const pair = choosePair(flags);
  if (pair.note) say(`note: ${pair.note}`);
  const local = loopbackEnv(process.env);
  if (local.dropped.length) {
    say(
      `note: tandem up runs its services in plaintext on 127.0.0.1 and does not pass on ${local.dropped.join(", ")} ` +
        "(a deployment's TLS, token and probe settings). Unset them in the terminal you run other tandem commands " +
        "from, or those will try TLS or tokens against this stack.",
    );
  }
  const addrs = { encoder: address("encoder"), ann: address("ann"), indexer: address("indexer") };
  for (const [name, addr] of Object.entries(addrs)) {
    if (!(await portFree(portOf(addr)))) {
      say(
        `tandem up: port ${portOf(addr)} (${name}) is in use: is a Tandem stack already running? ` +
          `Stop it, or choose ports with ENCODER_ADDR / ANN_ADDR / INDEXER_ADDR.`,
      );
      return 1;
    }
  }

  const logs = join(STATE_DIR, "logs");
  mkdirSync(logs, { recursive: true });
  const services: Service[] = [
    {
      name: "query-encoder",
      entry: "services/query-encoder/src/main.ts",
      addr: addrs.encoder,
      env: { PORT: String(portOf(addrs.encoder)), MODEL_DIR: pair.student },
      log: join(logs, "query-encoder.log"),
    },
    {
      name: "ann",
      entry: "services/ann/src/main.ts",
      addr: addrs.ann,
      env: { PORT: String(portOf(addrs.ann)), DATA_DIR: join(STATE_DIR, "ann"), ENCODER_ADDR: addrs.encoder },
      log: join(logs, "ann.log"),
    },
    {
      name: "doc-indexer",
      entry: "services/doc-indexer/src/main.ts",
      addr: addrs.indexer,
      env: {
        PORT: String(portOf(addrs.indexer)),
        REDIS_URL: redisUrl,
        ANN_ADDR: addrs.ann,
        TEACHER_BUNDLE_DIR: pair.teacher,
        PROVIDERS: "cpu",
        RUN_WORKER: "true",
        // The indexer holds one Upsert stream open, under one ANN_TIMEOUT_MS
        // deadline, while the teacher embeds a whole flush. A BERT-base teacher
        // on a small CPU manages ~1-5 docs/s, so the default flush (256 docs)
        // outlives the default deadline (60 s) and every attempt fails. Small
        // flushes (the progress bar also moves at each one) and a roomy deadline.
        UPSERT_FLUSH_DOCS: process.env.UPSERT_FLUSH_DOCS ?? "32",
        ANN_TIMEOUT_MS: process.env.ANN_TIMEOUT_MS ?? "600000",
      },
      log: join(logs, "doc-indexer.log"),
    },
  ];

  let stopping: Promise<number> | null = null;
  const shutdown = (code: number): Promise<number> => {
    stopping ??= (async () => {
      say("stopping: doc-indexer, ann, query-encoder …");
      // Reverse start order: nothing writes into the ANN service while it snapshots.
      for (const svc of [...services].reverse()) await stop(svc);
      say("stopped.");
      return code;
    })();
    return stopping;
  };
  const interrupted = new Promise<number>((resolve) => {
    const onSignal = () => resolve(shutdown(0));
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
  });
  // Should this process die some other way, don't leave the services behind.
  process.once("exit", () => {
    for (const s of services) if (s.child && s.child.exitCode === null) s.child.kill("SIGKILL");
  });

  let onCrash: (code: Promise<number>) => void = () => {};
  const crashed = new Promise<number>((resolve) => {
    onCrash = resolve;
  });
  const watch = (svc: Service) => (code: number | null, signal: NodeJS.Signals | null) => {
    if (stopping) return;
    say(`\n${svc.name} exited unexpectedly (${code ?? signal}); the end of ${svc.log}:\n${logTail(svc.log)}`);
    onCrash(shutdown(1));
  };

  const ready = (async (): Promise<void> => {
    say(`student (query encoder): ${pair.student}`);
    say(`teacher (indexer worker, CPU): ${pair.teacher}`);
    say(`logs: ${logs}/`);
    for (const svc of services) {
      start(svc, local.vars, watch(svc));
      say(`starting ${svc.name} on ${svc.addr} …`);
      // Models load and warm up before SERVING; on a shared 2-core machine that can take a while.
      await waitServing(svc, 300_000);
      say(`  ${svc.name} is serving`);
    }
    if (flags.index) await indexExample(flags, addrs.ann, addrs.indexer, local.vars);
  })();

  try {
    const first = await Promise.race([ready.then(() => null), interrupted, crashed]);
    if (first !== null) return first;
  } catch (err) {
    say(`tandem up: ${describeError(err)}`);
    return shutdown(1);
  }
  say("");
  say("Tandem is up. In another terminal try:");
  say(`    pnpm tandem search "does the ANN service lose writes when it crashes" --collection ${flags.collection}`);
  say('    pnpm tandem collections        pnpm tandem jobs        pnpm tandem encode "a query"');
  say(`    pnpm tandem index path/to/corpus.jsonl --collection ${flags.collection}`);
  say("Ctrl-C stops everything.");
  return Promise.race([interrupted, crashed]);
}

/**
 * What `streamCorpusFile(…, limit)` sends: the number of documents (non-empty
 * lines, up to `limit` when > 0) and the ids of the first and the last.
 */
async function corpusSpan(path: string, limit: number): Promise<{ docs: number; ids: string[] }> {
  let docs = 0;
  let first = "";
  let last = "";
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Number.POSITIVE_INFINITY });
  for await (const line of lines) {
    if (!line.trim()) continue;
    if (limit > 0 && docs >= limit) break;
    docs++;
    if (docs === 1) first = line;
    last = line;
  }
  lines.close();
  const ids = new Set([first, last].filter(Boolean).map((l) => parseCorpusLine(l).id));
  ids.delete("");
  return { docs, ids: [...ids] };
}

/**
 * The alias `flags.collection` points at a collection in the teacher's space;
 * the example corpus goes in through the indexer with a progress bar. A second
 * `up` finds it there and skips the work (the indexer's content hashes would
 * also skip every unchanged document, but not needing to submit is quicker).
 */
async function indexExample(
  flags: UpFlags,
  annAddr: string,
  indexerAddr: string,
  vars: NodeJS.ProcessEnv,
): Promise<void> {
  const ann = annClient(annAddr, vars);
  const indexer = indexerClient(indexerAddr, vars);
  try {
    const teacher = await indexerSpace(indexer, indexerAddr);
    const alias = flags.collection;
    let target = await collectionInfo(ann, alias);
    if (!target || target.space !== teacher.space) {
      // One collection per space under the alias: when the teacher changes
      // (e.g. the pair got built after a first symmetric run) the alias moves
      // to a collection in the new space and the old one stays for rollback.
      const name = `${alias}-${teacher.space.replace(/[^A-Za-z0-9_.-]+/g, "-")}`;
      const { info: created, created: isNew } = await ensureCollection(ann, name, teacher);
      await unary(ann.setAlias.bind(ann), { alias, collection: name }, { timeoutMs: 10_000 });
      if (target) say(`alias ${alias} moved from ${target.name} (${target.space}) to ${name}; ${target.name} is kept`);
      else if (isNew)
        say(`created collection ${name} (${teacher.space}, ${teacher.dims}-d, cosine) with alias ${alias}`);
      target = created;
    }
    const corpus = flags.corpus ? userPath(flags.corpus) : EXAMPLE_CORPUS;
    if (!existsSync(corpus)) {
      throw new Error(
        flags.corpus
          ? `corpus ${corpus} not found`
          : `example corpus ${corpus} not found (regenerate it with \`pnpm example-corpus\`, or choose one with --corpus)`,
      );
    }
    const limit = flags.docs ?? 0;
    const { docs, ids } = await corpusSpan(corpus, limit);
    if (docs === 0) throw new Error(`corpus ${corpus} holds no documents`);
    // Already indexed: as many points, and the corpus's first and last documents among them (a
    // collection filled from another corpus, e.g. by an older quickstart, is not taken for this one).
    if (Number(target.count) >= docs) {
      const missing = ids.length
        ? (await unary(ann.get.bind(ann), { collection: alias, ids, withVectors: false }, { timeoutMs: 10_000 }))
            .missing
        : [];
      if (missing.length === 0) {
        say(`${alias} already holds the ${docs} documents of ${corpus}: nothing to index`);
        return;
      }
    }
    const which = limit > 0 && docs === limit ? `the first ${docs}` : `all ${docs}`;
    say(`indexing ${which} documents of ${corpus} into ${alias} with ${teacher.from} …`);
    const res = await streamCorpusFile(indexer, alias, corpus, limit);
    const final = await followJob(indexer, res.jobId, { bar: true, retryForMs: flags.retryFor * 1000 });
    say(jobLine(final));
    if (final.state !== JobState.JOB_STATE_COMPLETED) throw new Error(`indexing job ${final.jobId} failed`);
  } finally {
    ann.close();
    indexer.close();
  }
}
