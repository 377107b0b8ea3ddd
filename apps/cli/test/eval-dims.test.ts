// `tandem eval --dims` as a user runs it: the dense towers scored at a Matryoshka size their
// bundle declares (a MiniLM variant declaring 128), in the space named for it; a size the bundle
// does not declare exits 1 naming the sizes it offers.
import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { tandem } from "../../../test/support/cli.js";
import { DATASETS, MODELS } from "../../../test/support/paths.js";
import type { EvalReport } from "../src/eval/run.js";

test("tandem eval --dims: scores the declared size in its own space; refuses an undeclared one", async () => {
  const work = mkdtempSync(join(tmpdir(), "tandem-eval-dims-"));
  const source = join(MODELS, "all-minilm-l6-v2");
  const bundle = join(work, "minilm-mrl");
  mkdirSync(bundle);
  symlinkSync(join(source, "model.onnx"), join(bundle, "model.onnx"));
  cpSync(join(source, "tokenizer.json"), join(bundle, "tokenizer.json"));
  const manifest = JSON.parse(readFileSync(join(source, "manifest.json"), "utf8")) as Record<string, unknown>;
  writeFileSync(
    join(bundle, "manifest.json"),
    JSON.stringify({ ...manifest, name: "minilm-mrl", matryoshka_dims: [128] }),
  );
  const vars = { TANDEM_STATE_DIR: join(work, "state"), TANDEM_EMBEDDINGS_DIR: join(work, "embeddings") };
  const args = ["eval", "--dataset", join(DATASETS, "scifact"), "--base", bundle, "--modes", "ss"];
  const slice = ["--max-docs", "40", "--max-queries", "5", "--threads", "1"];
  try {
    const ok = await tandem([...args, ...slice, "--dims", "128", "--json"], vars, 300_000);
    assert.equal(ok.code, 0, ok.stderr);
    const report = JSON.parse(ok.stdout) as EvalReport;
    const [ss] = report.results;
    assert.equal(ss?.space, "all-minilm-l6-v2/128");
    assert.ok(ss && ss.exact.ndcg10 > 0 && ss.exact.ndcg10 <= 1, `nDCG@10 ${ss?.exact.ndcg10}`);
    assert.match(report.collections.base?.name ?? "", /-d128$/);

    const refused = await tandem([...args, ...slice, "--dims", "100"], vars, 120_000);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /--dims 100: minilm-mrl cannot serve 100 dims: it serves 384, 128/);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
