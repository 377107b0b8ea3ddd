import { createInterface } from "node:readline/promises";
import { status } from "@grpc/grpc-js";
import { type Ann, isRpcError } from "@tandem/client";
import { type CollectionInfo, Metric } from "@tandem/proto";
import { address } from "../addresses.js";
import { annClient, collectionLabel, describeError, ensureCollection } from "../clients.js";
import { type SpaceFlags, targetSpace } from "../collection-space.js";

export interface CollectionsFlags {
  json?: boolean;
  ann?: string;
}

export type CreateFlags = CollectionsFlags &
  SpaceFlags & {
    quantization?: "f32" | "f16" | "i8";
    /** commander's --no-rescore: false when given, true otherwise. */
    rescore?: boolean;
    oversampling?: number;
  };

export interface DropFlags extends CollectionsFlags {
  yes?: boolean;
}

const metricName = (m: Metric) => Metric[m].replace("METRIC_", "").toLowerCase();

/** "f32", or "i8 + rescore x4": how the graph holds vectors and whether searches are rescored. */
function storage(c: CollectionInfo): string {
  const q = c.index?.quantization || "f32";
  return c.index?.rescore ? `${q} + rescore x${c.index.oversampling ?? 1}` : q;
}

function collectionJson(c: CollectionInfo) {
  return {
    name: c.name,
    space: c.space,
    dims: c.dims,
    metric: metricName(c.metric),
    quantization: c.index?.quantization || "f32",
    rescore: c.index?.rescore ?? false,
    oversampling: c.index?.oversampling,
    count: Number(c.count),
    aliases: c.aliases,
    createdAtMs: Number(c.createdAtMs),
  };
}

const print = (flags: CollectionsFlags, json: unknown, text: string) =>
  process.stdout.write(`${flags.json ? JSON.stringify(json) : text}\n`);

/** A refusal of `tandem collections <what>`: one line on stderr, exit status 1. */
function refuse(what: string, message: string): number {
  process.stderr.write(`tandem collections ${what}: ${message}\n`);
  return 1;
}

/** The ANN service's limits are its own variables: name the one a refusal ran into, and the way out. */
function limitHint(err: unknown): string {
  if (!isRpcError(err)) return "";
  if (err.code === status.RESOURCE_EXHAUSTED) {
    return ". Drop a collection first (tandem collections drop NAME --yes), or raise the limit on the ANN service";
  }
  if (err.code === status.INVALID_ARGUMENT && /^dims=/.test(err.details))
    return " (the ANN service's MIN_DIMS, MAX_DIMS)";
  if (err.code === status.INVALID_ARGUMENT && /name is longer/.test(err.details))
    return " (the ANN service's MAX_NAME_BYTES)";
  return "";
}

/** One subcommand against the ANN service; a failed call becomes a refusal naming the service's reason. */
async function withAnn(what: string, flags: CollectionsFlags, run: (ann: Ann) => Promise<number>): Promise<number> {
  const addr = address("ann", flags.ann);
  const ann = annClient(addr);
  try {
    return await run(ann);
  } catch (err) {
    return refuse(what, `${describeError(err, addr)}${limitHint(err)}`);
  } finally {
    ann.close();
  }
}

export function collectionsCommand(flags: CollectionsFlags): Promise<number> {
  return withAnn("list", flags, async (ann) => {
    const [collections, aliases] = await Promise.all([ann.listCollections(), ann.listAliases()]);
    if (flags.json) {
      process.stdout.write(`${JSON.stringify({ collections: collections.map(collectionJson), aliases })}\n`);
      return 0;
    }
    if (collections.length === 0) {
      process.stdout.write(`no collections at ${address("ann", flags.ann)}\n`);
      return 0;
    }
    const rows = collections.map((c) => [
      c.name,
      String(c.count),
      c.space,
      String(c.dims),
      metricName(c.metric),
      storage(c),
      c.aliases.join(", "),
    ]);
    const head = ["collection", "points", "space", "dims", "metric", "vectors", "aliases"];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
    const fmt = (cells: string[]) =>
      cells
        .map((c, i) => c.padEnd(widths[i] as number))
        .join("  ")
        .trimEnd();
    process.stdout.write(`${[fmt(head), ...rows.map(fmt)].join("\n")}\n`);
    return 0;
  });
}

/** A new collection in the space of the indexer's teacher (or of --teacher, or --space/--dims). */
export function createCommand(name: string, flags: CreateFlags): Promise<number> {
  return withAnn("create", flags, async (ann) => {
    const target = await targetSpace(flags);
    const quantised = flags.quantization === "f16" || flags.quantization === "i8";
    if (!quantised && (flags.rescore === false || flags.oversampling !== undefined))
      return refuse("create", "--no-rescore and --oversampling apply to --quantization f16 or i8 only");
    if (flags.rescore === false && flags.oversampling !== undefined)
      return refuse("create", "--oversampling sets how many candidates rescoring ranks: drop it, or drop --no-rescore");
    const { info, created } = await ensureCollection(ann, name, target, {
      quantization: flags.quantization ?? "f32",
      ...(quantised && flags.rescore === false ? { rescore: false } : {}),
      ...(flags.oversampling !== undefined ? { oversampling: flags.oversampling } : {}),
    });
    if (!created) {
      return refuse(
        "create",
        `${collectionLabel(name, info)} already exists, in ${info.space} (${info.dims}-d, ${info.count} points)`,
      );
    }
    print(
      flags,
      collectionJson(info),
      `created collection ${name}: ${info.space}, ${info.dims}-d, ${metricName(info.metric)}, ${storage(info)} (from ${target.from})`,
    );
    return 0;
  });
}

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

/**
 * Drops a collection, its vectors and payloads. Never one an alias points to: searches through the
 * alias would start failing, so the alias is moved or removed first (the ANN service refuses it too).
 */
export function dropCommand(name: string, flags: DropFlags): Promise<number> {
  return withAnn("drop", flags, async (ann) => {
    const info = await ann.find(name);
    if (!info) return refuse("drop", `no collection named ${name}`);
    if (info.name !== name) {
      return refuse(
        "drop",
        `${name} is an alias of collection ${info.name}, not a collection: ` +
          `tandem collections unalias ${name} removes the alias, tandem collections drop ${info.name} the collection`,
      );
    }
    if (info.aliases.length > 0) {
      const list = info.aliases.join(", ");
      const first = info.aliases[0];
      return refuse(
        "drop",
        `collection ${name} is the target of alias ${list}: searches through it would fail once ${name} is gone. ` +
          `Point it at another collection (tandem collections alias ${first} OTHER) or remove it ` +
          `(tandem collections unalias ${first}) first`,
      );
    }
    const what = `collection ${name} (${info.space}, ${info.count} points)`;
    if (!flags.yes) {
      if (process.stdin.isTTY !== true) {
        return refuse(
          "drop",
          `dropping ${what} deletes its vectors and payloads for good: confirm with --yes (stdin is not a terminal, so nobody can be asked)`,
        );
      }
      if (!(await confirm(`drop ${what}? Its vectors and payloads are deleted for good. [y/N] `))) {
        return refuse("drop", `kept ${name}`);
      }
    }
    const dropped = await ann.dropCollection(name, { deadlineMs: 60_000 });
    // Gone already: dropped by someone else between the look and the drop.
    if (!dropped) return refuse("drop", `no collection named ${name}`);
    print(flags, { dropped: name, space: info.space, count: Number(info.count) }, `dropped ${what}`);
    return 0;
  });
}

/** Points `alias` at `collection`, creating or moving it (atomically, on the ANN service). */
export function aliasCommand(alias: string, collection: string, flags: CollectionsFlags): Promise<number> {
  return withAnn("alias", flags, async (ann) => {
    const before = await ann.find(alias);
    // The service refuses an alias that would shadow a collection, a missing collection and an alias of an alias.
    const previousCollection = await ann.setAlias(alias, collection);
    const now = await ann.find(alias);
    const was = previousCollection ? `, was ${previousCollection}` : "";
    print(
      flags,
      { alias, collection, previous: previousCollection || null, space: now?.space ?? null },
      `alias ${alias} -> ${collection}${now ? ` (${now.space})` : ""}${was}`,
    );
    if (!flags.json && before && now && before.space !== now.space) {
      process.stderr.write(
        `note: searches through ${alias} now reach ${now.space} instead of ${before.space}: ` +
          `by text, they need a query encoder in ${now.space}\n`,
      );
    }
    return 0;
  });
}

/** Removes an alias; the collection it pointed at is kept. */
export function unaliasCommand(alias: string, flags: CollectionsFlags): Promise<number> {
  return withAnn("unalias", flags, async (ann) => {
    const aliases = await ann.listAliases();
    const entry = aliases.find((a) => a.alias === alias);
    if (!entry) {
      const c = await ann.find(alias);
      return refuse(
        "unalias",
        c
          ? `${alias} is a collection, not an alias (tandem collections drop ${alias} deletes it)`
          : `no alias named ${alias}`,
      );
    }
    await ann.deleteAlias(alias);
    print(
      flags,
      { alias, collection: entry.collection },
      `removed alias ${alias}; ${entry.collection}, which it pointed at, is kept`,
    );
    return 0;
  });
}
