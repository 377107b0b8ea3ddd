// The example corpus `tandem up` indexes (examples/tandem-docs/corpus.jsonl) is what
// `pnpm example-corpus` cuts from the documentation, so it never drifts from the READMEs, and it
// is a corpus the indexer takes: every line parses with the indexer's own parseCorpusLine, and
// streamCorpusFile (the code `tandem up` submits it with) sends every document over gRPC.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { Server, ServerCredentials, type ServerReadableStream, type sendUnaryData } from "@grpc/grpc-js";
import { Indexer } from "@tandem/client";
import { parseCorpusLine, streamCorpusFile } from "@tandem/doc-indexer";
import { type Document, IndexerService, type SubmitRequest, type SubmitResponse } from "@tandem/proto";
import { EXAMPLE_CORPUS } from "../../apps/cli/src/paths.js";
import { buildExampleCorpus, CORPUS_FILE, chunkMarkdown, corpusJsonl } from "../../scripts/example-corpus.js";
import { REPO_ROOT } from "../support/paths.js";

const path = join(REPO_ROOT, CORPUS_FILE);
const committed = () => readFileSync(path, "utf8");
const lines = () => committed().split("\n").filter(Boolean);

test("the committed example corpus is what `pnpm example-corpus` writes", () => {
  assert.equal(EXAMPLE_CORPUS, path, "tandem up's default corpus is this file");
  assert.equal(
    corpusJsonl(buildExampleCorpus()) === committed(),
    true,
    `${CORPUS_FILE} is out of date with the documentation: run \`pnpm example-corpus\` and commit the result`,
  );
});

test("every line parses with the indexer's parseCorpusLine: unique ids, a title, sized texts", () => {
  const ids = new Set<string>();
  const words: number[] = [];
  for (const [i, line] of lines().entries()) {
    const doc = parseCorpusLine(line);
    assert.ok(!("error" in doc), `line ${i + 1}: ${"error" in doc ? doc.error : ""}`);
    assert.ok(!ids.has(doc.id), `line ${i + 1}: duplicate id ${doc.id}`);
    ids.add(doc.id);
    const raw = JSON.parse(line) as { _id: string; title: string; text: string };
    assert.deepEqual(Object.keys(raw), ["_id", "title", "text"], "BEIR fields, nothing else");
    assert.match(raw._id, /^[\w./-]+\.md#[\p{L}\p{N}_-]*\/\d+$/u);
    assert.equal(JSON.parse(doc.payloadJson).title, raw.title, "the title travels in the payload");
    assert.equal(doc.text, `${raw.title} ${raw.text}`, "embedded as title + text, the BEIR convention");
    assert.doesNotMatch(raw.text, /\*\*|\]\(|<!--/, `line ${i + 1}: Markdown markup left in the text`);
    words.push(raw.text.split(/\s+/).length);
  }
  assert.ok(ids.size >= 100, `${ids.size} documents: the whole documentation, not a scrap of it`);
  assert.ok(Math.max(...words) <= 200, "no document over 200 words");
  const median = [...words].sort((a, b) => a - b)[Math.floor(words.length / 2)] as number;
  assert.ok(median >= 40 && median <= 150, `median ${median} words`);
  // The README's example search must find documentation, not the README line that shows the command.
  const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  const example = readme.match(/pnpm tandem search "([^"]+)"/)?.[1];
  assert.ok(example, "the README shows an example search");
  assert.ok(!committed().includes(example), `"${example}" is not itself in the corpus`);
  for (const file of ["README.md", "services/ann/README.md", "services/doc-indexer/README.md", "training/README.md"]) {
    assert.ok(
      [...ids].some((id) => id.startsWith(`${file}#`)),
      `${file} is in the corpus`,
    );
  }
});

test("streamCorpusFile submits every document of the corpus, in order", async () => {
  const received: Document[] = [];
  const server = new Server();
  server.addService(IndexerService, {
    submit: (call: ServerReadableStream<SubmitRequest, SubmitResponse>, done: sendUnaryData<SubmitResponse>) => {
      call.on("data", (req: SubmitRequest) => {
        assert.equal(req.collection, "docs");
        received.push(...req.documents);
      });
      call.on("end", () => done(null, { jobId: "job-1", accepted: received.length, rejected: [] }));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const client = new Indexer({ address: `127.0.0.1:${port}` });
  try {
    const res = await streamCorpusFile(client, "docs", path, 0, 64);
    const expected = lines().map((l) => parseCorpusLine(l));
    assert.equal(res.accepted, expected.length);
    assert.deepEqual(received, expected, "the documents as parseCorpusLine reads them, in file order");
    received.length = 0;
    await streamCorpusFile(client, "docs", path, 10, 64);
    assert.deepEqual(received, expected.slice(0, 10), "a limit (tandem up --docs 10) sends the first 10");
  } finally {
    client.close();
    server.forceShutdown();
  }
});

test("chunking: headings give titles and anchors, generated blocks and markup are dropped, long sections split", () => {
  const para = (n: number, w: string) => `${Array.from({ length: n }, () => w).join(" ")}.`;
  const md = [
    "# pkg — a package",
    "",
    "Intro with a [link](https://example.com), **bold** and `code_span` text.",
    "",
    "## What `it` does",
    "",
    para(30, "alpha"),
    "",
    para(30, "beta"),
    "",
    "<!-- generated:config -->",
    "| variable | default |",
    "|---|---|",
    "| `SECRET_TABLE` | `1` |",
    "<!-- /generated:config -->",
    "",
    "| name | meaning |",
    "|---|---|",
    "| `A` | the first |",
    "",
    "```bash",
    'pnpm tandem search "a command to type"',
    "```",
    "",
    "```",
    "src/ a file tree",
    "```",
    "",
    "### Deeper",
    "",
    para(150, "gamma"),
    "",
    para(150, "delta"),
    "",
    "## What it does",
    "",
    "Same anchor as a heading above once punctuation is gone.",
  ].join("\n");
  const docs = chunkMarkdown("pkg/README.md", md);
  assert.deepEqual(
    docs.map((d) => [d._id, d.title]),
    [
      ["pkg/README.md#pkg--a-package/1", "pkg/README.md › pkg — a package"],
      ["pkg/README.md#what-it-does/1", "pkg/README.md › What it does"],
      ["pkg/README.md#deeper/1", "pkg/README.md › What it does › Deeper"],
      ["pkg/README.md#deeper/2", "pkg/README.md › What it does › Deeper"],
      ["pkg/README.md#what-it-does-1/1", "pkg/README.md › What it does"],
    ],
  );
  assert.equal(docs[0]?.text, "Intro with a link, bold and code_span text.");
  assert.ok(docs[1]?.text.includes("A — meaning: the first"), "a table row keeps its column names");
  assert.ok(docs[1]?.text.endsWith("src/ a file tree"), "a plain code block is kept");
  assert.doesNotMatch(docs[1]?.text ?? "", /command to type/, "a shell block is left out");
  assert.doesNotMatch(docs[1]?.text ?? "", /SECRET_TABLE/, "generated blocks are left out");
  assert.ok(docs.every((d) => d.text.split(" ").length <= 200));
});
