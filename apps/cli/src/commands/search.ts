import { parsePayload } from "@tandem/client";
import { address } from "../addresses.js";
import { annClient, describeError } from "../clients.js";

export interface SearchFlags {
  k: number;
  collection: string;
  exact?: boolean;
  json?: boolean;
  ann?: string;
}

export interface SearchHit {
  rank: number;
  id: string;
  score: number;
  title: string;
  snippet: string;
}

export interface SearchResult {
  collection: string;
  space: string;
  queryTokens: number;
  tookMs: number;
  hits: SearchHit[];
}

const SNIPPET_CHARS = 120;

/** Search{text}: the ANN service asks its query encoder for the vector, so this is the served path end to end. */
export async function search(
  addr: string,
  text: string,
  flags: Omit<SearchFlags, "ann" | "json">,
): Promise<SearchResult> {
  const ann = annClient(addr);
  try {
    const t0 = performance.now();
    const res = await ann.search(
      {
        collection: flags.collection,
        k: flags.k,
        text,
        exact: flags.exact ?? false,
        withPayload: true,
        payloadFields: ["title", "text"],
      },
      { deadlineMs: 30_000 },
    );
    const tookMs = performance.now() - t0;
    return {
      collection: res.collection,
      space: res.space,
      queryTokens: res.queryTokens,
      tookMs,
      hits: res.hits.map((h, i) => {
        const payload = parsePayload(h.payloadJson);
        const title = typeof payload.title === "string" ? payload.title : "";
        let body = typeof payload.text === "string" ? payload.text : "";
        // The indexer stores "title text" as the text of a BEIR document: don't print the title twice.
        if (title && body.startsWith(title)) body = body.slice(title.length).trimStart();
        const snippet = body.length > SNIPPET_CHARS ? `${body.slice(0, SNIPPET_CHARS).trimEnd()}…` : body;
        return { rank: i + 1, id: h.id, score: h.score, title, snippet };
      }),
    };
  } finally {
    ann.close();
  }
}

export async function searchCommand(text: string, flags: SearchFlags): Promise<number> {
  const addr = address("ann", flags.ann);
  let res: SearchResult;
  try {
    res = await search(addr, text, flags);
  } catch (err) {
    process.stderr.write(`tandem search: ${describeError(err, addr)}\n`);
    return 1;
  }
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(res)}\n`);
    return 0;
  }
  process.stdout.write(
    `${res.hits.length} hits from ${res.collection} (${res.space}), ${res.queryTokens} query tokens, ${res.tookMs.toFixed(1)} ms\n\n`,
  );
  for (const h of res.hits) {
    process.stdout.write(
      `${String(h.rank).padStart(2)}. ${h.score.toFixed(4)}  [${h.id}] ${h.title || "(untitled)"}\n`,
    );
    if (h.snippet) process.stdout.write(`    ${h.snippet}\n`);
  }
  return 0;
}
