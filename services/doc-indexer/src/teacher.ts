import { EmbeddingModel, type ExecutionProvider, type ModelInfo, resolveBundle } from "@tandem/model-runtime";
import type { ModelCard } from "@tandem/proto";
import type { Logger } from "@tandem/service-kit";
import { FailedPreconditionError } from "@tandem/service-kit";
import type { Redis } from "ioredis";
import type { Target } from "./ann-writer.js";
import type { Keys } from "./queue.js";

export interface TeacherOptions {
  providers: ExecutionProvider[];
  intraOpThreads: number;
}

/** Loads a teacher with providers in order of preference and says which one it got. */
export async function loadTeacher(dir: string, opts: TeacherOptions, log: Logger): Promise<EmbeddingModel> {
  const model = await EmbeddingModel.load(dir, {
    providers: opts.providers,
    intraOpThreads: opts.intraOpThreads,
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
   * Reads a bundle's manifest (no model load) and records it as the teacher of its space; with
   * `generation`, as the teacher of that one collection (and of the space only if it had none).
   */
  async register(dir: string, generation?: string): Promise<{ space: string; dims: number }> {
    const bundle = await resolveBundle(dir);
    if (generation) {
      await this.redis.hset(this.keys.generationTeachers(), generation, dir);
      await this.redis.hsetnx(this.keys.teachers(), bundle.manifest.space, dir);
    } else {
      await this.redis.hset(this.keys.teachers(), bundle.manifest.space, dir);
    }
    return { space: bundle.manifest.space, dims: bundle.manifest.dims };
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
    return this.load(dir);
  }

  async mismatch(collection: string, space: string): Promise<string> {
    const known = Object.keys(await this.spaces());
    return `collection "${collection}" is in space "${space}", but the indexer's teacher writes space ${
      known.map((s) => `"${s}"`).join(", ") || "(none)"
    }: vectors of different spaces are never mixed`;
  }

  load(dir: string): Promise<EmbeddingModel> {
    let p = this.models.get(dir);
    if (!p) {
      p = loadTeacher(dir, this.opts, this.log);
      // A failed load is not cached: the next job retries it.
      p.catch(() => this.models.delete(dir));
      this.models.set(dir, p);
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

export function modelCard(info: ModelInfo): ModelCard {
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
