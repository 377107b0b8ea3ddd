// The backend conformance suite (conformance.ts) on the embedded backend: Collection behind
// EmbeddedBackend, each collection in a temp directory of its own with real WAL, LMDB and
// snapshot files, reopened from them.
import { join } from "node:path";
import { createLogger } from "@tandem/service-kit";
import type { CollectionBackend } from "../src/backend.js";
import { EmbeddedBackend } from "../src/embedded.js";
import { type BackendHarness, backendConformance } from "./conformance.js";
import { tempDir } from "./support.js";

const factory = EmbeddedBackend.factory({
  log: createLogger("ann-conformance-test", "warn"),
  maxPoints: 1_000_000,
  filterMaxStringBytes: 256,
  filterExactMax: 16,
  filterMaxOverfetch: 20_000,
  threads: 2,
  snapshotWalBytes: 0,
  faultSnapshotStallMs: 0,
  rebuildChurn: 0,
  rebuildMinPoints: 1,
  searchBatchMax: 64,
});

backendConformance("embedded (usearch + WAL + LMDB)", async (): Promise<BackendHarness> => {
  const tmp = tempDir("conformance");
  const open = new Map<CollectionBackend, string>();
  return {
    async create(meta) {
      const dir = join(tmp.dir, meta.name);
      await factory.initialise(dir, meta);
      const b = await factory.open(dir);
      open.set(b, dir);
      return b;
    },
    async reopen(b, snapshotFirst) {
      const dir = open.get(b);
      if (dir === undefined) throw new Error("reopen of a backend this harness did not open");
      open.delete(b);
      await b.close(snapshotFirst);
      const again = await factory.open(dir);
      open.set(again, dir);
      return again;
    },
    async dispose() {
      for (const b of open.keys()) await b.close(false);
      tmp.remove();
    },
  };
});
