// A usearch graph on a thread of its own (graph-thread.ts drives it): the graph a rebuild
// builds, and the one a snapshot writes. usearch's `add`, `load` and `save` are synchronous
// native calls, seconds to minutes long for a large collection: on the main thread they would
// hold up every search and write of the service. Plain JavaScript: a worker's entry file is
// loaded without the main thread's TypeScript loader. It only runs the operations it is sent,
// in order, and answers each with the graph's size; which points, and when, stays in
// collection.ts.
import { parentPort, workerData } from "node:worker_threads";
import { Index } from "usearch";

const { options, threads, serialFirst } = workerData;
const index = new Index(options);

/** The keys of `keys` the graph holds now. */
function present(keys) {
  if (index.size() === 0) return keys.subarray(0, 0);
  const held = index.contains(keys);
  return keys.filter((_, i) => held[i]);
}

// A key the graph holds is removed first: usearch refuses to add a key twice, and a point
// replaced since the graph was written comes back with its new vector. The first `serialFirst`
// points go in one per call: concurrent inserts into a small graph leave neighbours
// unreachable (hnsw.ts, PARALLEL_ADD_MIN_SIZE).
function upsert(keys, matrix) {
  const stale = present(keys);
  if (stale.length > 0) index.remove(stale);
  const dims = options.dimensions;
  let i = 0;
  for (; i < keys.length && index.size() < serialFirst; i++) {
    index.add(keys.subarray(i, i + 1), matrix.subarray(i * dims, (i + 1) * dims), threads);
  }
  if (i < keys.length) index.add(keys.subarray(i), matrix.subarray(i * dims), threads);
}

function load(path) {
  index.load(path);
  if (index.dimensions() !== options.dimensions) {
    throw new Error(`index file ${path} has ${index.dimensions()} dimensions, expected ${options.dimensions}`);
  }
}

parentPort.on("message", (msg) => {
  try {
    if (msg.kind === "upsert") upsert(msg.keys, msg.matrix);
    else if (msg.kind === "remove") {
      const gone = present(msg.keys);
      if (gone.length > 0) index.remove(gone);
    } else if (msg.kind === "load") load(msg.path);
    else if (msg.kind === "save") index.save(msg.path);
    else throw new Error(`unknown graph thread operation ${msg.kind}`);
    parentPort.postMessage({ ok: true, size: index.size() });
  } catch (err) {
    parentPort.postMessage({ ok: false, message: err instanceof Error ? err.message : String(err) });
  }
});
