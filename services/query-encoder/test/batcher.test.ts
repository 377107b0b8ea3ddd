import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Tokenized } from "@tandem/model-runtime";
import { CancelledError, DeadlineExceededError, globalMeter, ResourceExhaustedError } from "@tandem/service-kit";
import { Batcher } from "../src/batcher.js";

const meter = globalMeter("test");
const tok = (n: number, tag = 0): Tokenized => ({
  ids: Array.from({ length: n }, (_, i) => tag * 1000 + i),
  truncated: false,
});
const never = new AbortController().signal;

/** A run function the test releases by hand, recording what each batch held. */
function controlledRun() {
  const batches: Tokenized[][] = [];
  const pending: Array<() => void> = [];
  const run = (items: Tokenized[]) => {
    batches.push(items);
    return new Promise<Float32Array[]>((resolve) => {
      pending.push(() => resolve(items.map((it) => new Float32Array([it.ids[0]!, it.ids.length]))));
    });
  };
  const releaseNext = async () => {
    while (pending.length === 0) await new Promise((r) => setImmediate(r));
    pending.shift()!();
    // The batcher forms its next batch on a later turn of the event loop.
    await new Promise((r) => setTimeout(r, 5));
  };
  return { run, batches, releaseNext };
}

describe("Batcher", () => {
  it("runs a lone request at once and merges requests that arrive during a run", async () => {
    const c = controlledRun();
    const b = new Batcher(c.run, { maxBatchTokens: 1000, maxBatchRequests: 8, maxQueuedRequests: 8 }, meter);
    const first = b.submit([tok(4, 1)], never, Infinity);
    assert.equal(c.batches.length, 1, "a lone request must not wait for a timer");
    const second = b.submit([tok(4, 2)], never, Infinity);
    const third = b.submit([tok(4, 3), tok(6, 4)], never, Infinity);
    await c.releaseNext();
    assert.equal(c.batches.length, 2);
    assert.equal(c.batches[1]!.length, 3, "both waiting requests form the next batch");
    await c.releaseNext();
    const [v1, v2, v3] = await Promise.all([first, second, third]);
    assert.deepEqual([...v1[0]!], [1000, 4]);
    assert.deepEqual([...v2[0]!], [2000, 4]);
    assert.deepEqual(
      v3.map((v) => v[0]),
      [3000, 4000],
      "each caller gets its own vectors in order",
    );
  });

  it("stops a batch at the padded-token budget and the request cap", async () => {
    const c = controlledRun();
    const b = new Batcher(c.run, { maxBatchTokens: 40, maxBatchRequests: 2, maxQueuedRequests: 16 }, meter);
    const all = [b.submit([tok(2, 0)], never, Infinity)];
    // Queued behind the first run: 3 rows of 10 = 30 padded tokens, then a 4th row of 20 would make 4x20 = 80 > 40.
    all.push(b.submit([tok(10, 1)], never, Infinity));
    all.push(b.submit([tok(10, 2), tok(10, 3)], never, Infinity));
    all.push(b.submit([tok(20, 4)], never, Infinity));
    all.push(b.submit([tok(5, 5)], never, Infinity));
    await c.releaseNext();
    assert.equal(c.batches[1]!.length, 3, "budget 40: 3 rows x 10 fit, adding a 20-token row would not");
    await c.releaseNext();
    assert.equal(c.batches[2]!.length, 2, "request cap 2: the 20-token and 5-token requests");
    await c.releaseNext();
    await Promise.all(all);
  });

  it("lets an entry larger than the budget run alone instead of starving", async () => {
    const c = controlledRun();
    const b = new Batcher(c.run, { maxBatchTokens: 8, maxBatchRequests: 8, maxQueuedRequests: 8 }, meter);
    const p = b.submit([tok(50)], never, Infinity);
    await c.releaseNext();
    assert.equal((await p).length, 1);
  });

  it("drops cancelled and expired requests before inference", async () => {
    const c = controlledRun();
    const b = new Batcher(c.run, { maxBatchTokens: 1000, maxBatchRequests: 8, maxQueuedRequests: 8 }, meter);
    const running = b.submit([tok(3, 1)], never, Infinity);
    const ac = new AbortController();
    const cancelled = b.submit([tok(3, 2)], ac.signal, Infinity);
    const expired = assert.rejects(b.submit([tok(3, 3)], never, Date.now() + 5), DeadlineExceededError);
    const kept = b.submit([tok(3, 4)], never, Infinity);
    ac.abort();
    await assert.rejects(cancelled, CancelledError);
    assert.equal(b.queued, 2, "a cancelled request frees its queue slot at once");
    await new Promise((r) => setTimeout(r, 15));
    await c.releaseNext();
    await expired;
    await c.releaseNext();
    await Promise.all([running, kept]);
    const seen = c.batches.flat().map((t) => t.ids[0]);
    assert.deepEqual(seen, [1000, 4000], "neither dropped request reached the model");
  });

  it("answers RESOURCE_EXHAUSTED past the queue bound and keeps serving", async () => {
    const c = controlledRun();
    const b = new Batcher(c.run, { maxBatchTokens: 1000, maxBatchRequests: 8, maxQueuedRequests: 2 }, meter);
    const ok = [
      b.submit([tok(2)], never, Infinity),
      b.submit([tok(2)], never, Infinity),
      b.submit([tok(2)], never, Infinity),
    ];
    await assert.rejects(b.submit([tok(2)], never, Infinity), ResourceExhaustedError);
    await c.releaseNext();
    await c.releaseNext();
    assert.equal((await Promise.all(ok)).length, 3);
  });

  it("passes an inference failure to every request of the batch, then goes on", async () => {
    let calls = 0;
    const b = new Batcher(
      async (items) => {
        calls++;
        if (calls === 1) throw new Error("onnxruntime failed");
        return items.map(() => new Float32Array(1));
      },
      { maxBatchTokens: 1000, maxBatchRequests: 8, maxQueuedRequests: 8 },
      meter,
    );
    await assert.rejects(b.submit([tok(2)], never, Infinity), /onnxruntime failed/);
    assert.equal((await b.submit([tok(2)], never, Infinity)).length, 1);
    await b.idle();
  });
});
