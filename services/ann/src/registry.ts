import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  type Logger,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
} from "@tandem/service-kit";
import type { BackendFactory, CollectionBackend, CollectionMeta } from "./backend.js";
import { writeFileAtomic } from "./snapshot.js";
import { syncDir } from "./wal.js";

/**
 * The registry: every collection under DATA_DIR/collections/<name>, and the
 * aliases (DATA_DIR/aliases.json). An alias change is written to disk
 * (temp + fsync + rename) before the in-memory map is swapped in one
 * assignment, so a reader sees either the old or the new target, never
 * neither, and a restart sees what was last acknowledged.
 *
 *   DATA_DIR/collections/<name>/     the backend's (embedded: see collection.ts)
 *   DATA_DIR/collections/.new-*      a creation in progress (removed at start)
 *   DATA_DIR/trash/                  dropped collections being deleted
 */

export class Registry {
  private readonly collections = new Map<string, CollectionBackend>();
  /** Collections that exist on disk but failed to load: refused with UNAVAILABLE, droppable. */
  private readonly failed = new Map<string, Error>();
  private aliases = new Map<string, string>();
  private readonly reserved = new Set<string>();
  private aliasWrite: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly dataDir: string,
    private readonly backends: BackendFactory,
    private readonly log: Logger,
    private readonly maxCollections: number,
  ) {}

  private get root(): string {
    return join(this.dataDir, "collections");
  }
  private get trash(): string {
    return join(this.dataDir, "trash");
  }

  static async open(dataDir: string, backends: BackendFactory, log: Logger, maxCollections: number): Promise<Registry> {
    const reg = new Registry(dataDir, backends, log, maxCollections);
    mkdirSync(reg.root, { recursive: true });
    rmSync(reg.trash, { recursive: true, force: true });
    for (const name of readdirSync(reg.root)) {
      const dir = join(reg.root, name);
      if (name.startsWith(".")) {
        rmSync(dir, { recursive: true, force: true });
        continue;
      }
      try {
        reg.collections.set(name, await backends.open(dir));
      } catch (err) {
        const e = err instanceof Error ? err : new Error(String(err));
        log.error({ err: e, collection: name }, "collection failed to load; its files are left untouched");
        reg.failed.set(name, e);
      }
    }
    const aliasFile = join(dataDir, "aliases.json");
    if (existsSync(aliasFile)) {
      reg.aliases = new Map(Object.entries(JSON.parse(readFileSync(aliasFile, "utf8")) as Record<string, string>));
    }
    return reg;
  }

  /** A collection by name or alias. */
  resolve(name: string): CollectionBackend {
    const target = this.aliases.get(name) ?? name;
    const c = this.collections.get(target);
    if (c) return c;
    const failure = this.failed.get(target);
    if (failure) throw new UnavailableError(`collection ${target} failed to load: ${failure.message}`);
    if (target !== name) throw new NotFoundError(`alias ${name} points to collection ${target}, which does not exist`);
    throw new NotFoundError(`no collection or alias named ${name}`);
  }

  list(): CollectionBackend[] {
    return [...this.collections.values()].sort((a, b) => a.meta.name.localeCompare(b.meta.name));
  }

  aliasesOf(collection: string): string[] {
    return [...this.aliases]
      .filter(([, c]) => c === collection)
      .map(([a]) => a)
      .sort();
  }

  listAliases(): Array<{ alias: string; collection: string }> {
    return [...this.aliases]
      .map(([alias, collection]) => ({ alias, collection }))
      .sort((a, b) => a.alias.localeCompare(b.alias));
  }

  async create(meta: CollectionMeta): Promise<CollectionBackend> {
    const name = meta.name;
    if (this.collections.has(name) || this.failed.has(name) || this.reserved.has(name)) {
      throw new AlreadyExistsError(`collection ${name} already exists`);
    }
    if (this.aliases.has(name)) throw new AlreadyExistsError(`${name} is already an alias`);
    if (this.collections.size + this.failed.size + this.reserved.size >= this.maxCollections) {
      throw new ResourceExhaustedError(`this server holds ${this.maxCollections} collections (MAX_COLLECTIONS)`);
    }
    this.reserved.add(name);
    try {
      // Built under a hidden name, then renamed: a crash leaves no half collection.
      const staging = join(this.root, `.new-${name}-${process.pid}-${Date.now()}`);
      await this.backends.initialise(staging, meta);
      const dir = join(this.root, name);
      renameSync(staging, dir);
      await syncDir(this.root);
      const c = await this.backends.open(dir);
      this.collections.set(name, c);
      return c;
    } finally {
      this.reserved.delete(name);
    }
  }

  async drop(name: string): Promise<boolean> {
    // Checked and unregistered in the alias queue, so no SetAlias can slip in between.
    const found = await this.writeAliases(() => {
      if (this.aliases.has(name)) {
        throw new FailedPreconditionError(`${name} is an alias; drop the collection it points to, or DeleteAlias`);
      }
      const aliases = this.aliasesOf(name);
      if (aliases.length > 0) {
        throw new FailedPreconditionError(
          `collection ${name} is the target of alias(es) ${aliases.join(", ")}; move or delete them first`,
        );
      }
      const c = this.collections.get(name);
      const exists = c !== undefined || this.failed.has(name);
      this.collections.delete(name);
      this.failed.delete(name);
      return { next: null, result: exists ? { c } : null };
    });
    if (!found) return false;
    const c = found.c;
    await c?.close(false);
    // Rename first (atomic), delete after: a crash mid-delete leaves only trash.
    mkdirSync(this.trash, { recursive: true });
    const gone = join(this.trash, `${name}-${Date.now()}`);
    renameSync(join(this.root, name), gone);
    await syncDir(this.root);
    rmSync(gone, { recursive: true, force: true });
    return true;
  }

  /** Points `alias` at `collection`; returns the previous target ("" if new). */
  setAlias(alias: string, collection: string): Promise<string> {
    return this.writeAliases(() => {
      if (this.collections.has(alias) || this.failed.has(alias)) {
        throw new AlreadyExistsError(`${alias} is a collection name; an alias cannot shadow it`);
      }
      if (!this.collections.has(collection)) {
        const why = this.aliases.has(collection) ? " (it is an alias; aliases point at collections)" : "";
        throw new NotFoundError(`no collection named ${collection}${why}`);
      }
      const previous = this.aliases.get(alias) ?? "";
      const next = new Map(this.aliases);
      next.set(alias, collection);
      return { next, result: previous };
    });
  }

  deleteAlias(alias: string): Promise<boolean> {
    return this.writeAliases(() => {
      if (!this.aliases.has(alias)) return { next: null, result: false };
      const next = new Map(this.aliases);
      next.delete(alias);
      return { next, result: true };
    });
  }

  async snapshotAll(): Promise<void> {
    for (const c of this.collections.values()) {
      await c.snapshot().catch((err: unknown) => this.log.error({ err, collection: c.meta.name }, "snapshot failed"));
    }
  }

  async close(snapshot: boolean): Promise<void> {
    for (const c of this.collections.values()) await c.close(snapshot);
  }

  private writeAliases<T>(change: () => { next: Map<string, string> | null; result: T }): Promise<T> {
    const run = this.aliasWrite.then(async () => {
      const { next, result } = change();
      if (next) {
        await writeFileAtomic(join(this.dataDir, "aliases.json"), JSON.stringify(Object.fromEntries(next)));
        this.aliases = next;
      }
      return result;
    });
    this.aliasWrite = run.catch(() => undefined);
    return run;
  }
}
