import type { DocumentRejection } from "@tandem/proto";

/** A document that passed validation; `payload` is a JSON object text ("" for none). */
export interface Doc {
  id: string;
  text: string;
  payload: string;
}

export interface DocLimits {
  maxTextBytes: number;
  maxPayloadBytes: number;
  maxIdBytes: number;
}

export type Checked = { ok: true; doc: Doc } | { ok: false; reason: string };

/**
 * Checks one document. Every failure is a reason a person can act on; the
 * caller records it against the document and lets the others proceed.
 */
export function checkDocument(id: string, text: string, payloadJson: string, limits: DocLimits): Checked {
  if (id.length === 0) return { ok: false, reason: "empty id" };
  const idBytes = Buffer.byteLength(id, "utf8");
  if (idBytes > limits.maxIdBytes) return { ok: false, reason: `id is ${idBytes} bytes, limit ${limits.maxIdBytes}` };
  if (text.trim().length === 0) return { ok: false, reason: "empty text" };
  const textBytes = Buffer.byteLength(text, "utf8");
  if (textBytes > limits.maxTextBytes) {
    return { ok: false, reason: `text is ${textBytes} bytes, limit ${limits.maxTextBytes}` };
  }
  let payload = "";
  if (payloadJson.trim().length > 0) {
    const payloadBytes = Buffer.byteLength(payloadJson, "utf8");
    if (payloadBytes > limits.maxPayloadBytes) {
      return { ok: false, reason: `payload_json is ${payloadBytes} bytes, limit ${limits.maxPayloadBytes}` };
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(payloadJson);
    } catch (err) {
      return { ok: false, reason: `payload_json is not valid JSON: ${(err as Error).message}` };
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      return { ok: false, reason: "payload_json must be a JSON object" };
    }
    payload = canonicalPayload(parsed as Record<string, unknown>);
  }
  const doc = { id, text, payload };
  // What the ANN service stores is the payload with the text in it; its limit applies to that.
  const storedBytes = Buffer.byteLength(storedPayload(doc), "utf8");
  if (storedBytes > limits.maxPayloadBytes) {
    return {
      ok: false,
      reason: `stored payload (payload_json + text) is ${storedBytes} bytes, limit ${limits.maxPayloadBytes}`,
    };
  }
  return { ok: true, doc };
}

/**
 * Validates a submission in order: bad documents become rejections (with
 * their position), duplicates of an id already accepted are rejected too (two
 * versions of one id in one submission would race inside the ANN upsert).
 */
export class SubmissionValidator {
  readonly accepted: Doc[] = [];
  readonly rejected: DocumentRejection[] = [];
  private readonly seen = new Map<string, number>();
  private index: number;

  /** `startIndex`: position of the first document in the whole submission (file chunks start mid-file). */
  constructor(
    private readonly limits: DocLimits,
    startIndex = 0,
  ) {
    this.index = startIndex;
  }

  add(id: string, text: string, payloadJson: string): void {
    const index = this.index++;
    const first = this.seen.get(id);
    if (first !== undefined) {
      this.rejected.push({ id, index, reason: `duplicate id (first at index ${first})` });
      return;
    }
    const checked = checkDocument(id, text, payloadJson, this.limits);
    if (!checked.ok) {
      this.rejected.push({ id, index, reason: checked.reason });
      return;
    }
    this.seen.set(id, index);
    this.accepted.push(checked.doc);
  }

  /** Counts a document that could not even be read (e.g. a bad JSONL line). */
  reject(id: string, reason: string): void {
    this.rejected.push({ id, index: this.index++, reason });
  }

  get count(): number {
    return this.accepted.length + this.rejected.length;
  }
}

/** The payload stored with the vector: the user's object plus the text, which reindexing re-embeds from. */
export function storedPayload(doc: Doc): string {
  const fields = doc.payload ? (JSON.parse(doc.payload) as Record<string, unknown>) : {};
  return JSON.stringify({ ...fields, text: doc.text });
}

/**
 * The payload as stored in jobs and fingerprinted: compact JSON without the
 * "text" key (the stored payload's "text" is always the document text). The
 * same function applied to a stored payload gives back the same string, which
 * lets a reindex compare what it copied with what was submitted.
 */
export function canonicalPayload(fields: Record<string, unknown>): string {
  const { text: _text, ...rest } = fields;
  return Object.keys(rest).length > 0 ? JSON.stringify(rest) : "";
}

/** A document read back from a stored payload (reindex backfill); null when it has no text. */
export function docFromStored(id: string, payloadJson: string): Doc | null {
  let fields: unknown;
  try {
    fields = JSON.parse(payloadJson || "{}");
  } catch {
    return null;
  }
  if (typeof fields !== "object" || fields === null || Array.isArray(fields)) return null;
  const text = (fields as Record<string, unknown>).text;
  if (typeof text !== "string" || text.length === 0) return null;
  return { id, text, payload: canonicalPayload(fields as Record<string, unknown>) };
}
