import { createReadStream, existsSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { basename, join } from "node:path";
import { createInterface } from "node:readline";
import { parseCorpusLine, streamCorpusFile } from "@tandem/corpus";
import { resolveBundle } from "@tandem/model-runtime";
import { JobState } from "@tandem/proto";
import { address } from "../addresses.js";
import { annClient, describeError, ensureCollection, indexerClient, loopbackEnv } from "../clients.js";
import { indexerSpace } from "../collection-space.js";
import { followJob, jobLine } from "../jobs.js";
import { bundleExists, bundlePath, EXAMPLE_CORPUS, STATE_DIR, userPath } from "../paths.js";
import { DEFAULT_REDIS_URL, pingRedis } from "../redis.js";
import { DEFAULT_RESTART_POLICY, type RestartPolicy, type ServiceSpec, Supervisor } from "../supervise.js";

/**
 * `tandem up`: the whole stack on one machine, as child processes that run the
 * services' own entry points (the same processes a deployment runs), with
 * embedded defaults: the distilled student in the query encoder, the teacher in
 * the indexer's worker on CPU, the ANN data under .tandem/. Then an example
 * corpus (examples/tandem-docs: the repository's own documentation, so nothing
 * outside the checkout is needed) is indexed through the real indexer, and the
 * services stay up until Ctrl-C; one that crashes meanwhile is restarted (supervise.ts).
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
  /** Restarts of one crashed service allowed within `restartWindow` seconds. */
  maxRestarts: number;
  restartWindow: number;
}

interface Pair {
  teacher: string;
  student: string;
  note: string | null;
}

/** The best teacher/student pair that is built, preferring the asymmetric one; one in two spaces is refused. */
export async function choosePair(flags: Pick<UpFlags, "teacher" | "student">): Promise<Pair> {
  if (flags.teacher || flags.student) {
    const teacher = bundlePath(flags.teacher ?? "all-mpnet-base-v2-int8");
    const student = bundlePath(flags.student ?? "leaf-minilm-mpnet");
    for (const b of [teacher, student]) if (!bundleExists(b)) throw new Error(`bundle ${b} is not built`);
    const [t, s] = await Promise.all([resolveBundle(teacher), resolveBundle(student)]);
    if (t.manifest.space !== s.manifest.space) {
      // The stack would start, index, and then refuse every search by text (FAILED_PRECONDITION):
      // better said now, with the way out.
      throw new Error(
        `the teacher ${basename(teacher)} writes documents in ${t.manifest.space} but the ` +
          `${flags.student ? "" : "default "}student ${basename(student)} encodes queries in ${s.manifest.space}: ` +
          `its queries could never be searched against the teacher's documents. Give --student a bundle in ` +
          `${t.manifest.space}; a teacher without a distilled student serves both sides itself (symmetric): ` +
          `--student ${flags.teacher ?? basename(teacher)}`,
      );
    }
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

const say = (line: string) => process.stderr.write(`${line}\n`);

/**
 * Where the query-encoder serves OpenAI's POST /v1/embeddings in `tandem up` (its HTTP_PORT, on
 * 127.0.0.1 like the rest): the port of ENCODER_HTTP_ADDR when set, else 8080 when free. 8080 is a
 * common port: a taken default turns the endpoint off with a note, a taken ENCODER_HTTP_ADDR stops
 * `up` as a taken gRPC port does.
 */
const DEFAULT_ENCODER_HTTP_ADDR = "127.0.0.1:8080";

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

  const pair = await choosePair(flags);
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

  // 0: off. The URL says 127.0.0.1 whatever host ENCODER_HTTP_ADDR names: that is where HOST binds it.
  let httpPort = portOf(process.env.ENCODER_HTTP_ADDR || DEFAULT_ENCODER_HTTP_ADDR);
  if (!(await portFree(httpPort))) {
    if (process.env.ENCODER_HTTP_ADDR) {
      say(`tandem up: port ${httpPort} (ENCODER_HTTP_ADDR, the encoder's /v1/embeddings) is in use.`);
      return 1;
    }
    say(
      `note: port ${httpPort} is in use, so the encoder's OpenAI-compatible /v1/embeddings is off; ` +
        "choose a free port with ENCODER_HTTP_ADDR=127.0.0.1:PORT.",
    );
    httpPort = 0;
  }
  const embeddingsUrl = httpPort ? `http://127.0.0.1:${httpPort}/v1/embeddings` : null;

  const logs = join(STATE_DIR, "logs");
  mkdirSync(logs, { recursive: true });
  const service = (name: string, entry: string, addr: string, env: Record<string, string>): ServiceSpec => ({
    name,
    entry,
    addr,
    env: { ...local.vars, LOG_LEVEL: "info", METRICS_PORT: "0", HOST: "127.0.0.1", PORT: String(portOf(addr)), ...env },
    log: join(logs, `${name}.log`),
    // Models load and warm up before SERVING; on a shared 2-core machine that can take a while.
    readyTimeoutMs: 300_000,
  });
  const services: ServiceSpec[] = [
    service("query-encoder", "services/query-encoder/src/main.ts", addrs.encoder, {
      MODEL_DIR: pair.student,
      HTTP_PORT: String(httpPort),
    }),
    service("ann", "services/ann/src/main.ts", addrs.ann, {
      DATA_DIR: join(STATE_DIR, "ann"),
      ENCODER_ADDR: addrs.encoder,
    }),
    service("doc-indexer", "services/doc-indexer/src/main.ts", addrs.indexer, {
      REDIS_URL: redisUrl,
      ANN_ADDR: addrs.ann,
      TEACHER_BUNDLE_DIR: pair.teacher,
      PROVIDERS: "cpu",
      RUN_WORKER: "true",
      // The indexer holds one Upsert stream open, under one ANN_TIMEOUT_MS
      // deadline, while the teacher embeds a whole flush. A BERT-base teacher
      // on a small CPU manages ~1-5 docs/s, so the default flush (256 docs)
      // outlives the default deadline (60 s) and every attempt fails. Small
      // flushes (the progress moves at each one) and a roomy deadline.
      UPSERT_FLUSH_DOCS: process.env.UPSERT_FLUSH_DOCS ?? "32",
      ANN_TIMEOUT_MS: process.env.ANN_TIMEOUT_MS ?? "600000",
    }),
  ];
  const policy: RestartPolicy = {
    ...DEFAULT_RESTART_POLICY,
    maxRestarts: flags.maxRestarts,
    windowMs: flags.restartWindow * 1000,
  };
  const supervisor = new Supervisor(policy, say);
  let stopping: Promise<number> | null = null;
  const shutdown = (code: number): Promise<number> => {
    stopping ??= (async () => {
      say("stopping: doc-indexer, ann, query-encoder …");
      await supervisor.stopAll();
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
  process.once("exit", () => supervisor.killAll());
  // A crashed service is restarted meanwhile (and the indexing follow rides out its absence);
  // only one that keeps crashing stops the stack.
  const gaveUp = supervisor.gaveUp.then((reason) => {
    say(`\ntandem up: ${reason.message}`);
    return shutdown(1);
  });

  const ready = (async (): Promise<void> => {
    say(`student (query encoder): ${pair.student}`);
    if (embeddingsUrl) say(`OpenAI-compatible embeddings (query encoder): ${embeddingsUrl}`);
    say(`teacher (indexer worker, CPU): ${pair.teacher}`);
    say(`logs: ${logs}/`);
    for (const svc of services) await supervisor.start(svc);
    if (flags.index) await indexExample(flags, addrs.ann, addrs.indexer, local.vars);
  })();

  try {
    const first = await Promise.race([ready.then(() => null), interrupted, gaveUp]);
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
  if (embeddingsUrl) {
    say(
      `    curl -s ${embeddingsUrl} -H 'content-type: application/json' ` +
        `-d '{"model": "${basename(pair.student)}", "input": "a query"}'`,
    );
  }
  say("A service that crashes is restarted; Ctrl-C stops everything.");
  return Promise.race([interrupted, gaveUp]);
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
    let target = await ann.find(alias);
    if (!target || target.space !== teacher.space) {
      // One collection per space under the alias: when the teacher changes
      // (e.g. the pair got built after a first symmetric run) the alias moves
      // to a collection in the new space and the old one stays for rollback.
      const name = `${alias}-${teacher.space.replace(/[^A-Za-z0-9_.-]+/g, "-")}`;
      const { info: created, created: isNew } = await ensureCollection(ann, name, teacher);
      await ann.setAlias(alias, name);
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
      const missing = ids.length ? (await ann.get(alias, ids)).missing : [];
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
