import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { type FileHandle, open, rename } from "node:fs/promises";
import { dirname, join } from "node:path";
import { crc32 } from "node:zlib";
import { syncDir } from "./wal.js";

/**
 * Snapshot files of one collection directory:
 *
 *   index-<walFrom>.usearch   the HNSW index as of the start of WAL segment <walFrom>
 *   snapshot.json             which index file is current, and where the WAL replay starts
 *
 * Commit order (each step fsynced): index written to a temp name by a graph thread
 * (never the live graph: see Collection.snapshot) -> renamed ->
 * payload store flushed -> snapshot.json replaced by rename -> only then the
 * older index file and the WAL segments before <walFrom> are deleted. A crash
 * before the snapshot.json rename leaves the previous snapshot and all of its
 * WAL in place; after it, the new one is complete. Leftovers are removed at
 * the next start (`sweep`).
 */

export interface SnapshotManifest {
  indexFile: string;
  walFrom: number;
  takenAtMs: number;
  points: number;
  /** Size and CRC32 of the index file, checked before usearch reads it (absent in older snapshots). */
  indexBytes?: number;
  indexCrc32?: number;
}

/** What `writeIndexFile` wrote. */
export interface IndexFile {
  name: string;
  bytes: number;
  crc32: number;
}

const CRC_CHUNK = 8 * 1024 * 1024;

/** Size and CRC32 of an open file from its start, read in chunks (the event loop runs between them). */
async function sizeAndCrc32(fh: FileHandle): Promise<{ bytes: number; crc32: number }> {
  const buf = Buffer.allocUnsafe(CRC_CHUNK);
  let crc = 0;
  let bytes = 0;
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, CRC_CHUNK, bytes);
    if (bytesRead === 0) return { bytes, crc32: crc };
    crc = crc32(buf.subarray(0, bytesRead), crc);
    bytes += bytesRead;
  }
}

/**
 * Throws unless the manifest's index file has the size and CRC32 recorded when it was written.
 * usearch trusts the file it loads: a truncated or damaged one crashes the process (a
 * segmentation fault, seen with usearch 2.25.3), where a thrown error costs only a rebuild.
 */
export async function checkIndexFile(dir: string, manifest: SnapshotManifest): Promise<void> {
  if (manifest.indexBytes === undefined || manifest.indexCrc32 === undefined) return;
  const fh = await open(join(dir, manifest.indexFile), "r");
  const got = await sizeAndCrc32(fh).finally(() => fh.close());
  if (got.bytes !== manifest.indexBytes || got.crc32 !== manifest.indexCrc32) {
    throw new Error(
      `index file ${manifest.indexFile} is damaged: ${got.bytes} bytes, CRC32 ${got.crc32}; the snapshot recorded ${manifest.indexBytes} bytes, CRC32 ${manifest.indexCrc32}`,
    );
  }
}

export const MANIFEST = "snapshot.json";

export function readManifest(dir: string): SnapshotManifest | null {
  const path = join(dir, MANIFEST);
  if (!existsSync(path)) return null;
  return JSON.parse(readFileSync(path, "utf8")) as SnapshotManifest;
}

/** Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync of the directory. */
export async function writeFileAtomic(path: string, bytes: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, "w");
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await syncDir(dirname(path));
}

/**
 * Has `save` write the index file (a graph thread, or a rename of a built graph's file) under a
 * temp name, fsyncs it and renames it to its final name. Returns its name, size and CRC32.
 */
export async function writeIndexFile(
  dir: string,
  walFrom: number,
  save: (path: string) => Promise<void>,
  beforeRename: () => Promise<void> = async () => undefined,
): Promise<IndexFile> {
  const name = `index-${walFrom}.usearch`;
  const tmp = join(dir, `${name}.tmp`);
  try {
    await save(tmp);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  // One handle for the checksum pass and the fsync.
  const fh = await open(tmp, "r+");
  let written: { bytes: number; crc32: number };
  try {
    written = await sizeAndCrc32(fh);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await beforeRename();
  await rename(tmp, join(dir, name));
  await syncDir(dir);
  return { name, ...written };
}

export async function commitManifest(dir: string, manifest: SnapshotManifest): Promise<void> {
  await writeFileAtomic(join(dir, MANIFEST), JSON.stringify(manifest));
}

/**
 * Removes index files other than the current one and, with `temps` (at start, when nothing is
 * being written), the temp files a crash left behind.
 */
export function sweep(dir: string, current: SnapshotManifest | null, temps: boolean): void {
  for (const f of readdirSync(dir)) {
    const stale = (temps && f.endsWith(".tmp")) || (/^index-\d+\.usearch$/.test(f) && f !== current?.indexFile);
    if (stale) rmSync(join(dir, f), { force: true });
  }
}
