// `tandem rebuild` as a user runs it, against the real ANN service on a loopback port: the
// graph is rebuilt and the answer names the collection and its points; an unknown collection
// exits 1 with the server's reason.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { annConfig, startAnn } from "@tandem/ann";
import { encodeVector } from "@tandem/proto";
import { tandem } from "../../../test/support/cli.js";
import { annClient } from "../src/clients.js";

test("tandem rebuild: rebuilds a collection's graph; an unknown one exits 1 with the reason", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tandem-cli-rebuild-"));
  const ann = await startAnn(annConfig({ PORT: "0", HOST: "127.0.0.1", DATA_DIR: dir, LOG_LEVEL: "warn" }));
  const addr = `127.0.0.1:${ann.port}`;
  const client = annClient(addr, {});
  try {
    await client.createCollection({ name: "docs", space: "test/8", dims: 8 });
    const points = Array.from({ length: 500 }, (_, i) => ({
      id: `d${i}`,
      vector: encodeVector(Float32Array.from({ length: 8 }, (_, j) => Math.sin(i * 8 + j))),
      payloadJson: "",
    }));
    await client.upsert("docs", points, { pointsPerMessage: points.length });

    const ok = await tandem(["rebuild", "docs", "--json", "--ann", addr]);
    assert.equal(ok.code, 0, ok.stderr);
    const res = JSON.parse(ok.stdout) as { collection: string; points: number; tookMs: number };
    assert.equal(res.collection, "docs");
    assert.equal(res.points, 500);
    const stats = await client.stats("docs");
    assert.ok(stats.lastRebuildMs > 0, "the service swapped a rebuilt graph in");

    const text = await tandem(["rebuild", "docs", "--ann", addr]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^rebuilt the graph of docs: 500 points in \d+\.\d s\n$/);

    const missing = await tandem(["rebuild", "nope", "--ann", addr]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /tandem rebuild: .*nope/);
  } finally {
    client.close();
    await ann.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
