import {
  checkServedDims,
  EmbeddingModel,
  type ExecutionProvider,
  type Manifest,
  type ModelInfo,
  resolveBundle,
  spaceAt,
} from "@tandem/model-runtime";
import type { ModelCard } from "@tandem/proto";
import type { Logger } from "@tandem/service-kit";
import { FailedPreconditionError } from "@tandem/service-kit";
import type { Redis } from "ioredis";
import type { Target } from "./ann-gateway.js";
import { type IndexerConfig, teacherDims } from "./config.js";
import type { Keys } from "./queue.js";

export interface TeacherOptions {
  providers: ExecutionProvider[];
  intraOpThreads: number;
  /** A Matryoshka size the bundle declares; absent: its full width. */
  dims?: number;
}

/** Loads a teacher with providers in order of preference and says which one it got. */
export async function loadTeacher(dir: string, opts: TeacherOptions, log: Logger): Promise<EmbeddingModel> {
  const model = await EmbeddingModel.load(dir, {
    providers: opts.providers,
    intraOpThreads: opts.intraOpThreads,
    dims: opts.dims,
    onProviderFallback: (provider, err) =>
      log.warn({ provider, bundle: dir, err: err.message }, "execution provider unavailable, trying the next"),
  });
  log.info(
    {
      bundle: model.info.bundleName,
      space: model.info.space,
      dims: model.info.dims,
      maxTokens: model.info.maxTokens,
      provider: model.info.executionProvider,
      preferred: opts.providers,
    },
    "teacher loaded",
  );
  return model;
}

/**
 * Which teacher writes which embedding space, shared through Redis so the API
 * and every worker agree: the configured teacher registers itself at start and
 * a reindex registers the new one. A worker loads each teacher once, lazily.
 */
export class TeacherRegistry {
  private readonly models = new Map<string, Promise<EmbeddingModel>>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly opts: TeacherOptions,
    private readonly log: Logger,
  ) {}

  /**
   * Reads a bundle's manifest (no model load) and records it as the teacher of its space at `dims`
   * (a Matryoshka size it declares, named in the space; default its full width); with `generation`,
   * as the teacher of that one collection (and of the space only if it had none).
   */
  async register(dir: string, generation?: string, dims?: number): Promise<{ space: string; dims: number }> {
    const { space, width } = servedSpace((await resolveBundle(dir)).manifest, dims);
    if (generation) {
      await this.redis.hset(this.keys.generationTeachers(), generation, dir);
      await this.redis.hsetnx(this.keys.teachers(), space, dir);
    } else {
      await this.redis.hset(this.keys.teachers(), space, dir);
    }
    return { space, dims: width };
  }

  /**
   * The registry of a process (the API, a worker) over its Redis connection, with the configured
   * teacher (TEACHER_BUNDLE_DIR at TEACHER_DIMS) registered as the teacher of its space.
   */
  static async configured(
    redis: Redis,
    keys: Keys,
    config: Pick<IndexerConfig, "PROVIDERS" | "INTRA_OP_THREADS" | "TEACHER_BUNDLE_DIR" | "TEACHER_DIMS">,
    log: Logger,
  ): Promise<{ teachers: TeacherRegistry; registered: { space: string; dims: number } }> {
    const teachers = new TeacherRegistry(
      redis,
      keys,
      { providers: config.PROVIDERS, intraOpThreads: config.INTRA_OP_THREADS },
      log,
    );
    const registered = await teachers.register(config.TEACHER_BUNDLE_DIR, undefined, teacherDims(config));
    return { teachers, registered };
  }

  async spaces(): Promise<Record<string, string>> {
    return this.redis.hgetall(this.keys.teachers());
  }

  /** The bundle that writes a collection generation: its own, else its space's; undefined when none. */
  async dirFor(target: Target): Promise<string | undefined> {
    const own = await this.redis.hget(this.keys.generationTeachers(), target.name);
    return own ?? (await this.redis.hget(this.keys.teachers(), target.space)) ?? undefined;
  }

  /** The teacher of a collection generation, or FAILED_PRECONDITION naming the spaces there are teachers for. */
  async forTarget(target: Target, collection: string): Promise<EmbeddingModel> {
    const dir = await this.dirFor(target);
    if (!dir) throw new FailedPreconditionError(await this.mismatch(collection, target.space));
    return this.load(dir, target.space);
  }

  async mismatch(collection: string, space: string): Promise<string> {
    const known = Object.keys(await this.spaces());
    return `collection "${collection}" is in space "${space}", but the indexer's teacher writes space ${
      known.map((s) => `"${s}"`).join(", ") || "(none)"
    }: vectors of different spaces are never mixed`;
  }

  /** The teacher in `dir`, at the width whose space is `space` (the space names it); default its full width. */
  load(dir: string, space?: string): Promise<EmbeddingModel> {
    const key = `${dir}\0${space ?? ""}`;
    let p = this.models.get(key);
    if (!p) {
      p = resolveBundle(dir).then((b) =>
        loadTeacher(dir, { ...this.opts, dims: widthFor(b.manifest, space) }, this.log),
      );
      // A failed load is not cached: the next job retries it.
      p.catch(() => this.models.delete(key));
      this.models.set(key, p);
    }
    return p;
  }

  async release(): Promise<void> {
    const all = [...this.models.values()];
    this.models.clear();
    for (const p of all) {
      const m = await p.catch(() => null);
      await m?.release();
    }
  }
}

/** The space a teacher writes at `dims` (default its full width), or FAILED_PRECONDITION naming the widths it offers. */
function servedSpace(m: Manifest, dims: number | undefined): { space: string; width: number } {
  const width = dims ?? m.dims;
  const refused = checkServedDims(m, width);
  if (refused) throw new FailedPreconditionError(refused);
  return { space: spaceAt(m, width), width };
}

/** The configured teacher, checked before a process opens any connection: a bad bundle or width stops the start. */
export async function checkTeacher(dir: string, dims: number | undefined): Promise<void> {
  servedSpace((await resolveBundle(dir)).manifest, dims);
}

/** The width at which a bundle writes `space`: its full width or a Matryoshka size (spaceAt names each). */
function widthFor(m: Manifest, space: string | undefined): number {
  if (space === undefined) return m.dims;
  const width = [m.dims, ...m.matryoshka_dims].find((d) => spaceAt(m, d) === space);
  if (width === undefined)
    throw new FailedPreconditionError(`teacher bundle ${m.name} does not write space "${space}"`);
  return width;
}

/** A model's card; `executionProvider` is "" where no worker has said where the teacher runs. */
export function modelCard(info: Omit<ModelInfo, "executionProvider"> & { executionProvider: string }): ModelCard {
  return {
    modelId: info.modelId,
    bundleName: info.bundleName,
    role: info.role,
    space: info.space,
    dims: info.dims,
    maxTokens: info.maxTokens,
    precision: info.precision,
    pooling: info.pooling,
    normalize: info.normalize,
    queryPrefix: info.queryPrefix,
    documentPrefix: info.documentPrefix,
    bundleSha256: info.bundleSha256,
    executionProvider: info.executionProvider,
  };
}
