// The indexer from a terminal:
//
//   tsx services/doc-indexer/src/cli.ts index  --collection C --file corpus.jsonl [--limit N] [--addr host:port]
//   tsx services/doc-indexer/src/cli.ts index  --collection C --server-file /path/on/the/workers.jsonl [--limit N]
//   tsx services/doc-indexer/src/cli.ts status JOB_ID
//   tsx services/doc-indexer/src/cli.ts reindex --alias A --bundle DIR [--queries queries.jsonl]
//
// `--file` reads a local JSONL / BEIR corpus and streams it through Submit; `--server-file`
// hands the workers a path they can read (SubmitFile). Both then follow the job with a progress bar.
import { parseArgs } from "node:util";
import { Indexer } from "@tandem/client";
import { streamCorpusFile } from "@tandem/corpus";
import { JobState, type JobStatusResponse, type SubmitResponse } from "@tandem/proto";

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    addr: { type: "string", default: process.env.INDEXER_ADDR ?? "127.0.0.1:50053" },
    collection: { type: "string" },
    file: { type: "string" },
    "server-file": { type: "string" },
    limit: { type: "string", default: "0" },
    alias: { type: "string" },
    bundle: { type: "string" },
    queries: { type: "string", default: "" },
    "batch-docs": { type: "string", default: "256" },
  },
});

const client = new Indexer({ address: opts.addr, retry: false });

function fail(msg: string): never {
  process.stderr.write(`doc-indexer: ${msg}\n`);
  process.exit(2);
}

function bar(s: JobStatusResponse): string {
  const finished = s.docsDone + s.docsSkipped + s.docsFailed;
  const frac = s.docsTotal > 0 ? Math.min(1, finished / s.docsTotal) : 0;
  const width = 30;
  const full = Math.round(frac * width);
  return (
    `[${"#".repeat(full)}${".".repeat(width - full)}] ${finished}/${s.docsTotal} ` +
    `done ${s.docsDone} skipped ${s.docsSkipped} failed ${s.docsFailed} ` +
    `${s.docsPerS.toFixed(1)} docs/s ${Math.round(s.tokensPerS)} tok/s ${JobState[s.state].replace("JOB_STATE_", "")}`
  );
}

async function follow(jobId: string): Promise<JobStatusResponse> {
  let last: JobStatusResponse | undefined;
  // Rides out an indexer or Redis outage (UNAVAILABLE) with backoff, as the tandem CLI does.
  for await (const s of client.follow(jobId, {
    onRetry: (n) => process.stderr.write(`\rUNAVAILABLE (${n.error.details}): retrying in ${n.delayMs} ms   `),
  })) {
    process.stderr.write(`\r${bar(s)}   `);
    last = s;
  }
  process.stderr.write("\n");
  return last as JobStatusResponse;
}

async function main(): Promise<number> {
  const [command, arg] = positionals;
  let jobId: string;
  if (command === "index") {
    const collection = opts.collection ?? fail("--collection is required");
    const limit = Number(opts.limit);
    let res: SubmitResponse;
    if (opts.file) res = await streamCorpusFile(client, collection, opts.file, limit, Number(opts["batch-docs"]));
    else if (opts["server-file"]) {
      res = await client.submitFile(collection, opts["server-file"], limit, { deadlineMs: null });
    } else fail("--file or --server-file is required");
    for (const r of res.rejected) process.stderr.write(`rejected #${r.index} ${JSON.stringify(r.id)}: ${r.reason}\n`);
    process.stderr.write(`job ${res.jobId}: ${res.accepted} accepted, ${res.rejected.length} rejected\n`);
    jobId = res.jobId;
  } else if (command === "reindex") {
    const res = await client.reindex(
      {
        alias: opts.alias ?? fail("--alias is required"),
        teacherBundleDir: opts.bundle ?? fail("--bundle is required"),
        parityQueriesPath: opts.queries,
      },
      { deadlineMs: null },
    );
    jobId = res.jobId;
  } else if (command === "status") {
    jobId = arg ?? fail("status JOB_ID");
  } else {
    fail("usage: cli.ts index|status|reindex ... (see the header of cli.ts)");
  }
  const final = await follow(jobId);
  process.stdout.write(`${JSON.stringify(final)}\n`);
  return final.state === JobState.JOB_STATE_COMPLETED ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => fail(err instanceof Error ? err.message : String(err)),
);
