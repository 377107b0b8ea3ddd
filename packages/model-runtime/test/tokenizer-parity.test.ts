import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { MODELS, REPO_ROOT } from "../../../test/support/paths.js";
import { parseManifest } from "../src/index.js";
import { TextTokenizer } from "../src/tokenize.js";

/**
 * The services tokenise with @huggingface/tokenizers, the bundle builder (and
 * its checks) with the Rust `tokenizers` through training/: the same ids or the
 * checks prove nothing about what is served. Texts that tokenizers get wrong
 * first: accents, CJK, superscripts, runs of whitespace, special-token
 * look-alikes (EmbeddingGemma's <image_soft_token> is past its embedding
 * table), and one past max_tokens.
 */
const TEXTS = [
  "what causes high blood pressure",
  "Café déjà vu — naïve résumé",
  "東京の天気は？ 北京欢迎你",
  "E = mc² and x₁ + x₂",
  "tabs\tand  double  spaces\n\nand newlines",
  "a literal <image_soft_token> and <pad> in text",
  "    leading and trailing spaces    ",
  "emoji 🚀🔥 and symbols ©®™",
  "long ".repeat(3000),
];
const PYTHON = join(REPO_ROOT, "training/.venv/bin/python");
// The default bundles, and the opt-in teacher when it has been built.
const BUNDLES = ["all-minilm-l6-v2", "all-mpnet-base-v2", "embeddinggemma-300m"].filter((b) =>
  existsSync(join(MODELS, b, "manifest.json")),
);

function pythonIds(dir: string, kind: "query" | "document"): number[][] {
  const script = `
import json, sys
from pathlib import Path
from tandem_training.tokens import BundleTokenizer
m = json.loads(Path(sys.argv[1], "manifest.json").read_text())
tok = BundleTokenizer(Path(sys.argv[1], m["tokenizer"]["file"]), m["max_tokens"])
prefix = m["query_prefix"] if sys.argv[2] == "query" else m["document_prefix"]
print(json.dumps(tok.ids([prefix + t for t in json.load(sys.stdin)])))
`;
  const out = execFileSync(PYTHON, ["-c", script, dir, kind], { input: JSON.stringify(TEXTS), encoding: "utf8" });
  return JSON.parse(out) as number[][];
}

describe("tokenizer parity with training/", {
  skip: existsSync(PYTHON) ? false : "training/.venv is not set up",
}, () => {
  for (const name of BUNDLES) {
    it(`${name}: the services' ids equal the builder's, prefixes and truncation included`, () => {
      const dir = join(MODELS, name);
      const m = parseManifest(dir, JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")));
      const tok = new TextTokenizer(join(dir, m.tokenizer.file), m.max_tokens, {
        query: m.query_prefix,
        document: m.document_prefix,
      });
      for (const kind of ["query", "document"] as const) {
        const expected = pythonIds(dir, kind);
        TEXTS.forEach((text, i) => {
          const got = tok.tokenize(text, kind);
          assert.deepEqual(got.ids, expected[i], `${name} ${kind}: ${JSON.stringify(text.slice(0, 40))}`);
        });
        assert.equal(tok.tokenize(TEXTS.at(-1) as string, kind).truncated, true);
      }
    });
  }
});
