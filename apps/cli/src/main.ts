// The `tandem` command. Each subcommand loads its module on demand, so
// `tandem search` does not pay for onnxruntime or BullMQ at start-up.
import { availableParallelism } from "node:os";
import { DEFAULT_RETRY_LIMIT_MS } from "@tandem/service-kit";
import { Command, InvalidArgumentError, Option } from "commander";
import { ADDRESS_ENV, DEFAULT_ADDRESSES } from "./addresses.js";
import { describeError } from "./clients.js";
import { DATASETS_DIR } from "./paths.js";
import { DEFAULT_RESTART_POLICY } from "./supervise.js";

function int(name: string, min = 1) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return n;
  };
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("must be a number above 0");
  return n;
}

const addrOption = (service: keyof typeof DEFAULT_ADDRESSES) =>
  new Option(
    `--${service} <host:port>`,
    `${service} service address (env ${ADDRESS_ENV[service]}, default ${DEFAULT_ADDRESSES[service]})`,
  );

/** How long a job follower rides out the indexer or its Redis answering UNAVAILABLE. */
const retryForOption = () =>
  new Option(
    "--retry-for <seconds>",
    "while following a job, retry an unavailable indexer or Redis with backoff for this long before giving up",
  )
    .env("TANDEM_RETRY_FOR_S")
    .argParser(int("--retry-for", 0))
    .default(DEFAULT_RETRY_LIMIT_MS / 1000);

const program = new Command("tandem")
  .description(
    "Tandem: asymmetric dense retrieval. A teacher embeds documents, a distilled student encodes queries, an ANN service joins them.",
  )
  .version("0.1.0")
  .showHelpAfterError();

program
  .command("up")
  .description(
    "start the query encoder, the ANN service and the indexer (with a teacher worker), index an example corpus, keep running until Ctrl-C",
  )
  .option("--docs <n>", "index only the first n documents of the corpus (default: all of them)", int("--docs"))
  .option(
    "--corpus <corpus.jsonl>",
    "JSONL / BEIR corpus to index instead of the example (examples/tandem-docs: this repository's documentation)",
  )
  .option("--collection <name>", "alias the example is searched under", "docs")
  .option("--teacher <bundle>", "teacher bundle (name under .cache/models or a path); default: the best one built")
  .option("--student <bundle>", "student bundle; default: leaf-minilm-mpnet when built")
  .option("--no-index", "start the services only")
  .option(
    "--max-restarts <n>",
    `a crashed service is restarted (after ${DEFAULT_RESTART_POLICY.backoffMs / 1000} s, doubling up to ${DEFAULT_RESTART_POLICY.maxBackoffMs / 1000} s) ` +
      "this many times within --restart-window; one crash more stops the stack",
    int("--max-restarts", 0),
    DEFAULT_RESTART_POLICY.maxRestarts,
  )
  .option(
    "--restart-window <seconds>",
    "the window --max-restarts counts crashes in",
    int("--restart-window"),
    DEFAULT_RESTART_POLICY.windowMs / 1000,
  )
  .addOption(retryForOption())
  .action(async (flags) => {
    const { upCommand } = await import("./commands/up.js");
    process.exitCode = await upCommand(flags);
  });

program
  .command("search")
  .description("search a collection by text (encoded by the query encoder the ANN service is wired to)")
  .argument("<query...>", "the query text")
  .option("-k, --k <n>", "hits to return", int("--k"), 10)
  .option("-c, --collection <name>", "collection or alias", "docs")
  .option("--exact", "brute-force scan instead of HNSW")
  .option("--json", "machine-readable output")
  .addOption(addrOption("ann"))
  .action(async (words: string[], flags) => {
    const { searchCommand } = await import("./commands/search.js");
    process.exitCode = await searchCommand(words.join(" "), flags);
  });

program
  .command("encode")
  .description("encode texts with the query encoder; prints the vector's head, norm and token count")
  .argument("<text...>", "texts (quote each one)")
  .option("--document", "encode as documents (document prefix) instead of queries")
  .option("--json", "machine-readable output, full vectors included")
  .addOption(addrOption("encoder"))
  .action(async (texts: string[], flags) => {
    const { encodeCommand } = await import("./commands/encode.js");
    process.exitCode = await encodeCommand(texts, flags);
  });

program
  .command("index")
  .description("index a JSONL / BEIR corpus.jsonl through the indexer, with a progress bar")
  .argument("<corpus.jsonl>", "corpus file (read here and streamed, or read by the workers with --server-file)")
  .option("-c, --collection <name>", "collection or alias to index into", "docs")
  .option("--limit <n>", "index only the first n documents", int("--limit", 0), 0)
  .option("--server-file", "let the indexer's workers read the file themselves (the path must exist on their side)")
  .option("--no-wait", "return once the job is queued")
  .option("--create", "create the collection when it does not exist, in the space of the indexer's teacher")
  .addOption(retryForOption())
  .option("--json", "machine-readable output")
  .addOption(addrOption("indexer"))
  .addOption(addrOption("ann"))
  .action(async (file: string, flags) => {
    const { indexCommand } = await import("./commands/index.js");
    process.exitCode = await indexCommand(file, flags);
  });

program
  .command("jobs")
  .description("list indexing jobs, or follow one")
  .argument("[job-id]", "a job to show (and follow with --follow)")
  .option("--limit <n>", "jobs to list", int("--limit"), 20)
  .option("-f, --follow", "follow the job with a progress bar until it finishes")
  .addOption(retryForOption())
  .option("--json", "machine-readable output")
  .addOption(addrOption("indexer"))
  .action(async (jobId: string | undefined, flags) => {
    const { jobsCommand } = await import("./commands/jobs.js");
    process.exitCode = await jobsCommand(jobId, flags);
  });

program
  .command("reindex")
  .description(
    "move an alias to a new generation embedded by another teacher (backfill, dual-write, parity, atomic swap), with a progress bar",
  )
  .argument("<alias>", "the alias to reindex (its collection is kept)")
  .requiredOption(
    "--teacher <bundle>",
    "the new teacher: a bundle name under .cache/models or a path, read by the indexer's workers",
  )
  .option(
    "--queries <queries.jsonl>",
    "parity queries (JSONL with a text field, e.g. BEIR queries.jsonl), read by the indexer's workers; default: sampled documents",
  )
  .option("--no-wait", "return once the reindex is queued")
  .addOption(retryForOption())
  .option("--json", "machine-readable output")
  .addOption(addrOption("indexer"))
  .action(async (alias: string, flags) => {
    const { reindexCommand } = await import("./commands/reindex.js");
    process.exitCode = await reindexCommand(alias, flags);
  });

const collections = program
  .command("collections")
  .description("list, create and drop the ANN service's collections, and point aliases at them");
collections
  .command("list", { isDefault: true })
  .description("collections (space, dims, points, metric, aliases); the default")
  .option("--json", "machine-readable output")
  .addOption(addrOption("ann"))
  .action(async (flags) => {
    const { collectionsCommand } = await import("./commands/collections.js");
    process.exitCode = await collectionsCommand(flags);
  });
collections
  .command("create")
  .description(
    "create a collection in the space of the running indexer's teacher (so what it indexes fits), or of --teacher, or --space/--dims",
  )
  .argument("<name>", "collection name (letters, digits, _ - .)")
  .addOption(
    new Option(
      "--teacher <bundle>",
      "take the space from this bundle's manifest instead of asking the indexer",
    ).conflicts("space"),
  )
  .option("--space <id>", "the embedding space by hand (needs --dims), e.g. all-mpnet-base-v2/768")
  .option("--dims <n>", "with --space: its width; with --teacher: one of the bundle's Matryoshka sizes", int("--dims"))
  .addOption(
    new Option("--quantization <kind>", "the graph's vectors: f32, or f16/i8 rescored against float32 originals")
      .choices(["f32", "f16", "i8"])
      .default("f32"),
  )
  .option("--no-rescore", "with f16/i8: answer from the quantised graph alone, without exact rescoring")
  .option("--oversampling <x>", "with f16/i8: graph candidates ranked per result (ANN default 4)", positiveNumber)
  .option("--json", "machine-readable output")
  .addOption(addrOption("ann"))
  .addOption(addrOption("indexer"))
  .action(async (name: string, flags) => {
    const { createCommand } = await import("./commands/collections.js");
    process.exitCode = await createCommand(name, flags);
  });
collections
  .command("drop")
  .description(
    "drop a collection with its vectors and payloads (not one an alias points to: move or remove the alias first)",
  )
  .argument("<name>", "collection name")
  .option("-y, --yes", "drop without asking (needed when stdin is not a terminal)")
  .option("--json", "machine-readable output")
  .addOption(addrOption("ann"))
  .action(async (name: string, flags) => {
    const { dropCommand } = await import("./commands/collections.js");
    process.exitCode = await dropCommand(name, flags);
  });
collections
  .command("alias")
  .description("point an alias at a collection, creating or moving it atomically")
  .argument("<alias>", "alias name")
  .argument("<collection>", "collection it points at")
  .option("--json", "machine-readable output")
  .addOption(addrOption("ann"))
  .action(async (alias: string, collection: string, flags) => {
    const { aliasCommand } = await import("./commands/collections.js");
    process.exitCode = await aliasCommand(alias, collection, flags);
  });
collections
  .command("unalias")
  .description("remove an alias; its collection is kept")
  .argument("<alias>", "alias name")
  .option("--json", "machine-readable output")
  .addOption(addrOption("ann"))
  .action(async (alias: string, flags) => {
    const { unaliasCommand } = await import("./commands/collections.js");
    process.exitCode = await unaliasCommand(alias, flags);
  });

program
  .command("rebuild")
  .description(
    "rebuild a collection's HNSW graph from its stored vectors (after many replaces or deletes), with a progress bar",
  )
  .argument("<collection>", "collection or alias")
  .option("--json", "machine-readable output")
  .addOption(addrOption("ann"))
  .action(async (collection: string, flags) => {
    const { rebuildCommand } = await import("./commands/rebuild.js");
    process.exitCode = await rebuildCommand(collection, flags);
  });

program
  .command("eval")
  .description(
    "retrieval quality on a BEIR dataset: teacher/teacher, student/teacher (asymmetric), student/student and BM25, HNSW and exact, nDCG@10 and Recall@100",
  )
  .option("--dataset <dir>", "BEIR directory (corpus.jsonl, queries.jsonl, qrels/test.tsv)", `${DATASETS_DIR}/scifact`)
  .option("--teacher <bundle>", "document tower", "all-mpnet-base-v2")
  .option("--student <bundle>", "distilled query tower (teacher's space)", "leaf-minilm-mpnet")
  .option("--base <bundle>", "undistilled small model, both sides (student/student)", "all-minilm-l6-v2")
  .option(
    "--modes <list>",
    "comma-separated subset of tt,st,ss,bm25 (default: bm25 and every mode whose bundles are built)",
  )
  .option(
    "--max-docs <n>",
    "corpus slice: the judged docs of the chosen queries plus a stable sample",
    int("--max-docs"),
  )
  .option("--max-queries <n>", "first n test queries", int("--max-queries"))
  .option("--ef <n>", "HNSW beam width of each search", int("--ef"), 128)
  .option("--threads <n>", "onnxruntime intra-op threads", int("--threads", 0), Math.min(4, availableParallelism()))
  .option(
    "--dims <n>",
    "score the dense towers at this Matryoshka size of their bundles (e.g. 256 of embeddinggemma-300m's 768)",
    int("--dims"),
  )
  .addOption(new Option("--ann <host:port>", "use a running ANN service (default: one inside this process)"))
  .option(
    "--collection <name>",
    "search this existing teacher collection (e.g. one the indexer built; needs --ann) instead of writing one",
  )
  .option("--markdown", "print the result as a markdown table")
  .option("--render <report.json>", "print a report saved with --json (as text, or --markdown) instead of running")
  .option("--json", "machine-readable output")
  .action(async (flags) => {
    const { evalCommand } = await import("./commands/eval.js");
    process.exitCode = await evalCommand(flags);
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.stderr.write(`tandem: ${describeError(err)}\n`);
  process.exitCode = 1;
}
