/**
 * JSONL corpora (the indexer's workers read them from disk, the CLI streams them). One object per line, either BEIR
 * (`{"_id", "title", "text", "metadata"}`) or plain (`{"id", "text",
 * "payload"?}`). A BEIR document is embedded as "title text" (the
 * sentence-transformers BEIR convention) and keeps its title in the payload.
 */
export interface CorpusLine {
  id: string;
  text: string;
  payloadJson: string;
}

export function parseCorpusLine(line: string): CorpusLine | { error: string; id: string } {
  let obj: unknown;
  try {
    obj = JSON.parse(line);
  } catch (err) {
    return { id: "", error: `line is not valid JSON: ${(err as Error).message}` };
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj))
    return { id: "", error: "line is not a JSON object" };
  const o = obj as Record<string, unknown>;
  const rawId = o._id ?? o.id;
  const id = typeof rawId === "string" ? rawId : typeof rawId === "number" ? String(rawId) : "";
  if (typeof o.text !== "string") return { id, error: 'no string field "text"' };
  const title = typeof o.title === "string" ? o.title.trim() : "";
  const text = title ? `${title} ${o.text}` : o.text;
  const payload: Record<string, unknown> = {};
  if (typeof o.payload === "object" && o.payload !== null && !Array.isArray(o.payload))
    Object.assign(payload, o.payload);
  if (title) payload.title = title;
  if (typeof o.metadata === "object" && o.metadata !== null && Object.keys(o.metadata).length > 0) {
    payload.metadata = o.metadata;
  }
  return { id, text, payloadJson: Object.keys(payload).length ? JSON.stringify(payload) : "" };
}
