// The graph-building thread of one index rebuild (see rebuild.ts). usearch's `add` is a
// synchronous native call, minutes long for a large collection: on the main thread it would
// hold up every search and write of the service. Plain JavaScript: a worker's entry file is
// loaded without the main thread's TypeScript loader. It only inserts the rows it is sent, by
// the rule it is given, and writes the graph to a file; which points, and the swap, stay in
// collection.ts.
import { parentPort, workerData } from "node:worker_threads";
import { Index } from "usearch";

const { options, threads, serialFirst, path } = workerData;
const index = new Index(options);

// The first `serialFirst` points go in one per call: concurrent inserts into a small graph
// leave neighbours unreachable (hnsw.ts, PARALLEL_ADD_MIN_SIZE).
function add(keys, matrix) {
  const dims = options.dimensions;
  let i = 0;
  for (; i < keys.length && index.size() < serialFirst; i++) {
    index.add(keys.subarray(i, i + 1), matrix.subarray(i * dims, (i + 1) * dims), threads);
  }
  if (i < keys.length) index.add(keys.subarray(i), matrix.subarray(i * dims), threads);
}

parentPort.on("message", (msg) => {
  try {
    if (msg.kind === "add") {
      add(msg.keys, msg.matrix);
      parentPort.postMessage({ kind: "added", rows: msg.keys.length });
    } else if (msg.kind === "save") {
      index.save(path);
      parentPort.postMessage({ kind: "saved" });
    }
  } catch (err) {
    parentPort.postMessage({ kind: "failed", message: err instanceof Error ? err.message : String(err) });
  }
});
