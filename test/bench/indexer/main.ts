// Benchmark: the teacher through the queued indexing pipeline (gRPC Submit -> BullMQ in Redis ->
// worker: tokenize, token-budget batches, embed -> streaming Upsert into the ANN service ->
// acknowledged) against a bare onnxruntime loop over the same batches, in the same run.
//
//   pnpm bench:indexer [--bundle DIR[,DIR...]] [--provider cpu|cuda] [--docs N] [--threads T]
//
// Several bundles (e.g. two teachers) are measured one after the other in the same run, on the same
// documents: the table gets a row each and their docs/s relative to the first bundle's.
// Stdout is a markdown table, then one JSON object on the last line (save both, as
// docs/figures/bench-indexer.txt, for `pnpm readme`); progress goes to stderr. queue_overhead_ratio = pipeline docs/s divided
// by bare docs/s, per round (the two run back to back), median over rounds (1.0: the queue costs
// nothing; the target is >= 0.85). docs_per_s / bare_docs_per_s are the medians of each side.
import { cpus, hostname } from "node:os";
import { parseArgs } from "node:util";
import { formBatches, paddingWaste } from "@tandem/doc-indexer";
import { EmbeddingModel, type ExecutionProvider, type Tokenized } from "@tandem/model-runtime";
import { JobState } from "@tandem/proto";
import * as ort from "onnxruntime-node";
import {
  clients,
  createCollection,
  loadCorpus,
  SCIFACT,
  submit,
  waitJob,
} from "../../../services/doc-indexer/test/support/harness.js";
import { paddedFeeds } from "../../support/bare.js";
import { MODELS } from "../../support/paths.js";
import { TestStack } from "../../support/stack.js";

const { values: args } = parseArgs({
  options: {
    bundle: { type: "string", default: `${MODELS}/all-minilm-l6-v2` },
    provider: { type: "string", default: "cpu" },
    docs: { type: "string", default: "128" },
    threads: { type: "string", default: String(Math.min(4, cpus().length)) },
    "max-batch-tokens": { type: "string", default: "8192" },
    "max-batch-docs": { type: "string", default: "32" },
    rounds: { type: "string", default: "2" },
  },
});
const provider = args.provider as ExecutionProvider;
if (provider !== "cpu" && provider !== "cuda") throw new Error(`--provider cpu|cuda, not ${args.provider}`);
const N = Number(args.docs);
const threads = Number(args.threads);
const limits = { maxBatchTokens: Number(args["max-batch-tokens"]), maxBatchDocs: Number(args["max-batch-docs"]) };
const log = (msg: string) => process.stderr.write(`${msg}\n`);

const docs = loadCorpus(SCIFACT, N).map((d) => ({ id: d.id, text: `${d.title} ${d.text}`, payloadJson: "" }));

// Alternating rounds after one warm-up pass; the machine is shared, so each side reports its
// median and the two sides see the same background load.
const median = (xs: number[]) => {
  const v = [...xs].sort((a, b) => a - b);
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? (v[m] as number) : ((v[m - 1] as number) + (v[m] as number)) / 2;
};

async function benchBundle(bundle: string) {
  // The same tokens and the same batches the worker will form.
  const model = await EmbeddingModel.load(bundle, { providers: [provider], intraOpThreads: threads });
  const tokenized: Tokenized[] = docs.map((d) => model.tokenize(d.text, "document"));
  const batches = formBatches(
    tokenized.map((t) => t.ids.length),
    limits,
  );
  const tokens = tokenized.reduce((n, t) => n + t.ids.length, 0);
  const space = model.info.space;
  const dims = model.info.dims;
  await model.release();
  log(
    `${bundle}: ${N} docs, ${tokens} tokens, ${batches.length} batches, padding waste ${(paddingWaste(batches) * 100).toFixed(1)}%`,
  );
  async function bareLoop(warmUpOnly = false): Promise<number> {
    const session = await ort.InferenceSession.create(`${bundle}/model.onnx`, {
      executionProviders: [provider],
      graphOptimizationLevel: "all",
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: "sequential",
    });
    const run = async (rows: number[][]) => {
      await session.run(paddedFeeds(session, rows));
    };
    await run([tokenized[0]!.ids]); // warm-up, as the worker's load does
    const t0 = performance.now();
    for (const batch of warmUpOnly ? batches.slice(0, 1) : batches)
      await run(batch.indices.map((i) => tokenized[i]!.ids));
    const s = (performance.now() - t0) / 1000;
    await session.release();
    return s;
  }

  async function pipeline(): Promise<{ wallS: number; workerDocsPerS: number; ann: string }> {
    const stack = new TestStack("indexer-bench");
    try {
      const ann = await stack.ann();
      const indexer = await stack.indexer(ann.port, {
        TEACHER_BUNDLE_DIR: bundle,
        // Stdout is the figure file: the dev Redis's AOF warning is not a figure.
        LOG_LEVEL: "error",
        PROVIDERS: provider,
        INTRA_OP_THREADS: String(threads),
        MAX_BATCH_TOKENS: String(limits.maxBatchTokens),
        MAX_BATCH_DOCS: String(limits.maxBatchDocs),
        JOB_MAX_DOCS: String(N),
        UPSERT_FLUSH_DOCS: "64",
      });
      const c = clients(stack, indexer.port, ann.port);
      await createCollection(c.ann, "bench", space, dims);
      const t0 = performance.now();
      const sub = await submit(c.indexer, "bench", docs);
      const st = await waitJob(c.indexer, sub.jobId, 3_600_000, undefined, 25);
      const wallS = (performance.now() - t0) / 1000;
      if (st.state !== JobState.JOB_STATE_COMPLETED || st.docsDone !== N) {
        throw new Error(`pipeline job ${JobState[st.state]} done ${st.docsDone}/${N}: ${st.error}`);
      }
      return { wallS, workerDocsPerS: st.docsPerS, ann: "ann-service" };
    } finally {
      await stack.stop();
    }
  }

  await bareLoop(true);
  const bareRuns: number[] = [];
  const pipeRuns: number[] = [];
  let annKind = "";
  for (let r = 0; r < Number(args.rounds); r++) {
    // The order flips every round, so a trend in the background load favours neither side.
    const sides = r % 2 === 0 ? (["bare", "pipeline"] as const) : (["pipeline", "bare"] as const);
    for (const side of sides) {
      if (side === "bare") {
        const s = await bareLoop();
        bareRuns.push(s);
        log(`round ${r}: bare loop ${(N / s).toFixed(2)} docs/s`);
      } else {
        const p = await pipeline();
        pipeRuns.push(p.wallS);
        annKind = p.ann;
        log(
          `round ${r}: pipeline ${(N / p.wallS).toFixed(2)} docs/s end to end (worker ${p.workerDocsPerS.toFixed(2)})`,
        );
      }
    }
  }
  const bareS = median(bareRuns);
  const pipeS = median(pipeRuns);

  return {
    bench: "indexer",
    machine: `${hostname()} (${cpus()[0]?.model ?? "cpu"} x${cpus().length})`,
    provider,
    bundle: bundle.split("/").pop() ?? bundle,
    docs: N,
    tokens,
    batches: batches.length,
    padding_waste: Number(paddingWaste(batches).toFixed(4)),
    intra_op_threads: threads,
    docs_per_s: Number((N / pipeS).toFixed(3)),
    tokens_per_s: Number((tokens / pipeS).toFixed(1)),
    bare_docs_per_s: Number((N / bareS).toFixed(3)),
    bare_tokens_per_s: Number((tokens / bareS).toFixed(1)),
    // Per round, bare and pipeline ran back to back under the same background load: the ratio of
    // each pair, then the median, is robust to the load drifting between rounds.
    queue_overhead_ratio: Number(median(bareRuns.map((b, i) => b / (pipeRuns[i] as number))).toFixed(3)),
    round_ratios: bareRuns.map((b, i) => Number((b / (pipeRuns[i] as number)).toFixed(3))),
    ann: annKind,
    rounds: bareRuns.length,
  };
}

const results = [];
for (const bundle of args.bundle.split(",")) results.push(await benchBundle(bundle));
const first = results[0] as (typeof results)[number];
console.log(
  `# indexer benchmark — ${first.machine}, provider ${provider}, ${threads} intra-op threads, first ${N} scifact documents, ${first.ann} in the same process`,
);
console.log(
  "| teacher | docs | tokens | batches | padding | pipeline docs/s | pipeline tokens/s | bare docs/s | ratio per round | queue_overhead_ratio | docs/s vs first |",
);
console.log("|---|---|---|---|---|---|---|---|---|---|---|");
for (const r of results) {
  console.log(
    `| ${r.bundle} | ${N} | ${r.tokens} | ${r.batches} | ${(r.padding_waste * 100).toFixed(1)} % | ${r.docs_per_s} | ${r.tokens_per_s} | ${r.bare_docs_per_s} | ${r.round_ratios.join(", ")} | ${r.queue_overhead_ratio} | ${(r.docs_per_s / first.docs_per_s).toFixed(3)} |`,
  );
}
for (const r of results) console.log(JSON.stringify(r));
process.exit(0);
