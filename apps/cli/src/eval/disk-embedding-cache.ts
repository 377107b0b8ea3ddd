import { createHash } from "node:crypto";
import { closeSync, existsSync, fstatSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { EmbeddingModel } from "@tandem/model-runtime";

/**
 * Document embeddings on disk, keyed by (bundle sha256, text sha256): a
 * teacher on this CPU embeds a few documents per second, so a corpus is
 * embedded once and every later eval (any slice, any query tower) reuses it.
 *
 * One append-only file per bundle and embedding settings; each record is
 * 32 bytes of sha256(text) followed by dims float32 (little-endian). A run
 * killed mid-write leaves at most a partial last record, which is cut off on
 * the next open. Records are only ever appended, so two evals sharing a file
 * at worst embed the same text twice.
 */
export class DiskEmbeddingCache {
  private readonly vectors = new Map<string, Float32Array>();
  private readonly recordBytes: number;

  private constructor(
    readonly path: string,
    readonly dims: number,
  ) {
    this.recordBytes = 32 + dims * 4;
  }

  /** The cache file for `model`'s document side. */
  static open(dir: string, model: EmbeddingModel): DiskEmbeddingCache {
    const info = model.info;
    // The ONNX sha256 names the weights; the settings that change a vector for
    // the same weights (prefix, truncation, pooling, normalisation, the dense
    // projection file) are folded in so a rebuilt bundle never reads stale vectors.
    const settings = createHash("sha256")
      .update(
        JSON.stringify([
          info.documentPrefix,
          info.maxTokens,
          info.pooling,
          info.normalize,
          info.dims,
          denseHash(model),
        ]),
      )
      .digest("hex")
      .slice(0, 12);
    mkdirSync(dir, { recursive: true });
    return DiskEmbeddingCache.at(join(dir, `${info.bundleSha256}-${settings}-document.f32`), info.dims);
  }

  /** The cache in one file of `dims`-wide vectors. */
  static at(path: string, dims: number): DiskEmbeddingCache {
    const cache = new DiskEmbeddingCache(path, dims);
    cache.load();
    return cache;
  }

  private load(): void {
    if (!existsSync(this.path)) return;
    const buf = readFileSync(this.path);
    const whole = Math.floor(buf.length / this.recordBytes) * this.recordBytes;
    for (let off = 0; off < whole; off += this.recordBytes) {
      const key = buf.toString("hex", off, off + 32);
      // Copy out: the record may not be 4-byte aligned within the file buffer.
      const v = new Float32Array(this.dims);
      for (let i = 0; i < this.dims; i++) v[i] = buf.readFloatLE(off + 32 + i * 4);
      this.vectors.set(key, v);
    }
    if (whole !== buf.length) {
      const fd = openSync(this.path, "r+");
      try {
        ftruncateSync(fd, whole);
      } finally {
        closeSync(fd);
      }
    }
  }

  get size(): number {
    return this.vectors.size;
  }

  static key(text: string): string {
    return createHash("sha256").update(text, "utf8").digest("hex");
  }

  get(text: string): Float32Array | undefined {
    return this.vectors.get(DiskEmbeddingCache.key(text));
  }

  /** Appends vectors (one write per call, so a crash loses at most this batch). */
  put(entries: ReadonlyArray<{ text: string; vector: Float32Array }>): void {
    const fresh = entries.filter((e) => !this.vectors.has(DiskEmbeddingCache.key(e.text)));
    if (fresh.length === 0) return;
    const buf = Buffer.allocUnsafe(fresh.length * this.recordBytes);
    fresh.forEach((e, r) => {
      if (e.vector.length !== this.dims) throw new Error(`vector of ${e.vector.length} dims, cache holds ${this.dims}`);
      const off = r * this.recordBytes;
      Buffer.from(DiskEmbeddingCache.key(e.text), "hex").copy(buf, off);
      for (let i = 0; i < this.dims; i++) buf.writeFloatLE(e.vector[i] as number, off + 32 + i * 4);
    });
    const fd = openSync(this.path, "a");
    try {
      // A partial record left by a killed run would misalign everything after it.
      if (fstatSync(fd).size % this.recordBytes !== 0) throw new Error(`${this.path} is misaligned; delete it`);
      writeSync(fd, buf);
    } finally {
      closeSync(fd);
    }
    for (const e of fresh) this.vectors.set(DiskEmbeddingCache.key(e.text), e.vector);
  }
}

function denseHash(model: EmbeddingModel): string {
  const dense = model.bundle.manifest.dense;
  if (!dense) return "";
  return createHash("sha256")
    .update(readFileSync(join(model.bundle.dir, dense.file)))
    .digest("hex");
}
