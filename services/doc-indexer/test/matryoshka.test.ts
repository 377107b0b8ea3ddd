import assert from "node:assert/strict";
import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { EmbeddingModel, truncateNormalize } from "@tandem/model-runtime";
import { decodeVector, JobState } from "@tandem/proto";
import { unary } from "@tandem/service-kit";
import { cosine } from "../../../test/support/bare.js";
import { TestStack } from "../../../test/support/stack.js";
import { startIndexer } from "../src/service.js";
import { type Clients, clients, createCollection, MINILM, submit, waitJob } from "./support/harness.js";

/**
 * A teacher served at a Matryoshka size (TEACHER_DIMS): MiniLM's graph under a
 * manifest that declares 128, so the test needs no opt-in model. The space is
 * named for the width, so only collections of that space take its vectors.
 */
describe("a teacher served at a Matryoshka size", () => {
  const stack = new TestStack("mrl");
  const bundle = join(stack.scratch, "minilm-mrl");
  let annPort = 0;
  let c: Clients;

  before(async () => {
    mkdirSync(bundle);
    symlinkSync(join(MINILM, "model.onnx"), join(bundle, "model.onnx"));
    cpSync(join(MINILM, "tokenizer.json"), join(bundle, "tokenizer.json"));
    const m = JSON.parse(readFileSync(join(MINILM, "manifest.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(join(bundle, "manifest.json"), JSON.stringify({ ...m, name: "minilm-mrl", matryoshka_dims: [128] }));
    const ann = await stack.ann();
    annPort = ann.port;
    const indexer = await stack.indexer(ann.port, { TEACHER_BUNDLE_DIR: bundle, TEACHER_DIMS: "128" });
    c = clients(stack, indexer.port, ann.port);
  });

  after(() => stack.stop());

  it("names the truncated space and writes the first 128 dims, re-normalised", async () => {
    const info = await unary(c.indexer.info.bind(c.indexer), {});
    assert.deepEqual([info.teacher?.space, info.teacher?.dims], ["all-minilm-l6-v2/128", 128]);
    await createCollection(c.ann, "mrl", "all-minilm-l6-v2/128", 128);
    const docs = [
      { id: "a", text: "Matryoshka embeddings keep their meaning in a prefix.", payloadJson: "" },
      { id: "b", text: "Vitamin D deficiency is associated with low bone density.", payloadJson: "" },
    ];
    const job = await waitJob(c.indexer, (await submit(c.indexer, "mrl", docs)).jobId);
    assert.equal(job.state, JobState.JOB_STATE_COMPLETED, job.error);
    const got = await unary(c.ann.get.bind(c.ann), { collection: "mrl", ids: ["a", "b"], withVectors: true });
    const full = await EmbeddingModel.load(MINILM, { intraOpThreads: 1 });
    try {
      const expected = await full.embed(
        docs.map((d) => d.text),
        "document",
      );
      got.points.forEach((p, i) => {
        const v = decodeVector(p.vector, 128);
        assert.ok(typeof v !== "string", v as string);
        assert.ok(cosine(v, truncateNormalize(expected[i] as Float32Array, 128)) > 0.9999);
      });
    } finally {
      await full.release();
    }
  });

  it("refuses a collection of the full-width space: the indexer has no teacher for it", async () => {
    await createCollection(c.ann, "full", "all-minilm-l6-v2/384", 384);
    await assert.rejects(
      submit(c.indexer, "full", [{ id: "x", text: "full width", payloadJson: "" }]),
      /space "all-minilm-l6-v2\/384", but the indexer's teacher writes space "all-minilm-l6-v2\/128"/,
    );
  });

  it("an API without a worker describes the teacher from its manifest at the same width", async () => {
    const api = await stack.indexer(
      annPort,
      { TEACHER_BUNDLE_DIR: bundle, TEACHER_DIMS: "128", RUN_WORKER: "false" },
      stack.namespace("api"),
    );
    const apiClients = clients(stack, api.port, annPort);
    const info = await unary(apiClients.indexer.info.bind(apiClients.indexer), {});
    assert.deepEqual(
      [info.teacher?.bundleName, info.teacher?.space, info.teacher?.dims],
      ["minilm-mrl", "all-minilm-l6-v2/128", 128],
    );
  });

  it("refuses at start-up a size the bundle does not declare", async () => {
    await assert.rejects(
      startIndexer(
        stack.indexerConfig(annPort, { TEACHER_BUNDLE_DIR: bundle, TEACHER_DIMS: "100" }, stack.namespace("bad")),
      ),
      /minilm-mrl cannot serve 100 dims: it serves 384, 128/,
    );
  });
});
