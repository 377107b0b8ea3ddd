import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import type { Target } from "./ann-gateway.js";
import type { Keys } from "./queue.js";
import type { Doc } from "./validate.js";

/**
 * What is stored for a document in one collection generation, as
 * "model:text:payload" digests. A document whose text and teacher are
 * unchanged is never re-embedded; one whose payload alone changed gets its
 * stored vector re-written with the new payload. Fingerprints are written only
 * after the ANN service acknowledged the vectors, so a crash between the two
 * makes a retry re-embed (and replace, upsert is by id) rather than skip.
 */
export interface Fingerprint {
  model: string;
  text: string;
  payload: string;
}

function digest(s: string): string {
  return createHash("sha256").update(s).digest("base64url").slice(0, 22);
}

export function fingerprint(doc: Doc, modelSha256: string): Fingerprint {
  return { model: modelSha256.slice(0, 16), text: digest(doc.text), payload: digest(doc.payload) };
}

function encode(f: Fingerprint): string {
  return `${f.model}:${f.text}:${f.payload}`;
}

function decode(s: string): Fingerprint | null {
  const [model, text, payload] = s.split(":");
  return model && text && payload !== undefined ? { model, text, payload } : null;
}

export interface Classified {
  /** Indices to embed (new, or text or teacher changed). */
  embed: number[];
  /** Indices whose text is unchanged but payload changed: re-write the stored vector. */
  payloadOnly: number[];
  /** Indices already stored exactly as submitted. */
  unchanged: number[];
}

export class ContentIndex {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  async classify(target: Target, docs: readonly Doc[], modelSha256: string): Promise<Classified> {
    const out: Classified = { embed: [], payloadOnly: [], unchanged: [] };
    if (docs.length === 0) return out;
    const stored = await this.redis.hmget(this.keys.content(target.name, target.createdAtMs), ...docs.map((d) => d.id));
    docs.forEach((doc, i) => {
      const prev = stored[i] ? decode(stored[i] as string) : null;
      const now = fingerprint(doc, modelSha256);
      if (!prev || prev.model !== now.model || prev.text !== now.text) out.embed.push(i);
      else if (prev.payload !== now.payload) out.payloadOnly.push(i);
      else out.unchanged.push(i);
    });
    return out;
  }

  async commit(target: Target, docs: readonly Doc[], modelSha256: string): Promise<void> {
    if (docs.length === 0) return;
    const fields: string[] = [];
    for (const d of docs) fields.push(d.id, encode(fingerprint(d, modelSha256)));
    await this.redis.hset(this.keys.content(target.name, target.createdAtMs), ...fields);
  }

  /** Every id recorded for a generation, in pages (reindex backfill enumerates the stored documents). */
  async *ids(target: Target, pageSize: number): AsyncIterable<string[]> {
    let cursor = "0";
    do {
      const [next, flat] = await this.redis.hscan(
        this.keys.content(target.name, target.createdAtMs),
        cursor,
        "COUNT",
        pageSize,
      );
      cursor = next;
      const ids: string[] = [];
      for (let i = 0; i < flat.length; i += 2) ids.push(flat[i] as string);
      if (ids.length > 0) yield ids;
    } while (cursor !== "0");
  }

  async size(target: Target): Promise<number> {
    return this.redis.hlen(this.keys.content(target.name, target.createdAtMs));
  }

  /** Fingerprints of `ids` in a generation (null where absent). */
  async get(target: Target, ids: readonly string[]): Promise<(Fingerprint | null)[]> {
    if (ids.length === 0) return [];
    const raw = await this.redis.hmget(this.keys.content(target.name, target.createdAtMs), ...ids);
    return raw.map((s) => (s ? decode(s) : null));
  }
}
