// The progress helper off a terminal (a pipe through `tee`, a CI log): plain lines, paced by
// PLAIN_EVERY_PCT and PLAIN_EVERY_MS, never one per update and never a terminal escape.
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import { PLAIN_EVERY_MS, startProgress } from "../src/progress.js";

function pipe(): { stream: Writable & { isTTY?: boolean }; lines: () => string[] } {
  let text = "";
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stream, lines: () => text.split("\n").filter(Boolean) };
}

test("not a terminal: a line at the start, at each 10 % step or after 5 s with news, and at the end", () => {
  const out = pipe();
  let clock = 0;
  const p = startProgress(1000, { label: "indexing", unit: "docs", stream: out.stream, now: () => clock });
  assert.equal(p.redraws, false);
  assert.deepEqual(out.lines(), ["  indexing 0/1000 docs (0%)"]);

  // 60 updates within one 10 % step and under 5 s: nothing more.
  for (let v = 1; v <= 60; v++) {
    clock += 50;
    p.update(v, "running");
  }
  assert.equal(out.lines().length, 1);

  // Crossing 10 %: a line, with the pace since the first update as the eta.
  clock += 100;
  p.update(100, "running");
  assert.equal(out.lines().length, 2);
  assert.match(out.lines()[1] ?? "", /^ {2}indexing 100\/1000 docs \(10%\) \| running \| eta \d+s$/);

  // 5 s later with the same state: silence; with news: a line.
  clock += PLAIN_EVERY_MS;
  p.update(100, "running");
  assert.equal(out.lines().length, 2);
  p.update(120, "running");
  assert.equal(out.lines().length, 3);

  // Jumps print once per update, not once per step crossed.
  p.update(990, "running");
  assert.equal(out.lines().length, 4);
  p.update(1000, "completed");
  p.stop();
  const lines = out.lines();
  assert.equal(lines.at(-1), "  indexing 1000/1000 docs (100%) | completed");
  assert.equal(lines.length, 5);
  assert.ok(
    lines.every((l) => !l.includes("\u001b")),
    "no terminal escapes",
  );
});

test("not a terminal: stop prints the last state once, and nothing when it was already printed", () => {
  const out = pipe();
  let clock = 0;
  const p = startProgress(10, { label: "rebuilding", unit: "points", stream: out.stream, now: () => clock });
  clock += 1000;
  p.update(3);
  p.stop();
  p.stop();
  assert.deepEqual(out.lines(), ["  rebuilding 0/10 points (0%)", "  rebuilding 3/10 points (30%)"]);
});
