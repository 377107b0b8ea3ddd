import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
} from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { join } from "node:path";
import { crc32 } from "node:zlib";

/**
 * Append-only write-ahead log, split into numbered segment files
 * (`wal/0000000000000001.wal`, ...). A snapshot rotates to a new segment and,
 * once it is committed, deletes the segments it covers.
 *
 * Frame: u32 LE body length | u32 LE CRC32 of the body | body. A crash can
 * leave a partly written last frame; replay detects it (short read or CRC
 * mismatch), stops there and truncates the file, so nothing is appended after
 * garbage. A write is acknowledged only after `append` resolved, i.e. after
 * fdatasync.
 */

const FRAME_HEADER = 8;
const SEGMENT_DIGITS = 16;

export interface ReplayResult {
  records: number;
  /** Bytes dropped at the end of the log (a torn or corrupt record and anything after it). */
  droppedBytes: number;
  lastSegment: number;
}

export class Wal {
  private fh: FileHandle | null = null;
  private offset = 0;
  private _bytes = 0;
  private _records = 0;

  private constructor(
    private readonly dir: string,
    private segment: number,
  ) {}

  /** Segment numbers present in `dir`, ascending. */
  static segments(dir: string): number[] {
    mkdirSync(dir, { recursive: true });
    return readdirSync(dir)
      .filter((f) => /^\d+\.wal$/.test(f))
      .map((f) => Number.parseInt(f, 10))
      .sort((a, b) => a - b);
  }

  static path(dir: string, segment: number): string {
    return join(dir, `${String(segment).padStart(SEGMENT_DIGITS, "0")}.wal`);
  }

  /**
   * Feeds every intact record of segments >= `from` to `onRecord`, in order.
   * The first bad frame ends the log: it and everything after it (in that
   * segment and any later one) is removed, since no write after it can have
   * been acknowledged (appends are sequential and each waits for the last).
   */
  static replay(dir: string, from: number, onRecord: (body: Buffer) => void): ReplayResult {
    let records = 0;
    let droppedBytes = 0;
    let lastSegment = from - 1;
    let broken = false;
    for (const seg of Wal.segments(dir)) {
      if (seg < from) continue;
      const path = Wal.path(dir, seg);
      if (broken) {
        droppedBytes += statSync(path).size;
        rmSync(path);
        continue;
      }
      lastSegment = seg;
      const buf = readFileSync(path);
      let off = 0;
      while (off < buf.length) {
        if (buf.length - off < FRAME_HEADER) break;
        const len = buf.readUInt32LE(off);
        const crc = buf.readUInt32LE(off + 4);
        if (buf.length - off - FRAME_HEADER < len) break;
        const body = buf.subarray(off + FRAME_HEADER, off + FRAME_HEADER + len);
        if (crc32(body) !== crc) break;
        onRecord(body);
        records++;
        off += FRAME_HEADER + len;
      }
      if (off < buf.length) {
        broken = true;
        droppedBytes += buf.length - off;
        truncateSync(path, off);
        const fd = openSync(path, "r+");
        fsyncSync(fd);
        closeSync(fd);
      }
    }
    return { records, droppedBytes, lastSegment };
  }

  /** Opens a fresh segment after `lastSegment` for appends. */
  static async create(dir: string, lastSegment: number): Promise<Wal> {
    const wal = new Wal(dir, lastSegment);
    await wal.openSegment(lastSegment + 1);
    return wal;
  }

  get currentSegment(): number {
    return this.segment;
  }
  /** Bytes and records appended since the last rotation (what the next replay would read). */
  get bytes(): number {
    return this._bytes;
  }
  get records(): number {
    return this._records;
  }

  /** Carries the counters over when records of older segments still count (after a restart). */
  addReplayed(bytes: number, records: number): void {
    this._bytes += bytes;
    this._records += records;
  }

  /** Appends one record and fdatasyncs. The caller serialises appends. */
  async append(body: Uint8Array): Promise<void> {
    const fh = this.fh;
    if (!fh) throw new Error("WAL is closed");
    const frame = Buffer.allocUnsafe(FRAME_HEADER + body.length);
    frame.writeUInt32LE(body.length, 0);
    frame.writeUInt32LE(crc32(body), 4);
    frame.set(body, FRAME_HEADER);
    const at = this.offset;
    try {
      let written = 0;
      while (written < frame.length) {
        const { bytesWritten } = await fh.write(frame, written, frame.length - written, at + written);
        written += bytesWritten;
      }
      await fh.datasync();
    } catch (err) {
      // Leave no partial frame behind for the next append to follow.
      await fh.truncate(at).catch(() => undefined);
      throw err;
    }
    this.offset = at + frame.length;
    this._bytes += frame.length;
    this._records++;
  }

  /** Closes the current segment and starts the next; returns the new segment's number. */
  async rotate(): Promise<number> {
    await this.openSegment(this.segment + 1);
    this._bytes = 0;
    this._records = 0;
    return this.segment;
  }

  /** Deletes segments older than `segment` (covered by a committed snapshot). */
  removeBefore(segment: number): void {
    for (const seg of Wal.segments(this.dir)) if (seg < segment) rmSync(Wal.path(this.dir, seg), { force: true });
  }

  async close(): Promise<void> {
    await this.fh?.close();
    this.fh = null;
  }

  private async openSegment(segment: number): Promise<void> {
    const next = await open(Wal.path(this.dir, segment), "w");
    await next.sync();
    await syncDir(this.dir);
    await this.fh?.close();
    this.fh = next;
    this.segment = segment;
    this.offset = 0;
  }
}

/** fsync a directory so a created, renamed or deleted entry in it survives a crash. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

// ---- Record codec --------------------------------------------------------
// Records carry the internal key chosen when the write was accepted, so a
// replay rebuilds exactly the same key mapping (replays are blind,
// last-writer-wins writes and can be applied to a store that is already
// ahead of the snapshot without changing the outcome).

export enum RecordType {
  Upsert = 1,
  Delete = 2,
}

export interface WalPoint {
  key: number;
  id: string;
  payload: string;
  /** Packed little-endian float32 (dims * 4 bytes). */
  vector: Uint8Array;
}

export type WalRecord =
  | { type: RecordType.Upsert; points: WalPoint[] }
  | { type: RecordType.Delete; points: Array<{ key: number; id: string }> };

export function encodeUpsert(points: WalPoint[]): Buffer {
  let size = 5;
  const ids = points.map((p) => Buffer.from(p.id, "utf8"));
  const payloads = points.map((p) => Buffer.from(p.payload, "utf8"));
  points.forEach((p, i) => {
    size += 4 + 2 + ids[i]!.length + 4 + payloads[i]!.length + p.vector.length;
  });
  const buf = Buffer.allocUnsafe(size);
  buf.writeUInt8(RecordType.Upsert, 0);
  buf.writeUInt32LE(points.length, 1);
  let off = 5;
  points.forEach((p, i) => {
    off = buf.writeUInt32LE(p.key, off);
    off = buf.writeUInt16LE(ids[i]!.length, off);
    off += ids[i]!.copy(buf, off);
    off = buf.writeUInt32LE(payloads[i]!.length, off);
    off += payloads[i]!.copy(buf, off);
    buf.set(p.vector, off);
    off += p.vector.length;
  });
  return buf;
}

export function encodeDelete(points: Array<{ key: number; id: string }>): Buffer {
  const ids = points.map((p) => Buffer.from(p.id, "utf8"));
  const buf = Buffer.allocUnsafe(5 + ids.reduce((s, id) => s + 6 + id.length, 0));
  buf.writeUInt8(RecordType.Delete, 0);
  buf.writeUInt32LE(points.length, 1);
  let off = 5;
  points.forEach((p, i) => {
    off = buf.writeUInt32LE(p.key, off);
    off = buf.writeUInt16LE(ids[i]!.length, off);
    off += ids[i]!.copy(buf, off);
  });
  return buf;
}

/** Decodes a record whose CRC already matched; throws on a structurally invalid body. */
export function decodeRecord(body: Buffer, dims: number): WalRecord {
  const type = body.readUInt8(0);
  const n = body.readUInt32LE(1);
  let off = 5;
  const readId = () => {
    const key = body.readUInt32LE(off);
    const len = body.readUInt16LE(off + 4);
    const id = body.toString("utf8", off + 6, off + 6 + len);
    off += 6 + len;
    return { key, id };
  };
  if (type === RecordType.Delete) {
    const points = Array.from({ length: n }, readId);
    return { type, points };
  }
  if (type !== RecordType.Upsert) throw new Error(`unknown WAL record type ${type}`);
  const points: WalPoint[] = [];
  for (let i = 0; i < n; i++) {
    const { key, id } = readId();
    const plen = body.readUInt32LE(off);
    const payload = body.toString("utf8", off + 4, off + 4 + plen);
    off += 4 + plen;
    if (off + dims * 4 > body.length) throw new Error("WAL upsert record shorter than its vectors");
    const vector = body.subarray(off, off + dims * 4);
    off += dims * 4;
    points.push({ key, id, payload, vector });
  }
  return { type, points };
}
