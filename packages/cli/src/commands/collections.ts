import { Metric } from "@tandem/proto";
import { unary } from "@tandem/service-kit";
import { address } from "../addresses.js";
import { annClient, describeError } from "../clients.js";

export interface CollectionsFlags {
  json?: boolean;
  ann?: string;
}

export async function collectionsCommand(flags: CollectionsFlags): Promise<number> {
  const addr = address("ann", flags.ann);
  const ann = annClient(addr);
  try {
    const [{ collections }, { aliases }] = await Promise.all([
      unary(ann.listCollections.bind(ann), {}, { timeoutMs: 10_000 }),
      unary(ann.listAliases.bind(ann), {}, { timeoutMs: 10_000 }),
    ]);
    if (flags.json) {
      const out = {
        collections: collections.map((c) => ({
          name: c.name,
          space: c.space,
          dims: c.dims,
          metric: Metric[c.metric].replace("METRIC_", "").toLowerCase(),
          count: Number(c.count),
          aliases: c.aliases,
          createdAtMs: Number(c.createdAtMs),
        })),
        aliases,
      };
      process.stdout.write(`${JSON.stringify(out)}\n`);
      return 0;
    }
    if (collections.length === 0) {
      process.stdout.write(`no collections at ${addr}\n`);
      return 0;
    }
    const rows = collections.map((c) => [
      c.name,
      String(c.count),
      c.space,
      String(c.dims),
      Metric[c.metric].replace("METRIC_", "").toLowerCase(),
      c.aliases.join(", "),
    ]);
    const head = ["collection", "points", "space", "dims", "metric", "aliases"];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
    const fmt = (cells: string[]) =>
      cells
        .map((c, i) => c.padEnd(widths[i] as number))
        .join("  ")
        .trimEnd();
    process.stdout.write(`${[fmt(head), ...rows.map(fmt)].join("\n")}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`tandem collections: ${describeError(err, addr)}\n`);
    return 1;
  } finally {
    ann.close();
  }
}
