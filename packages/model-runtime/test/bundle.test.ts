import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { BareEmbedder, cosine } from "../../../test/support/bare.js";
import { bundleDir } from "../../../test/support/paths.js";
import { type Backend, BundleError, EmbeddingModel, type Tokenized } from "../src/index.js";
import { loadOrtBackend } from "../src/infer.js";

const SOURCE = bundleDir("all-minilm-l6-v2");
const manifest = JSON.parse(readFileSync(join(SOURCE, "manifest.json"), "utf8")) as Record<string, unknown>;

describe("model bundles", () => {
  let work: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), "tandem-bundle-"));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  /** A copy of the real bundle (graph linked, not copied) with manifest edits. */
  function variant(name: string, edit: (m: Record<string, unknown>) => void, skip: string[] = []): string {
    const dir = join(work, name);
    mkdirSync(dir);
    if (!skip.includes("model.onnx")) symlinkSync(join(SOURCE, "model.onnx"), join(dir, "model.onnx"));
    if (!skip.includes("tokenizer.json")) cpSync(join(SOURCE, "tokenizer.json"), join(dir, "tokenizer.json"));
    const m = structuredClone(manifest);
    edit(m);
    if (!skip.includes("manifest.json")) writeFileSync(join(dir, "manifest.json"), JSON.stringify(m));
    return dir;
  }

  async function loadError(dir: string): Promise<string> {
    try {
      const model = await EmbeddingModel.load(dir, { intraOpThreads: 1 });
      await model.release();
    } catch (err) {
      assert.ok(err instanceof BundleError, `a BundleError, got ${String(err)}`);
      return err.message;
    }
    throw new Error(`bundle ${dir} loaded but should not have`);
  }

  it("names a missing directory, manifest, graph or tokenizer", async () => {
    assert.match(await loadError(join(work, "nope")), /directory does not exist/);
    assert.match(await loadError(variant("no-manifest", () => {}, ["manifest.json"])), /missing file manifest\.json/);
    assert.match(await loadError(variant("no-graph", () => {}, ["model.onnx"])), /missing file model\.onnx/);
    assert.match(await loadError(variant("no-tok", () => {}, ["tokenizer.json"])), /missing file tokenizer\.json/);
  });

  it("refuses an unknown pooling and a malformed manifest, saying which field", async () => {
    assert.match(
      await loadError(variant("max-pool", (m) => (m.pooling = "max"))),
      /invalid manifest\.json: pooling: Invalid option/,
    );
    assert.match(await loadError(variant("no-space", (m) => delete m.space)), /space/);
  });

  it("detects a dimension mismatch between the manifest and the graph", async () => {
    const msg = await loadError(
      variant("wrong-dims", (m) => {
        m.dims = 512;
        m.hidden_size = 512;
      }),
    );
    assert.match(msg, /dimension mismatch: the graph's last_hidden_state has width 384, the manifest says 512/);
  });

  it("applies a dense projection after pooling and before normalisation", async () => {
    const out = 8;
    const weights = new Float32Array(out * 384);
    for (let o = 0; o < out; o++) weights[o * 384 + o] = 1; // picks the first 8 pooled components
    const dir = variant("dense", (m) => {
      m.dims = out;
      m.dense = { file: "dense.f32", in: 384, out, bias: false };
      m.normalize = false;
    });
    writeFileSync(join(dir, "dense.f32"), Buffer.from(weights.buffer));
    const plain = variant("plain", (m) => (m.normalize = false));
    const [withDense, without] = await Promise.all([
      EmbeddingModel.load(dir, { intraOpThreads: 1 }),
      EmbeddingModel.load(plain, { intraOpThreads: 1 }),
    ]);
    const [a] = await withDense.embed(["dense layers project pooled vectors"], "query");
    const [b] = await without.embed(["dense layers project pooled vectors"], "query");
    assert.equal(a!.length, out);
    for (let i = 0; i < out; i++) assert.ok(Math.abs(a![i]! - b![i]!) < 1e-5);
    await Promise.all([withDense.release(), without.release()]);
    writeFileSync(join(dir, "dense.f32"), Buffer.alloc(12));
    assert.match(await loadError(dir), /dense\.f32 has 12 bytes, expected 12288/);
  });

  it("pools the first token for pooling cls, as an independent reference does, not the mean", async () => {
    const dir = variant("cls", (m) => (m.pooling = "cls"));
    const [cls, mean, bare] = await Promise.all([
      EmbeddingModel.load(dir, { intraOpThreads: 1 }),
      EmbeddingModel.load(SOURCE, { intraOpThreads: 1 }),
      BareEmbedder.load(dir, 1),
    ]);
    assert.equal(cls.info.pooling, "cls");
    // Rows of different lengths in one batch: right padding must not move the first token.
    const texts = ["cls pooling", "the first token's state stands for the whole text in cls pooling, so it differs"];
    const got = await cls.embed(texts, "query");
    const expected = await bare.embed(texts);
    const meaned = await mean.embed(texts, "query");
    for (const [i, v] of got.entries()) {
      assert.ok(cosine(v, expected[i]!) > 0.9999, `text ${i}: cls against the reference ${cosine(v, expected[i]!)}`);
      assert.ok(cosine(v, meaned[i]!) < 0.99, `text ${i}: cls must differ from mean (${cosine(v, meaned[i]!)})`);
    }
    await Promise.all([cls.release(), mean.release()]);
  });

  it("runs a batch as the caller formed it: one graph run, however ragged its rows", async () => {
    const runs: number[] = [];
    const model = await EmbeddingModel.load(SOURCE, {
      intraOpThreads: 1,
      backend: async (graph, opts, onFallback) => {
        const ort: Backend = await loadOrtBackend(graph, opts, onFallback);
        return {
          provider: ort.provider,
          run: (items: readonly Tokenized[]) => {
            runs.push(items.length);
            return ort.run(items);
          },
          release: () => ort.release(),
        };
      },
    });
    runs.length = 0; // the load's own check run
    const texts = ["short", "word ".repeat(200), "a query", "word ".repeat(20)];
    const batch = await model.embedBatch(texts.map((t) => model.tokenize(t, "document")));
    assert.deepEqual(runs, [4], "four rows of 3 to 202 tokens, one run");
    for (const [i, t] of texts.entries()) {
      const [alone] = await model.embed([t], "document");
      assert.ok(cosine(batch[i]!, alone!) > 0.9999, `row ${i} padded in the batch embeds as alone`);
    }
    await model.release();
  });

  it("serves a declared Matryoshka size as its own space: the first dims, re-normalised", async () => {
    const dir = variant("mrl", (m) => (m.matryoshka_dims = [128, 64]));
    const [full, cut] = await Promise.all([
      EmbeddingModel.load(dir, { intraOpThreads: 1 }),
      EmbeddingModel.load(dir, { intraOpThreads: 1, dims: 64 }),
    ]);
    assert.deepEqual([full.info.dims, full.info.space], [384, "all-minilm-l6-v2/384"]);
    assert.deepEqual([cut.info.dims, cut.info.space], [64, "all-minilm-l6-v2/64"]);
    const text = "matryoshka vectors keep their meaning in a prefix";
    const [a] = await full.embed([text], "document");
    const [b] = await cut.embed([text], "document");
    assert.equal(b!.length, 64);
    let norm = 0;
    for (let i = 0; i < 64; i++) norm += a![i]! * a![i]!;
    for (let i = 0; i < 64; i++) assert.ok(Math.abs(b![i]! - a![i]! / Math.sqrt(norm)) < 1e-6);
    await Promise.all([full.release(), cut.release()]);

    const refused = await EmbeddingModel.load(dir, { intraOpThreads: 1, dims: 100 }).catch((e: Error) => e);
    assert.ok(refused instanceof BundleError);
    assert.match(refused.message, /cannot serve 100 dims: it serves 384, 128, 64/);
    const none = await EmbeddingModel.load(SOURCE, { intraOpThreads: 1, dims: 64 }).catch((e: Error) => e);
    assert.match(String(none), /declares no Matryoshka sizes, only its full width 384/);
  });

  it("refuses Matryoshka sizes at or past the full width, repeated, or without normalisation", async () => {
    assert.match(
      await loadError(variant("mrl-wide", (m) => (m.matryoshka_dims = [384]))),
      /matryoshka_dims \[384\] must be distinct and below dims 384/,
    );
    assert.match(await loadError(variant("mrl-twice", (m) => (m.matryoshka_dims = [64, 64]))), /must be distinct/);
    const unnormalised = variant("mrl-raw", (m) => {
      m.matryoshka_dims = [64];
      m.normalize = false;
    });
    assert.match(await loadError(unnormalised), /matryoshka_dims needs normalize: true/);
  });

  it("loads a plain sentence-transformers export and embeds like the bundle", async () => {
    const dir = join(work, "st-export");
    mkdirSync(join(dir, "onnx"), { recursive: true });
    mkdirSync(join(dir, "1_Pooling"));
    symlinkSync(join(SOURCE, "model.onnx"), join(dir, "onnx", "model.onnx"));
    cpSync(join(SOURCE, "tokenizer.json"), join(dir, "tokenizer.json"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ hidden_size: 384, _name_or_path: "all-MiniLM-L6-v2" }));
    writeFileSync(join(dir, "sentence_bert_config.json"), JSON.stringify({ max_seq_length: 256 }));
    writeFileSync(
      join(dir, "modules.json"),
      JSON.stringify([
        { idx: 0, name: "0", path: "", type: "sentence_transformers.models.Transformer" },
        { idx: 1, name: "1", path: "1_Pooling", type: "sentence_transformers.models.Pooling" },
        { idx: 2, name: "2", path: "2_Normalize", type: "sentence_transformers.models.Normalize" },
      ]),
    );
    writeFileSync(join(dir, "1_Pooling", "config.json"), JSON.stringify({ pooling_mode_mean_tokens: true }));
    const [st, bundle] = await Promise.all([
      EmbeddingModel.load(dir, { intraOpThreads: 1 }),
      EmbeddingModel.load(SOURCE, { intraOpThreads: 1 }),
    ]);
    assert.equal(st.info.space, "all-minilm-l6-v2/384");
    assert.equal(st.info.pooling, "mean");
    assert.equal(st.info.normalize, true);
    const text = ["sentence-transformers exports load without a manifest"];
    const [a] = await st.embed(text, "query");
    const [b] = await bundle.embed(text, "query");
    assert.ok(cosine(a!, b!) > 0.99999);
    await Promise.all([st.release(), bundle.release()]);

    writeFileSync(join(dir, "1_Pooling", "config.json"), JSON.stringify({ pooling_mode_max_tokens: true }));
    assert.match(await loadError(dir), /unknown pooling pooling_mode_max_tokens/);
  });

  it("truncates to max tokens keeping the closing special token, and says so", async () => {
    const model = await EmbeddingModel.load(SOURCE, { intraOpThreads: 1 });
    const long = model.tokenize("word ".repeat(1000), "document");
    assert.equal(long.ids.length, model.info.maxTokens);
    assert.equal(long.truncated, true);
    assert.equal(long.ids[0], 101, "[CLS] first");
    assert.equal(long.ids.at(-1), 102, "[SEP] kept last");
    const short = model.tokenize("a short query", "query");
    assert.equal(short.truncated, false);
    assert.deepEqual(short.ids, [101, 1037, 2460, 23032, 102]);
    await model.release();
  });

  /** Runs `fn`, timing it, and the longest gap between ticks of a 5 ms timer meanwhile. */
  async function timerGapDuring<T>(fn: () => Promise<T>): Promise<{ value: T; runMs: number; maxGap: number }> {
    let last = performance.now();
    let maxGap = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
    }, 5);
    const start = performance.now();
    const value = await fn();
    const runMs = performance.now() - start;
    clearInterval(timer);
    return { value, runMs, maxGap: Math.max(maxGap, performance.now() - last) };
  }

  it("runs the graph off the main thread: timers keep firing through a long batch", async () => {
    const model = await EmbeddingModel.load(SOURCE, { intraOpThreads: 1 });
    // One graph run of the whole batch (embedBatch never splits it).
    const items = Array.from({ length: 16 }, () => model.tokenize("word ".repeat(1000), "document"));
    const { value: vectors, runMs, maxGap } = await timerGapDuring(() => model.embedBatch(items));
    assert.equal(vectors.length, items.length);
    assert.ok(runMs > 200, `the batch must run long enough to tell (${runMs.toFixed(0)} ms)`);
    assert.ok(maxGap < runMs / 3, `longest timer gap ${maxGap.toFixed(0)} ms during a ${runMs.toFixed(0)} ms run`);
    await model.release();
  });

  it("runs a batch within inlineMaxTokens on the calling thread, a larger one on the inference thread, with the same vectors", async () => {
    const long = "word ".repeat(1000);
    const threaded = await EmbeddingModel.load(SOURCE, { intraOpThreads: 1 });
    const small = Array.from({ length: 8 }, () => threaded.tokenize(long, "document"));
    const large = Array.from({ length: 16 }, () => threaded.tokenize(long, "document"));
    const limit = small.length * threaded.info.maxTokens;
    const inline = await EmbeddingModel.load(SOURCE, { intraOpThreads: 1, inlineMaxTokens: limit });
    try {
      const onLoop = await timerGapDuring(() => inline.embedBatch(small));
      assert.ok(onLoop.runMs > 100, `the batch must run long enough to tell (${onLoop.runMs.toFixed(0)} ms)`);
      assert.ok(
        onLoop.maxGap > onLoop.runMs * 0.8,
        `${limit} padded tokens ran on the event loop: no timer fired for ${onLoop.maxGap.toFixed(0)} of ${onLoop.runMs.toFixed(0)} ms`,
      );
      const offLoop = await timerGapDuring(() => inline.embedBatch(large));
      assert.ok(
        offLoop.maxGap < offLoop.runMs / 3,
        `${large.length * threaded.info.maxTokens} padded tokens went to the thread: longest timer gap ${offLoop.maxGap.toFixed(0)} of ${offLoop.runMs.toFixed(0)} ms`,
      );
      const queries = ["a short query", "does vitamin d prevent fractures"].map((q) => inline.tokenize(q, "query"));
      const [a, b] = await Promise.all([inline.embedBatch(queries), threaded.embedBatch(queries)]);
      for (const [i, v] of a.entries()) assert.ok(cosine(v, b[i]!) > 0.99999, `row ${i}: the same vector either way`);
      assert.ok(cosine(onLoop.value[0]!, offLoop.value[0]!) > 0.99999, "a document: the same vector either way");
    } finally {
      await Promise.all([inline.release(), threaded.release()]);
    }
  });

  it("refuses to embed after release instead of waiting for a thread that is gone", async () => {
    const model = await EmbeddingModel.load(SOURCE, { intraOpThreads: 1 });
    await model.release();
    await assert.rejects(model.embed(["a query"], "query"), /the model was released/);
  });
});
