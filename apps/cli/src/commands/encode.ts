import { address } from "../addresses.js";
import { describeError, encoderClient } from "../clients.js";

export interface EncodeFlags {
  document?: boolean;
  json?: boolean;
  encoder?: string;
}

export async function encodeCommand(texts: string[], flags: EncodeFlags): Promise<number> {
  const addr = address("encoder", flags.encoder);
  const client = encoderClient(addr);
  try {
    const t0 = performance.now();
    const res = await client.encode(texts, flags.document ? "document" : "query", { deadlineMs: 30_000 });
    const tookMs = performance.now() - t0;
    const rows = res.vectors.map((vector, i) => ({
      text: texts[i] as string,
      vector,
      tokens: res.tokens[i] as number,
      truncated: res.truncated[i] as boolean,
    }));
    if (flags.json) {
      const out = {
        modelId: res.modelId,
        space: res.space,
        dims: res.dims,
        tookMs,
        embeddings: rows.map((r) => ({ ...r, vector: Array.from(r.vector) })),
      };
      process.stdout.write(`${JSON.stringify(out)}\n`);
      return 0;
    }
    process.stdout.write(`${res.modelId} -> ${res.space} (${res.dims}-d), ${tookMs.toFixed(1)} ms\n`);
    for (const r of rows) {
      let norm = 0;
      for (const x of r.vector) norm += x * x;
      const head = Array.from(r.vector.subarray(0, 6), (x) => x.toFixed(4)).join(", ");
      process.stdout.write(
        `${JSON.stringify(r.text)}: ${r.tokens} tokens${r.truncated ? " (truncated)" : ""}, |v| ${Math.sqrt(norm).toFixed(4)}, [${head}, …]\n`,
      );
    }
    return 0;
  } catch (err) {
    process.stderr.write(`tandem encode: ${describeError(err, addr)}\n`);
    return 1;
  } finally {
    client.close();
  }
}
