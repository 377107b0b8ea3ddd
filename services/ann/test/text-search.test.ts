import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { status } from "@grpc/grpc-js";
import { Metric, QueryEncoderClient, TextKind } from "@tandem/proto";
import { createLogger, globalMeter, insecure } from "@tandem/service-kit";
import { createReq, failure, searchReq, startTestAnn, tempDir, unary, upsert } from "./support.js";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const ENCODER_SERVICE = `${REPO}services/query-encoder/src/service.ts`;
const ENCODER_CONFIG = `${REPO}services/query-encoder/src/config.ts`;
const BUNDLE = `${REPO}.cache/models/all-minilm-l6-v2`;
const SPACE = "all-minilm-l6-v2/384";

interface EncoderModule {
  startQueryEncoder(
    config: unknown,
    deps: { log?: unknown; meter?: unknown },
  ): Promise<{ port: number; stop(): Promise<void> }>;
}
interface EncoderConfigModule {
  encoderConfig(vars: NodeJS.ProcessEnv): unknown;
}

test("Search{text}: one hop through the real query encoder; another space is FAILED_PRECONDITION naming both", async (t) => {
  if (!existsSync(ENCODER_SERVICE) || !existsSync(ENCODER_CONFIG)) {
    t.skip(`the query encoder service is not there yet (${ENCODER_SERVICE})`);
    return;
  }
  if (!existsSync(`${BUNDLE}/manifest.json`)) {
    t.skip(`the model bundle is not built yet (${BUNDLE}); build it with the training/ tooling`);
    return;
  }
  const { startQueryEncoder } = (await import(ENCODER_SERVICE)) as EncoderModule;
  const { encoderConfig } = (await import(ENCODER_CONFIG)) as EncoderConfigModule;
  const encoder = await startQueryEncoder(
    encoderConfig({ PORT: "0", HOST: "127.0.0.1", MODEL_DIR: BUNDLE, LOG_LEVEL: "warn", INTRA_OP_THREADS: "1" }),
    { log: createLogger("encoder-test", "warn"), meter: globalMeter("encoder-test") },
  );
  const tmp = tempDir("text");
  const s = await startTestAnn(tmp.dir, { ENCODER_ADDR: `127.0.0.1:${encoder.port}` });
  const enc = new QueryEncoderClient(`127.0.0.1:${encoder.port}`, insecure());
  try {
    const docs = [
      "The mitochondria is the powerhouse of the cell and produces ATP.",
      "Vitamin D deficiency is associated with lower bone mineral density.",
      "The Eiffel Tower is a wrought-iron lattice tower in Paris.",
      "Regular aerobic exercise reduces systolic blood pressure.",
    ];
    const encoded = await unary(enc.encode.bind(enc), { texts: docs, kind: TextKind.TEXT_KIND_DOCUMENT });
    assert.equal(encoded.space, SPACE);
    await unary(s.client.createCollection.bind(s.client), createReq("minilm", 384, { space: SPACE }));
    await upsert(s.client, [
      {
        collection: "minilm",
        points: docs.map((text, i) => ({
          id: `doc-${i}`,
          vector: encoded.embeddings[i]!.vector,
          payloadJson: JSON.stringify({ text }),
        })),
      },
    ]);
    await unary(s.client.setAlias.bind(s.client), { alias: "search", collection: "minilm" });

    const res = await unary(s.client.search.bind(s.client), {
      ...searchReq("search", new Float32Array(0), { k: 2, withPayload: true }),
      query: { $case: "text", value: "does vitamin d affect bones?" },
    });
    assert.equal(res.collection, "minilm");
    assert.equal(res.space, SPACE);
    assert.equal(res.hits[0]?.id, "doc-1");
    assert.match(JSON.parse(res.hits[0]!.payloadJson).text as string, /Vitamin D/);
    assert.ok(res.queryTokens > 2);
    assert.equal(res.queryTruncated, false);

    // Same dimension, different space: refused on the space, not the dims.
    for (const [name, space, dims] of [
      ["arctic", "arctic-embed-m-v1.5/768", 768],
      ["lookalike", "some-other-model/384", 384],
    ] as const) {
      await unary(
        s.client.createCollection.bind(s.client),
        createReq(name, dims, { space, metric: Metric.METRIC_COSINE }),
      );
      const err = await failure(
        unary(s.client.search.bind(s.client), {
          ...searchReq(name, new Float32Array(0)),
          query: { $case: "text", value: "vitamin d" },
        }),
      );
      assert.equal(err.code, status.FAILED_PRECONDITION);
      assert.ok(err.details.includes(SPACE) && err.details.includes(space), err.details);
    }
  } finally {
    enc.close();
    await s.stop();
    await encoder.stop();
    tmp.remove();
  }
});
