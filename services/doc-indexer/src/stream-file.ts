import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import type { Document, IndexerClient, SubmitResponse } from "@tandem/proto";
import { parseCorpusLine } from "./corpus.js";

/**
 * Client side of Indexer.Submit for a local JSONL / BEIR corpus: streams its
 * first `limit` documents (0: all) in messages of `batchDocs`, honouring
 * back-pressure. Shared by the indexer's CLI and `tandem index` / `tandem up`.
 */
export function streamCorpusFile(
  indexer: IndexerClient,
  collection: string,
  path: string,
  limit: number,
  batchDocs = 256,
): Promise<SubmitResponse> {
  return new Promise<SubmitResponse>((resolve, reject) => {
    const call = indexer.submit((err, res) => (err ? reject(err) : resolve(res)));
    let batch: Document[] = [];
    let n = 0;
    const lines = createInterface({ input: createReadStream(path), crlfDelay: Number.POSITIVE_INFINITY });
    (async () => {
      for await (const line of lines) {
        if (!line.trim()) continue;
        if (limit > 0 && n >= limit) break;
        n++;
        const d = parseCorpusLine(line);
        // A line that does not parse is still sent: the service rejects it with a reason and a position.
        batch.push("error" in d ? { id: d.id, text: "", payloadJson: "" } : d);
        if (batch.length >= batchDocs) {
          if (!call.write({ collection, documents: batch })) await new Promise((r) => call.once("drain", r));
          batch = [];
        }
      }
      lines.close();
      call.write({ collection, documents: batch });
      call.end();
    })().catch((err: unknown) => {
      call.cancel();
      reject(err);
    });
  });
}
