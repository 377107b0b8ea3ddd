// `tandem reindex` as a user runs it (the CLI as a child process, its output piped, so not a
// terminal), against the real ANN service and the real indexer (teacher worker on CPU, real Redis)
// on loopback ports. The indexer requires a bearer token, which the CLI sends from AUTH_TOKEN_FILE
// as every other command does. The new teacher is MiniLM's int8 bundle: the same space, other weights.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { JobState, type JobStatusResponse } from "@tandem/proto";
import { tandem } from "../../../test/support/cli.js";
import { bundleDir } from "../../../test/support/paths.js";
import { TestStack } from "../../../test/support/stack.js";
import { annClient, indexerClient } from "../src/clients.js";

const TOKEN = "cli-reindex-token";
const DOCS = Array.from({ length: 24 }, (_, i) => ({
  id: `d${i}`,
  text: `Document ${i} is about ${["vitamin d and bone density", "gRPC streams", "HNSW graphs", "Redis queues"][i % 4]}.`,
  payloadJson: JSON.stringify({ title: `doc ${i}` }),
}));

const stack = new TestStack("cli-reindex");
const tokenFile = join(stack.scratch, "token");
const withToken = { AUTH_TOKEN_FILE: tokenFile };
let annAddr = "";
let indexerAddr = "";

/** `tandem reindex <args>` against this test's indexer, with the token unless `vars` say otherwise. */
const reindex = (args: string[], vars: Record<string, string> = withToken) =>
  tandem(["reindex", ...args, "--indexer", indexerAddr], vars, 180_000);

async function aliasTarget(alias: string): Promise<string | undefined> {
  const ann = annClient(annAddr);
  try {
    return (await ann.listAliases()).find((a) => a.alias === alias)?.collection;
  } finally {
    ann.close();
  }
}

before(async () => {
  const tokensFile = join(stack.scratch, "tokens");
  writeFileSync(tokensFile, `cli ${TOKEN}\n`);
  writeFileSync(tokenFile, `${TOKEN}\n`);
  const ann = await stack.ann();
  annAddr = ann.addr;
  const indexer = await stack.indexer(ann.port, {
    AUTH_TOKENS_FILE: tokensFile,
    UPSERT_FLUSH_DOCS: "8",
    PARITY_QUERIES: "8",
  });
  indexerAddr = `127.0.0.1:${indexer.port}`;

  // The alias `rx` on a first generation the indexer wrote with its own teacher.
  const annC = annClient(annAddr);
  const indexerC = indexerClient(indexerAddr, withToken);
  try {
    const { teacher } = await indexerC.info();
    assert.ok(teacher);
    await annC.createCollection({ name: "rx-g0", space: teacher.space, dims: teacher.dims });
    await annC.setAlias("rx", "rx-g0");
    const sub = await indexerC.submit("rx", DOCS);
    let last: JobStatusResponse | undefined;
    for await (const s of indexerC.follow(sub.jobId)) last = s;
    assert.equal(last?.state, JobState.JOB_STATE_COMPLETED, last?.error);
  } finally {
    annC.close();
    indexerC.close();
  }
});

after(() => stack.stop());

test("reindex: progress lines while it runs, then where the alias points and the parity that moved it", {
  timeout: 300_000,
}, async () => {
  const res = await reindex(["rx", "--teacher", "all-minilm-l6-v2-int8"]);
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stderr, /^job s\w+: reindex of alias rx queued\n/);
  // Piped: plain lines, the last one with every document of the old generation handled.
  assert.match(res.stderr, new RegExp(`reindexing ${DOCS.length}/${DOCS.length} docs \\(100%\\) .*\\| completed\\n`));
  const [line, outcome] = res.stdout.trimEnd().split("\n");
  assert.match(line ?? "", new RegExp(`^s\\w+  reindex completed rx  ${DOCS.length}/${DOCS.length} embedded`));
  const moved = await aliasTarget("rx");
  assert.ok(moved && moved !== "rx-g0", `the alias moved (to ${moved})`);
  assert.match(
    outcome ?? "",
    new RegExp(
      `^alias rx now points at ${moved} \\(all-minilm-l6-v2/384\\), parity recall@10 (0|1)\\.\\d{3}; rx-g0 is kept$`,
    ),
  );
});

test("reindex --json with parity queries from a file: the final job status, its reindex outcome included", {
  timeout: 300_000,
}, async () => {
  const previous = await aliasTarget("rx");
  const queries = join(stack.scratch, "queries.jsonl");
  writeFileSync(
    queries,
    `${["bone density", "streams over gRPC", "a queue in Redis"].map((text) => JSON.stringify({ text })).join("\n")}\n`,
  );
  const res = await reindex(["rx", "--teacher", bundleDir("all-minilm-l6-v2"), "--queries", queries, "--json"]);
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stderr, "", "--json: nothing but the result");
  const final = JSON.parse(res.stdout) as JobStatusResponse;
  assert.equal(final.kind, "reindex");
  assert.equal(final.state, JobState.JOB_STATE_COMPLETED);
  assert.equal(final.docsDone, DOCS.length);
  assert.equal(final.reindex?.alias, "rx");
  assert.equal(final.reindex?.oldCollection, previous);
  assert.equal(final.reindex?.swapped, true);
  assert.ok((final.reindex?.parityRecallAt10 ?? 0) > 0.5, `recall ${final.reindex?.parityRecallAt10}`);
  assert.equal(await aliasTarget("rx"), final.reindex?.newCollection);
});

test("reindex refusals: no token, unknown alias, a bundle that is not one, nothing answering", async () => {
  const noToken = await reindex(["rx", "--teacher", "all-minilm-l6-v2-int8"], {});
  assert.equal(noToken.code, 1);
  assert.match(noToken.stderr, /^tandem reindex: UNAUTHENTICATED: .*bearer token/);

  const unknown = await reindex(["nope", "--teacher", "all-minilm-l6-v2-int8"]);
  assert.equal(unknown.code, 1);
  assert.equal(
    unknown.stderr,
    'tandem reindex: NOT_FOUND: alias "nope" not found: reindex swaps an alias, create one first\n',
  );

  const notABundle = await reindex(["rx", "--teacher", stack.scratch]);
  assert.equal(notABundle.code, 1);
  assert.match(notABundle.stderr, /^tandem reindex: INVALID_ARGUMENT: /);

  const noTeacher = await reindex(["rx"]);
  assert.notEqual(noTeacher.code, 0);
  assert.match(noTeacher.stderr, /required option '--teacher <bundle>' not specified/);

  const nobody = await tandem(["reindex", "rx", "--teacher", "all-minilm-l6-v2-int8", "--indexer", "127.0.0.1:1"]);
  assert.equal(nobody.code, 1);
  assert.match(nobody.stderr, /^tandem reindex: nothing answers at 127\.0\.0\.1:1 /);
});
