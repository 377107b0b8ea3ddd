import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import type { Indexer, SubmitDocument } from "@tandem/client";
import type { SubmitResponse } from "@tandem/proto";
import { parseCorpusLine } from "./parse.js";

/** The first `limit` documents (0: all) of a local JSONL / BEIR corpus, as Submit sends them. */
export async function* corpusDocuments(path: string, limit: number): AsyncGenerator<SubmitDocument> {
  let n = 0;
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Number.POSITIVE_INFINITY });
  try {
    for await (const line of lines) {
      if (!line.trim()) continue;
      if (limit > 0 && n >= limit) break;
      n++;
      const d = parseCorpusLine(line);
      // A line that does not parse is still sent: the service rejects it with a reason and a position.
      yield "error" in d ? { id: d.id, text: "" } : d;
    }
  } finally {
    lines.close();
  }
}

/**
 * Client side of Indexer.Submit for a local corpus file, in messages of `batchDocs`, without a
 * deadline (a large corpus streams for as long as it takes). Shared by the indexer's CLI and
 * `tandem index` / `tandem up`.
 */
export function streamCorpusFile(
  indexer: Indexer,
  collection: string,
  path: string,
  limit: number,
  batchDocs = 256,
): Promise<SubmitResponse> {
  return indexer.submit(collection, corpusDocuments(path, limit), { docsPerMessage: batchDocs, deadlineMs: null });
}
