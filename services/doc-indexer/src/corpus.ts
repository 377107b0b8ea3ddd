import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import { parseCorpusLine } from "@tandem/corpus";
import type { FileRange } from "./queue.js";
import type { SubmissionValidator } from "./validate.js";

/**
 * Splits a file into ranges of `linesPerRange` non-empty lines, reading bytes
 * only (no JSON parsing): the producer can afford it for any corpus, and each
 * worker then reads just its range. `limit` > 0 stops after that many lines.
 */
export async function scanRanges(path: string, linesPerRange: number, limit: number): Promise<FileRange[]> {
  const ranges: FileRange[] = [];
  const max = limit > 0 ? limit : Number.POSITIVE_INFINITY;
  let pos = 0;
  let total = 0;
  let rangeStart = 0;
  let rangeLines = 0;
  let inLine = false;
  const flush = (end: number) => {
    if (rangeLines > 0)
      ranges.push({ path, startByte: rangeStart, endByte: end, firstLine: total - rangeLines, lines: rangeLines });
    rangeStart = end;
    rangeLines = 0;
  };
  scan: for await (const chunk of createReadStream(path)) {
    const buf = chunk as Buffer;
    for (let i = 0; i < buf.length; i++, pos++) {
      const b = buf[i] as number;
      if (b === 0x0a) {
        if (!inLine) continue;
        inLine = false;
        total++;
        rangeLines++;
        if (rangeLines === linesPerRange || total >= max) flush(pos + 1);
        if (total >= max) break scan;
      } else if (!inLine && b !== 0x20 && b !== 0x0d && b !== 0x09) {
        inLine = true;
      }
    }
  }
  if (inLine && total < max) {
    // Last line without a trailing newline.
    total++;
    rangeLines++;
  }
  flush(pos);
  return ranges;
}

/** Reads one range and validates every line into `validator` (a bad line is a rejection, not an error). */
export async function readRange(range: FileRange, validator: SubmissionValidator): Promise<void> {
  const fh = await open(range.path, "r");
  try {
    const length = range.endByte - range.startByte;
    const buf = Buffer.allocUnsafe(length);
    let read = 0;
    while (read < length) {
      const { bytesRead } = await fh.read(buf, read, length - read, range.startByte + read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
    for (const line of buf.subarray(0, read).toString("utf8").split("\n")) {
      if (line.trim().length === 0) continue;
      const parsed = parseCorpusLine(line);
      if ("error" in parsed) validator.reject(parsed.id, parsed.error);
      else validator.add(parsed.id, parsed.text, parsed.payloadJson);
    }
  } finally {
    await fh.close();
  }
}
