// `tandem collections create | drop | alias | unalias` and `tandem index --create` as a user runs
// them (the CLI as a child process, its output piped, so not a terminal), against the real ANN
// service and the real indexer (teacher worker on CPU, real Redis) on loopback ports: the space
// comes from the indexer's teacher, and every refusal names what it refuses and the way out.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { tandem } from "../support/cli.js";
import { bundleDir, REPO_ROOT } from "../support/paths.js";
import { TestStack } from "../support/stack.js";

// The small model as the indexer's teacher: this test is about the CLI, not about retrieval.
const TEACHER = "all-minilm-l6-v2-int8";
const SPACE = "all-minilm-l6-v2/384";
const MAX_COLLECTIONS = 5;
const CORPUS = join(REPO_ROOT, "examples/tandem-docs/corpus.jsonl");
const DOCS = 40;

const stack = new TestStack("e2e-collections");
let addrs: Record<string, string> = {};

/** `tandem <args>` against this test's services. */
const cli = (...args: string[]) => tandem(args, { ANN_ADDR: addrs.ann ?? "", INDEXER_ADDR: addrs.indexer ?? "" });

before(async () => {
  const ann = await stack.annProcess({ MAX_COLLECTIONS: String(MAX_COLLECTIONS) });
  const indexer = await stack.indexerProcess(ann.addr, bundleDir(TEACHER), { UPSERT_FLUSH_DOCS: "8" });
  addrs = { ann: ann.addr, indexer: indexer.addr };
});

after(() => stack.stop());

interface Listed {
  collections: Array<{
    name: string;
    space: string;
    dims: number;
    count: number;
    aliases: string[];
    quantization: string;
    rescore: boolean;
    oversampling?: number;
  }>;
  aliases: Array<{ alias: string; collection: string }>;
}
async function listed(): Promise<Listed> {
  const res = await cli("collections", "--json");
  assert.equal(res.code, 0, res.stderr);
  return JSON.parse(res.stdout) as Listed;
}

test("create: the space of the indexer's teacher by default, of a bundle with --teacher, by hand with --space/--dims", async () => {
  const made = await cli("collections", "create", "nf");
  assert.equal(made.code, 0, made.stderr);
  assert.equal(
    made.stdout,
    `created collection nf: ${SPACE}, 384-d, cosine, f32 (from the indexer's teacher ${TEACHER})\n`,
  );

  const again = await cli("collections", "create", "nf");
  assert.equal(again.code, 1);
  assert.equal(
    again.stderr,
    `tandem collections create: collection nf already exists, in ${SPACE} (384-d, 0 points)\n`,
  );

  const fromBundle = await cli("collections", "create", "mpnet", "--teacher", "all-mpnet-base-v2-int8", "--json");
  assert.equal(fromBundle.code, 0, fromBundle.stderr);
  assert.deepEqual(
    (({ name, space, dims, metric, count }) => ({ name, space, dims, metric, count }))(JSON.parse(fromBundle.stdout)),
    { name: "mpnet", space: "all-mpnet-base-v2/768", dims: 768, metric: "cosine", count: 0 },
  );

  // A quantised graph, rescored against the float32 originals the ANN service keeps.
  const byHand = await cli(
    "collections",
    "create",
    "other",
    "--space",
    "test/8",
    "--dims",
    "8",
    "--quantization",
    "i8",
    "--oversampling",
    "3",
  );
  assert.equal(byHand.code, 0, byHand.stderr);
  assert.match(byHand.stdout, /^created collection other: test\/8, 8-d, cosine, i8 \+ rescore x3 \(from --space\)\n$/);
  const other = (await listed()).collections.find((c) => c.name === "other");
  assert.deepEqual(
    other && (({ quantization, rescore, oversampling }) => ({ quantization, rescore, oversampling }))(other),
    { quantization: "i8", rescore: true, oversampling: 3 },
  );
});

test("create: refusals name the flag, the bundle's sizes and the ANN service's limits", async () => {
  const noDims = await cli("collections", "create", "x", "--space", "test/8");
  assert.equal(noDims.code, 1);
  assert.match(noDims.stderr, /--space needs --dims/);

  const notMatryoshka = await cli("collections", "create", "x", "--teacher", "all-mpnet-base-v2-int8", "--dims", "256");
  assert.equal(notMatryoshka.code, 1);
  assert.match(notMatryoshka.stderr, /cannot serve 256 dims: it declares no Matryoshka sizes, only its full width 768/);

  const both = await cli("collections", "create", "x", "--space", "test/8", "--dims", "8", "--teacher", TEACHER);
  assert.notEqual(both.code, 0);
  assert.match(both.stderr, /cannot be used with/);

  const wide = await cli("collections", "create", "wide", "--space", "test/9999", "--dims", "9999");
  assert.equal(wide.code, 1);
  assert.match(
    wide.stderr,
    /INVALID_ARGUMENT: dims=9999 is outside \[\d+, \d+\] \(the ANN service's MIN_DIMS, MAX_DIMS\)/,
  );

  const byHand = ["--space", "test/8", "--dims", "8"];
  const f32Rescore = await cli("collections", "create", "x", ...byHand, "--oversampling", "2");
  assert.equal(f32Rescore.code, 1);
  assert.match(f32Rescore.stderr, /--no-rescore and --oversampling apply to --quantization f16 or i8 only/);
  const both2 = await cli(
    "collections",
    "create",
    "x",
    ...byHand,
    "--quantization",
    "f16",
    "--no-rescore",
    "--oversampling",
    "2",
  );
  assert.equal(both2.code, 1);
  assert.match(both2.stderr, /drop it, or drop --no-rescore/);
  const tooMany = await cli("collections", "create", "x", ...byHand, "--quantization", "f16", "--oversampling", "100");
  assert.equal(tooMany.code, 1);
  assert.match(tooMany.stderr, /INVALID_ARGUMENT: index\.oversampling must be a number in \[1, 64\]/);
  const unknown = await cli("collections", "create", "x", ...byHand, "--quantization", "q4");
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /Allowed choices are f32, f16, i8/);

  const badName = await cli("collections", "create", "no spaces", "--space", "test/8", "--dims", "8");
  assert.equal(badName.code, 1);
  assert.match(badName.stderr, /may use only letters, digits/);

  // nf, mpnet, other, and two more fill MAX_COLLECTIONS = 5.
  for (const name of ["fill-1", "fill-2"]) {
    const ok = await cli("collections", "create", name, "--space", "test/8", "--dims", "8");
    assert.equal(ok.code, 0, ok.stderr);
  }
  const full = await cli("collections", "create", "one-more", "--space", "test/8", "--dims", "8");
  assert.equal(full.code, 1);
  assert.match(full.stderr, /RESOURCE_EXHAUSTED: .*5 collections \(MAX_COLLECTIONS\)\. Drop a collection first/);
  for (const name of ["fill-1", "fill-2", "mpnet"]) {
    const gone = await cli("collections", "drop", name, "--yes");
    assert.equal(gone.code, 0, gone.stderr);
  }
});

test("index: a missing collection is NOT_FOUND with the way out; --create makes it, progress comes as plain lines", async () => {
  const missing = await cli("index", CORPUS, "-c", "fresh", "--limit", String(DOCS));
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /NOT_FOUND: .*fresh/);
  assert.match(missing.stderr, /create it with --create .*or: tandem collections create fresh/);

  const wrongSpace = await cli("index", CORPUS, "-c", "other", "--create", "--limit", String(DOCS));
  assert.equal(wrongSpace.code, 1);
  assert.match(
    wrongSpace.stderr,
    new RegExp(
      `collection other exists in space test/8 \\(8-d\\), but the space wanted is ${SPACE} \\(384-d\\), from the indexer's teacher ${TEACHER}: .*drop other first`,
    ),
  );

  const res = await tandem(
    ["index", CORPUS, "-c", "fresh", "--create", "--limit", String(DOCS)],
    { ANN_ADDR: addrs.ann ?? "", INDEXER_ADDR: addrs.indexer ?? "" },
    300_000,
  );
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stderr, new RegExp(`created collection fresh: ${SPACE}, 384-d \\(from the indexer's teacher`));
  assert.match(res.stdout, /completed +fresh +\d+\/40 embedded/);
  // Piped: no bar redraws, no terminal escapes; a first and a last plain line.
  const progress = res.stderr.split("\n").filter((l) => l.startsWith("  indexing "));
  assert.ok(progress.length >= 2, res.stderr);
  assert.match(progress[0] ?? "", /^ {2}indexing \d+\/40 docs \(\d+%\)/);
  assert.match(
    progress.at(-1) ?? "",
    /^ {2}indexing 40\/40 docs \(100%\) \| [\d.]+ docs\/s \| skipped 0 failed 0 \| completed$/,
  );
  assert.ok(
    progress.every((l, i) => l !== progress[i - 1]),
    "a line only when something changed",
  );
  assert.ok(!["\u001b", "█", "░"].some((c) => res.stderr.includes(c)), "no terminal escapes or bar glyphs");

  const fresh = (await listed()).collections.find((c) => c.name === "fresh");
  assert.equal(fresh?.count, DOCS);
  assert.equal(fresh?.space, SPACE);

  // Into a collection that exists in the teacher's space, --create just indexes.
  const again = await cli("index", CORPUS, "-c", "fresh", "--create", "--limit", "5");
  assert.equal(again.code, 0, again.stderr);
  assert.doesNotMatch(again.stderr, /created collection/);
});

test("alias and unalias: created, moved (a move across spaces says so), refused where it would shadow or dangle", async () => {
  const made = await cli("collections", "alias", "live", "fresh");
  assert.equal(made.code, 0, made.stderr);
  assert.equal(made.stdout, `alias live -> fresh (${SPACE})\n`);

  const moved = await cli("collections", "alias", "live", "nf");
  assert.equal(moved.stdout, `alias live -> nf (${SPACE}), was fresh\n`);
  assert.equal(moved.stderr, "");

  const across = await cli("collections", "alias", "live", "other");
  assert.equal(across.code, 0, across.stderr);
  assert.match(across.stderr, new RegExp(`now reach test/8 instead of ${SPACE}: by text, they need a query encoder`));

  const shadow = await cli("collections", "alias", "nf", "fresh");
  assert.equal(shadow.code, 1);
  assert.match(shadow.stderr, /ALREADY_EXISTS: nf is a collection name; an alias cannot shadow it/);
  const dangling = await cli("collections", "alias", "x", "no-such");
  assert.equal(dangling.code, 1);
  assert.match(dangling.stderr, /NOT_FOUND: no collection named no-such/);

  assert.deepEqual((await listed()).aliases, [{ alias: "live", collection: "other" }]);

  const notAlias = await cli("collections", "unalias", "nf");
  assert.equal(notAlias.code, 1);
  assert.match(notAlias.stderr, /nf is a collection, not an alias/);
  const removed = await cli("collections", "unalias", "live");
  assert.equal(removed.code, 0, removed.stderr);
  assert.equal(removed.stdout, "removed alias live; other, which it pointed at, is kept\n");
  const twice = await cli("collections", "unalias", "live");
  assert.equal(twice.code, 1);
  assert.match(twice.stderr, /no alias named live/);
});

test("drop: asks for --yes off a terminal, refuses an alias and an alias's target, then deletes", async () => {
  assert.equal((await cli("collections", "alias", "live", "fresh")).code, 0);

  const target = await cli("collections", "drop", "fresh", "--yes");
  assert.equal(target.code, 1);
  assert.match(
    target.stderr,
    /collection fresh is the target of alias live: .*tandem collections alias live OTHER.*tandem collections unalias live/,
  );
  const viaAlias = await cli("collections", "drop", "live", "--yes");
  assert.equal(viaAlias.code, 1);
  assert.match(viaAlias.stderr, /live is an alias of collection fresh, not a collection/);

  assert.equal((await cli("collections", "unalias", "live")).code, 0);
  const unconfirmed = await cli("collections", "drop", "fresh");
  assert.equal(unconfirmed.code, 1);
  assert.match(
    unconfirmed.stderr,
    new RegExp(
      `dropping collection fresh \\(${SPACE}, ${DOCS} points\\) deletes its vectors .*--yes \\(stdin is not a terminal`,
    ),
  );
  assert.ok(
    (await listed()).collections.some((c) => c.name === "fresh"),
    "still there",
  );

  const dropped = await cli("collections", "drop", "fresh", "--yes", "--json");
  assert.equal(dropped.code, 0, dropped.stderr);
  assert.deepEqual(JSON.parse(dropped.stdout), { dropped: "fresh", space: SPACE, count: DOCS });
  const gone = await cli("collections", "drop", "fresh", "--yes");
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /no collection named fresh/);
  assert.deepEqual(
    (await listed()).collections.map((c) => c.name),
    ["nf", "other"],
  );
});
