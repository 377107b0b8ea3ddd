import { address } from "../addresses.js";
import { annClient, describeError } from "../clients.js";
import { type Progress, startProgress } from "../progress.js";

export interface RebuildFlags {
  json?: boolean;
  ann?: string;
}

const POLL_MS = 500;

/**
 * RebuildIndex on one collection (or alias). The call answers when the new graph is swapped in;
 * meanwhile Stats' rebuild_inserted / rebuild_total drive a progress bar on stderr.
 */
export async function rebuildCommand(collection: string, flags: RebuildFlags): Promise<number> {
  const addr = address("ann", flags.ann);
  const ann = annClient(addr);
  // Set inside progress(); the `as` keeps TypeScript from narrowing it to null out here.
  let bar = null as Progress | null;
  let running = true;
  const progress = async () => {
    while (running) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      const s = await ann.stats(collection).catch(() => null);
      if (!running || !s || s.rebuildTotal === 0) continue;
      bar ??= startProgress(s.rebuildTotal, { label: "rebuilding", unit: "points" });
      bar.update(s.rebuildInserted);
    }
  };
  try {
    const polling = flags.json ? Promise.resolve() : progress();
    // No deadline (the client's default for it): a large collection's graph takes minutes to hours
    // on CPU, and the server answers as soon as it is swapped in (or the collection closes).
    const res = await ann.rebuildIndex(collection).finally(() => {
      running = false;
    });
    await polling;
    bar?.stop();
    if (flags.json) process.stdout.write(`${JSON.stringify(res)}\n`);
    else {
      process.stdout.write(
        `rebuilt the graph of ${res.collection}: ${res.points} points in ${(res.tookMs / 1000).toFixed(1)} s\n`,
      );
    }
    return 0;
  } catch (err) {
    bar?.stop();
    process.stderr.write(`tandem rebuild: ${describeError(err, addr)}\n`);
    return 1;
  } finally {
    running = false;
    ann.close();
  }
}
