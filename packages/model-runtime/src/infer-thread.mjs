// The inference thread of one model (see infer.ts, OrtBackend). onnxruntime-node's
// `session.run` computes on the calling thread, so a teacher batch of seconds run on
// the main thread would hold up every timer and socket of the service for that long
// (BullMQ lock renewal, gRPC acks, health checks). Here it holds up only this thread.
// Plain JavaScript: a worker's entry file is loaded without the main thread's TypeScript
// loader. It only creates the session it is given options for and runs the batches it
// is sent; packing the batch and every check stay in infer.ts.
import { parentPort, workerData } from "node:worker_threads";
import * as ort from "onnxruntime-node";

const { onnxPath, options } = workerData;

let session;
try {
  session = await ort.InferenceSession.create(onnxPath, options);
  parentPort.postMessage({ kind: "ready", inputNames: session.inputNames, outputNames: session.outputNames });
} catch (err) {
  parentPort.postMessage({ kind: "failed", message: err instanceof Error ? err.message : String(err) });
}

// Runs never overlap: the native run is synchronous on this thread, so a second message waits for the first.
parentPort.on("message", async (msg) => {
  if (msg.kind === "release") {
    await session?.release();
    parentPort.postMessage({ kind: "released" });
    return;
  }
  try {
    const feeds = {};
    for (const [name, data] of Object.entries(msg.feeds)) feeds[name] = new ort.Tensor("int64", data, msg.dims);
    const out = await session.run(feeds, [msg.output]);
    const tensor = out[msg.output];
    // A copy the thread owns, so it can be moved to the main thread without a second copy.
    const data = new Float32Array(tensor.data);
    const dims = tensor.dims;
    for (const t of Object.values(out)) t.dispose();
    parentPort.postMessage({ kind: "result", id: msg.id, data, dims }, [data.buffer]);
  } catch (err) {
    parentPort.postMessage({ kind: "error", id: msg.id, message: err instanceof Error ? err.message : String(err) });
  }
});
