import {
  type AnnService,
  type CollectionInfo,
  type CreateCollectionRequest,
  encodeVector,
  type Hit,
  Metric,
  type Point,
} from "@tandem/proto";
import {
  CancelledError,
  FailedPreconditionError,
  type Handlers,
  InvalidArgumentError,
  UnavailableError,
} from "@tandem/service-kit";
import type { CollectionBackend, CollectionMeta, NewPoint } from "./backend.js";
import type { AnnConfig } from "./config.js";
import type { EncoderClient } from "./encoder-client.js";
import { compileFilter } from "./filter.js";
import type { MetricName } from "./hnsw.js";
import type { Registry } from "./registry.js";
import { checkCount, checkId, checkName, checkPayload, checkQuantization, checkVector } from "./validate.js";

/** validate -> resolve collection/alias -> (encode text) -> backend (backend.ts) -> respond */

const METRIC_NAME: Partial<Record<Metric, MetricName>> = {
  [Metric.METRIC_UNSPECIFIED]: "cosine",
  [Metric.METRIC_COSINE]: "cosine",
  [Metric.METRIC_DOT]: "dot",
  [Metric.METRIC_L2]: "l2",
};
const METRIC_ENUM: Record<MetricName, Metric> = {
  cosine: Metric.METRIC_COSINE,
  dot: Metric.METRIC_DOT,
  l2: Metric.METRIC_L2,
};
const DEFAULT_K = 10;
const EMPTY = Buffer.alloc(0);

export interface AnnDeps {
  /** null until every collection is loaded (snapshot + WAL): requests get UNAVAILABLE meanwhile. */
  registry: () => Registry | null;
  encoder: EncoderClient | null;
  config: AnnConfig;
}

export function annHandlers({ registry, encoder, config }: AnnDeps): Handlers<typeof AnnService> {
  const reg = (): Registry => {
    const r = registry();
    if (!r) throw new UnavailableError("the ANN service is still loading its collections");
    return r;
  };
  const info = (c: CollectionBackend): CollectionInfo => ({
    name: c.meta.name,
    space: c.meta.space,
    dims: c.meta.dims,
    metric: METRIC_ENUM[c.meta.metric],
    index: {
      m: c.meta.m,
      efConstruction: c.meta.efConstruction,
      efSearch: c.meta.efSearch,
      quantization: c.meta.quantization,
      // Reported only where rescoring runs: an f32 collection was never given either.
      rescore: c.meta.quantization === "f32" ? undefined : c.meta.rescore,
      oversampling: c.meta.rescore ? c.meta.oversampling : undefined,
    },
    count: c.count,
    createdAtMs: c.meta.createdAtMs,
    aliases: reg().aliasesOf(c.meta.name),
  });
  const collectionName = (name: string) => {
    if (name === "") throw new InvalidArgumentError("collection is empty");
    return name;
  };
  const checkIds = (ids: string[]) => {
    checkCount("ids", ids.length, config.MAX_POINTS_PER_REQUEST);
    for (const id of ids) checkId(id, config.MAX_ID_BYTES);
  };

  return {
    async createCollection(req) {
      const r = reg();
      return info(await r.create(collectionMeta(req, config)));
    },

    async dropCollection(req) {
      return { dropped: await reg().drop(checkName("collection", req.name, config.MAX_NAME_BYTES)) };
    },

    async listCollections() {
      return { collections: reg().list().map(info) };
    },

    async stats(req) {
      const c = reg().resolve(collectionName(req.collection));
      return { info: info(c), ...(await c.stats()) };
    },

    async rebuildIndex(req) {
      const c = reg().resolve(collectionName(req.collection));
      const started = performance.now();
      if (!(await c.rebuild())) {
        throw new UnavailableError(
          `collection ${c.meta.name} was closed (dropped or shutting down) before its rebuilt graph was swapped in`,
        );
      }
      return { collection: c.meta.name, points: c.count, tookMs: Math.round(performance.now() - started) };
    },

    async upsert(requests, ctx) {
      let target: CollectionBackend | null = null;
      let name = "";
      let upserted = 0;
      for await (const req of requests) {
        if (ctx.signal.aborted) throw new CancelledError("upsert stream cancelled by the client");
        // The stream is bound to the collection its first message resolves to
        // (an alias moved mid-stream does not split a stream across generations).
        if (target === null) {
          name = collectionName(req.collection);
          target = reg().resolve(name);
        } else if (req.collection !== name) {
          throw new InvalidArgumentError(
            `every message of an Upsert stream must name the same collection: got ${req.collection}, expected ${name}`,
          );
        }
        checkCount("points", req.points.length, config.MAX_POINTS_PER_REQUEST);
        const c: CollectionBackend = target;
        const points = req.points.map((p): NewPoint => {
          checkId(p.id, config.MAX_ID_BYTES);
          const values = checkVector(p.vector, c.meta.dims, `vector of point ${JSON.stringify(p.id)}`);
          const payload = checkPayload(p.id, p.payloadJson, config.MAX_PAYLOAD_BYTES);
          return { id: p.id, vector: p.vector, values, payload: payload.text, payloadObject: payload.object };
        });
        upserted += await c.upsert(points);
      }
      return { upserted };
    },

    async delete(req) {
      const c = reg().resolve(collectionName(req.collection));
      checkIds(req.ids);
      return { deleted: await c.delete(req.ids) };
    },

    async get(req) {
      const c = reg().resolve(collectionName(req.collection));
      checkIds(req.ids);
      const points: Point[] = [];
      const missing: string[] = [];
      const found = await c.get(req.ids, req.withVectors);
      req.ids.forEach((id, i) => {
        const p = found[i];
        if (p) points.push({ id, payloadJson: p.payload, vector: p.vector ? encodeVector(p.vector) : EMPTY });
        else missing.push(id);
      });
      return { points, missing };
    },

    async search(req, ctx) {
      let c = reg().resolve(collectionName(req.collection));
      const k = req.k === 0 ? DEFAULT_K : req.k;
      if (k > config.MAX_K) throw new InvalidArgumentError(`k=${k} exceeds MAX_K=${config.MAX_K}`);
      if (req.ef > config.MAX_EF) throw new InvalidArgumentError(`ef=${req.ef} exceeds MAX_EF=${config.MAX_EF}`);
      const filter = compileFilter(req.filter, {
        maxClauses: config.MAX_FILTER_CLAUSES,
        maxValues: config.MAX_FILTER_VALUES,
        maxStringBytes: config.FILTER_MAX_STRING_BYTES,
      });
      for (const f of req.payloadFields)
        if (f === "") throw new InvalidArgumentError("payload_fields has an empty name");

      let query: Float32Array;
      let queryTokens = 0;
      let queryTruncated = false;
      const q = req.query;
      if (!q) throw new InvalidArgumentError("search needs a query: vector or text");
      if (q.$case === "vector") {
        query = checkVector(q.value, c.meta.dims, `query vector for collection ${c.meta.name}`);
      } else {
        if (q.value === "") throw new InvalidArgumentError("query text is empty");
        if (!encoder) {
          throw new FailedPreconditionError(
            "Search{text} needs a query encoder: this server runs without ENCODER_ADDR",
          );
        }
        const encoded = await encoder.encodeFor(q.value, c.meta.space, c.meta.dims, ctx.signal);
        query = encoded.vector;
        queryTokens = encoded.tokens;
        queryTruncated = encoded.truncated;
        // The alias may have moved while the encoder ran: search what it points at now
        // only if that is still the same space.
        const now = reg().resolve(req.collection);
        if (now.meta.space === c.meta.space && now.meta.dims === c.meta.dims) c = now;
      }

      const found = await c.search(query, {
        k,
        ef: req.ef === 0 ? c.meta.efSearch : req.ef,
        exact: req.exact,
        filter,
        withVectors: req.withVectors,
      });
      const hits = found.map(
        (h): Hit => ({
          id: h.id,
          score: h.score,
          payloadJson: req.withPayload ? project(h.payload, req.payloadFields) : "",
          vector: h.vector ? encodeVector(h.vector) : EMPTY,
        }),
      );
      return { hits, collection: c.meta.name, space: c.meta.space, queryTokens, queryTruncated };
    },

    async setAlias(req) {
      const alias = checkName("alias", req.alias, config.MAX_NAME_BYTES);
      const collection = checkName("collection", req.collection, config.MAX_NAME_BYTES);
      return { previousCollection: await reg().setAlias(alias, collection) };
    },

    async deleteAlias(req) {
      return { deleted: await reg().deleteAlias(checkName("alias", req.alias, config.MAX_NAME_BYTES)) };
    },

    async listAliases() {
      return { aliases: reg().listAliases() };
    },
  };
}

function collectionMeta(req: CreateCollectionRequest, config: AnnConfig): CollectionMeta {
  const name = checkName("collection", req.name, config.MAX_NAME_BYTES);
  if (req.space === "") throw new InvalidArgumentError("space is required: the embedding space the vectors come from");
  if (req.space.length > 256) throw new InvalidArgumentError("space is longer than 256 characters");
  if (req.dims < config.MIN_DIMS || req.dims > config.MAX_DIMS) {
    throw new InvalidArgumentError(`dims=${req.dims} is outside [${config.MIN_DIMS}, ${config.MAX_DIMS}]`);
  }
  const metric = METRIC_NAME[req.metric];
  if (!metric) throw new InvalidArgumentError(`unknown metric ${req.metric}`);
  const p = req.index;
  const m = p?.m || 16;
  const efConstruction = p?.efConstruction || 128;
  const efSearch = p?.efSearch || 64;
  if (m < 2 || m > 128) throw new InvalidArgumentError(`index.m=${m} is outside [2, 128]`);
  if (efConstruction > config.MAX_EF) {
    throw new InvalidArgumentError(`index.ef_construction=${efConstruction} exceeds MAX_EF=${config.MAX_EF}`);
  }
  if (efSearch > config.MAX_EF)
    throw new InvalidArgumentError(`index.ef_search=${efSearch} exceeds MAX_EF=${config.MAX_EF}`);
  const q = checkQuantization(p?.quantization || "f32", metric, p?.rescore, p?.oversampling);
  return {
    name,
    space: req.space,
    dims: req.dims,
    metric,
    m,
    efConstruction,
    efSearch,
    ...q,
    createdAtMs: Date.now(),
  };
}

/** The payload reduced to `fields` (all of it when none are named). */
function project(payload: string, fields: string[]): string {
  if (fields.length === 0) return payload;
  const obj = JSON.parse(payload) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const f of fields) if (Object.hasOwn(obj, f)) out[f] = obj[f];
  return JSON.stringify(out);
}
