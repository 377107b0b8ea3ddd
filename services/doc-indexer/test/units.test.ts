import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { parseCorpusLine } from "@tandem/corpus";
import { formBatches, paddingWaste } from "../src/batch.js";
import { readRange, scanRanges } from "../src/corpus.js";
import { docFromStored, SubmissionValidator, storedPayload } from "../src/validate.js";

const limits = { maxTextBytes: 100, maxPayloadBytes: 100, maxIdBytes: 10 };

describe("validation", () => {
  it("rejects bad documents one by one, with a reason and position, and keeps the rest", () => {
    const v = new SubmissionValidator(limits);
    v.add("a", "fine", "");
    v.add("", "no id", "");
    v.add("b", "   ", "");
    v.add("c", "x".repeat(101), "");
    v.add("d", "ok", "{not json");
    v.add("e", "ok", "[1,2]");
    v.add("a", "again", "");
    v.add("f", "fine too", '{"lang":"en","text":"ignored"}');
    v.add("g", "y".repeat(90), '{"k":"vvvvvv"}');
    assert.deepEqual(
      v.accepted.map((d) => d.id),
      ["a", "f"],
    );
    assert.deepEqual(
      v.rejected.map((r) => [r.index, r.id]),
      [
        [1, ""],
        [2, "b"],
        [3, "c"],
        [4, "d"],
        [5, "e"],
        [6, "a"],
        [8, "g"],
      ],
    );
    assert.match(v.rejected[0]!.reason, /empty id/);
    assert.match(v.rejected[1]!.reason, /empty text/);
    assert.match(v.rejected[2]!.reason, /101 bytes, limit 100/);
    assert.match(v.rejected[3]!.reason, /not valid JSON/);
    assert.match(v.rejected[4]!.reason, /JSON object/);
    assert.match(v.rejected[5]!.reason, /duplicate id \(first at index 0\)/);
    assert.match(v.rejected[6]!.reason, /stored payload \(payload_json \+ text\) is 114 bytes, limit 100/);
    // The stored payload carries the text; read back it gives the same document.
    const f = v.accepted[1]!;
    assert.equal(f.payload, '{"lang":"en"}');
    const stored = storedPayload(f);
    assert.deepEqual(JSON.parse(stored), { lang: "en", text: "fine too" });
    assert.deepEqual(docFromStored("f", stored), f);
  });
});

describe("batching by token budget", () => {
  it("sorts by length and keeps rows x longest within the budget", () => {
    const lengths = [5, 200, 7, 180, 6, 190, 100, 8];
    const batches = formBatches(lengths, { maxBatchTokens: 400, maxBatchDocs: 64 });
    for (const b of batches) {
      assert.ok(b.indices.length * b.seqLen <= 400 || b.indices.length === 1);
      assert.equal(b.seqLen, Math.max(...b.indices.map((i) => lengths[i]!)));
    }
    assert.deepEqual(batches.flatMap((b) => b.indices).sort(), lengths.map((_, i) => i).sort());
    // Long rows go together and short rows go together: little padding.
    assert.ok(paddingWaste(batches) < 0.2, `waste ${paddingWaste(batches)}`);
    const unsorted = [{ indices: lengths.map((_, i) => i), seqLen: 200, tokens: lengths.reduce((a, b) => a + b) }];
    assert.ok(paddingWaste(unsorted) > 0.5);
  });

  it("runs a row longer than the budget alone and caps rows per batch", () => {
    const batches = formBatches([1000, 3, 3, 3], { maxBatchTokens: 100, maxBatchDocs: 2 });
    assert.deepEqual(
      batches.map((b) => b.indices.length),
      [1, 2, 1],
    );
  });
});

describe("corpus files", () => {
  const dir = mkdtempSync(join(tmpdir(), "indexer-units-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("parses BEIR and plain lines", () => {
    const beir = parseCorpusLine('{"_id": "7", "title": "T", "text": "body", "metadata": {}}');
    assert.deepEqual(beir, { id: "7", text: "T body", payloadJson: '{"title":"T"}' });
    const plain = parseCorpusLine('{"id": 3, "text": "x", "payload": {"k": 1}}');
    assert.deepEqual(plain, { id: "3", text: "x", payloadJson: '{"k":1}' });
    assert.ok("error" in parseCorpusLine("{oops"));
  });

  it("cuts a file into line ranges and reads them back", async () => {
    const path = join(dir, "c.jsonl");
    const lines = Array.from({ length: 11 }, (_, i) => JSON.stringify({ _id: `d${i}`, text: `text ${i}` }));
    lines[4] = "{broken";
    writeFileSync(path, `${lines.slice(0, 6).join("\n")}\n\n${lines.slice(6).join("\n")}`); // blank line, no final newline
    const ranges = await scanRanges(path, 4, 0);
    assert.deepEqual(
      ranges.map((r) => [r.firstLine, r.lines]),
      [
        [0, 4],
        [4, 4],
        [8, 3],
      ],
    );
    const ids: string[] = [];
    const rejected: number[] = [];
    for (const r of ranges) {
      const v = new SubmissionValidator({ maxTextBytes: 1000, maxPayloadBytes: 1000, maxIdBytes: 100 }, r.firstLine);
      await readRange(r, v);
      ids.push(...v.accepted.map((d) => d.id));
      rejected.push(...v.rejected.map((x) => x.index));
    }
    assert.deepEqual(ids, ["d0", "d1", "d2", "d3", "d5", "d6", "d7", "d8", "d9", "d10"]);
    assert.deepEqual(rejected, [4]);
    const limited = await scanRanges(path, 4, 5);
    assert.deepEqual(
      limited.map((r) => [r.firstLine, r.lines]),
      [
        [0, 4],
        [4, 1],
      ],
    );
  });
});
