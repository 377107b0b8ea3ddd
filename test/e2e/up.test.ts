// `tandem up` as a supervisor, run as a user runs it (its output piped, so not a terminal), on
// free loopback ports with its own state directory and queue prefix: a service killed with
// SIGKILL is restarted while the others keep serving, and the stack answers again with its data;
// the encoder answers OpenAI's POST /v1/embeddings on ENCODER_HTTP_ADDR, the address `up` prints;
// Ctrl-C stops everything; a service that crashes past --max-restarts stops the stack.
// The small model on both sides (symmetric) keeps start-up and indexing short.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, test } from "node:test";
import { type RunningTandem, spawnTandem, tandem } from "../support/cli.js";
import { freePort } from "../support/net.js";
import { TestStack } from "../support/stack.js";

const BUNDLE = "all-minilm-l6-v2-int8";
const DOCS = 8;
const stacks = new TestStack("e2e-up");
after(() => stacks.stop());

async function stack(name: string, ...flags: string[]): Promise<{ up: RunningTandem; vars: Record<string, string> }> {
  const vars = {
    ENCODER_ADDR: `127.0.0.1:${await freePort()}`,
    ANN_ADDR: `127.0.0.1:${await freePort()}`,
    INDEXER_ADDR: `127.0.0.1:${await freePort()}`,
    ENCODER_HTTP_ADDR: `127.0.0.1:${await freePort()}`,
    TANDEM_STATE_DIR: join(stacks.scratch, name),
    QUEUE_PREFIX: stacks.namespace(name),
  };
  const up = spawnTandem(["up", "--teacher", BUNDLE, "--student", BUNDLE, ...flags], vars);
  stacks.defer(async () => {
    up.child.kill("SIGINT");
    await up.exited;
  });
  await up.waitFor(/Tandem is up/, 300_000);
  return { up, vars };
}

/** The pid each service was started with, from `starting <name> on <addr> (pid <n>)`. */
function pids(up: RunningTandem): Record<string, number> {
  return Object.fromEntries(
    [...up.stderr().matchAll(/starting (\S+) on \S+ \(pid (\d+)\)/g)].map((m) => [m[1], Number(m[2])]),
  );
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test("up restarts the ANN service killed with SIGKILL; the encoder serves meanwhile; the data is there after; Ctrl-C stops all", {
  timeout: 600_000,
}, async () => {
  const { up, vars } = await stack("heal", "--docs", String(DOCS), "--max-restarts", "1", "--restart-window", "120");
  // Piped: the indexing progress came as plain lines.
  assert.match(up.stderr(), new RegExp(`^ {2}indexing ${DOCS}/${DOCS} docs \\(100%\\)`, "m"));
  const before = pids(up);
  assert.deepEqual(Object.keys(before).sort(), ["ann", "doc-indexer", "query-encoder"]);

  // The encoder's OpenAI-compatible endpoint, on ENCODER_HTTP_ADDR's port, printed with the others.
  const url = `http://${vars.ENCODER_HTTP_ADDR}/v1/embeddings`;
  assert.ok(up.stderr().includes(`OpenAI-compatible embeddings (query encoder): ${url}`), up.stderr());
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: BUNDLE, input: ["the encoder speaks HTTP too"] }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  const body = (await res.json()) as { data: { embedding: number[] }[]; model: string };
  assert.equal(body.model, BUNDLE);
  assert.equal(body.data.length, 1);
  assert.ok((body.data[0]?.embedding.length ?? 0) > 0);

  process.kill(before.ann as number, "SIGKILL");
  await up.waitFor(/ann \(pid \d+\) killed by SIGKILL; restart 1 in 1 s \(crash 1 of 1 allowed within 120 s\)/, 30_000);
  const encoded = await tandem(["encode", "the other services keep serving"], vars);
  assert.equal(encoded.code, 0, encoded.stderr);

  await up.waitFor(/ann is serving again \(restart 1\)/, 120_000);
  const restarted = Number((await up.waitFor(/restarting ann \(pid (\d+)\)/, 1000))[1]);
  assert.notEqual(restarted, before.ann);
  assert.ok(!alive(before.ann as number));

  // Through the restarted ANN service to the encoder and back, over what was written before the kill.
  const found = await tandem(["search", "how do vectors travel over gRPC", "--json", "-k", "3"], vars);
  assert.equal(found.code, 0, found.stderr);
  assert.equal((JSON.parse(found.stdout) as { hits: unknown[] }).hits.length, 3);

  up.child.kill("SIGINT");
  assert.equal(await up.exited, 0, up.stderr());
  assert.match(up.stderr(), /stopped\.\n$/);
  for (const pid of [before["query-encoder"], restarted, before["doc-indexer"]]) {
    assert.ok(!alive(pid as number), `service pid ${pid} is gone`);
  }
});

test("up gives up on a service that crashes more often than --max-restarts allows, and stops the stack with exit 1", {
  timeout: 600_000,
}, async () => {
  const { up } = await stack("give-up", "--no-index", "--max-restarts", "0");
  const started = pids(up);
  process.kill(started["query-encoder"] as number, "SIGKILL");
  assert.equal(await up.exited, 1, up.stderr());
  assert.match(
    up.stderr(),
    /query-encoder \(pid \d+\) killed by SIGKILL: crash 1 within 300 s, past the 0 restarts allowed there \(--max-restarts, --restart-window\): giving up/,
  );
  for (const pid of Object.values(started)) assert.ok(!alive(pid), `service pid ${pid} is gone`);
});
