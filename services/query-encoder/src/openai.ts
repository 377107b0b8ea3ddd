import { checkServedDims, type EmbeddingModel, type TextKind, truncateNormalize } from "@tandem/model-runtime";
import { encodeVector } from "@tandem/proto";
import { InvalidArgumentError, ResourceExhaustedError } from "@tandem/service-kit";
import { z } from "zod";
import type { CachedEmbedding } from "./cache.js";
import { type RequestLimits, RequestTooLargeError, validateTexts } from "./validate.js";

/**
 * The OpenAI embeddings protocol (POST /v1/embeddings): the request checked into what the
 * encoder needs, the response and the errors in OpenAI's shapes, so its SDKs and the frameworks
 * built on them (LangChain, LlamaIndex) work unchanged. Transport lives in http.ts.
 */

/** An error as OpenAI sends it: `{error: {message, type, param, code}}` with its HTTP status. */
export class ApiError extends Error {
  readonly code: string | null;
  readonly param: string | null;
  /** Response headers the status calls for (WWW-Authenticate, Allow, Retry-After). */
  readonly headers: Record<string, string>;

  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    opts: { code?: string; param?: string | null; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.code = opts.code ?? null;
    this.param = opts.param ?? null;
    this.headers = opts.headers ?? {};
  }

  get body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const invalidRequest = (message: string, param: string | null = null) =>
  new ApiError(400, message, "invalid_request_error", { param });

/** Any error as an ApiError; `param` names the request field a validation error is about. */
export function apiError(err: unknown, param: string | null = null): ApiError {
  if (err instanceof ApiError) return err;
  // The shared request path ends in these (validation, the batcher's queue); anything else is a fault here.
  if (err instanceof RequestTooLargeError) {
    return new ApiError(413, err.message, "invalid_request_error", { code: "request_too_large", param });
  }
  if (err instanceof InvalidArgumentError) return invalidRequest(err.message, param);
  if (err instanceof ResourceExhaustedError) {
    // The queue drains in milliseconds: OpenAI's SDKs retry after this many seconds.
    return new ApiError(429, err.message, "rate_limit_error", {
      code: "rate_limit_exceeded",
      headers: { "retry-after": "1" },
    });
  }
  return new ApiError(500, `internal error: ${err instanceof Error ? err.message : String(err)}`, "server_error");
}

/** What a request asks for once checked. */
export interface EmbeddingsQuery {
  texts: string[];
  kind: TextKind;
  /** A declared Matryoshka size to cut the vectors to, or null for the full width. */
  dims: number | null;
  base64: boolean;
}

// null is taken as absent: some clients send every optional field, unset ones as null.
const RequestSchema = z.object({
  input: z.union([z.string(), z.array(z.string())], {
    error: "input must be a string or an array of strings",
  }),
  model: z.string({ error: "model is required: the name of the served bundle (GET /v1/models lists it)" }),
  encoding_format: z.enum(["float", "base64"], { error: "encoding_format must be 'float' or 'base64'" }).nullish(),
  dimensions: z.number({ error: "dimensions must be a positive integer" }).int().positive().nullish(),
  input_type: z
    .enum(["query", "document"], { error: "input_type must be 'query' or 'document' (a Tandem extension)" })
    .nullish(),
  user: z.string({ error: "user must be a string" }).nullish(),
});

/** The names `model` may carry: the bundle's name (what responses and /v1/models say) or its model id. */
function modelNames(model: EmbeddingModel): string[] {
  return [...new Set([model.info.bundleName, model.info.modelId])];
}

/** Checks a parsed JSON body; throws ApiError with the field at fault. Unknown fields are ignored. */
export function parseEmbeddingsRequest(body: unknown, model: EmbeddingModel, limits: RequestLimits): EmbeddingsQuery {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw invalidRequest("the request body must be a JSON object with at least input and model");
  }
  const input: unknown = (body as { input?: unknown }).input;
  // OpenAI accepts token ids; they are ids of its tokenizer, meaningless to this model's.
  if (Array.isArray(input) && input.some((x) => typeof x === "number" || Array.isArray(x))) {
    throw invalidRequest("input holds token ids; this server embeds text only: send strings", "input");
  }
  const parsed = RequestSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const param = String(issue.path[0] ?? "") || null;
    throw invalidRequest(issue.message, param);
  }
  const req = parsed.data;
  if (!modelNames(model).includes(req.model)) {
    throw new ApiError(
      404,
      `model '${req.model}' is not served here; this encoder serves '${model.info.bundleName}' (space ${model.info.space})`,
      "invalid_request_error",
      { code: "model_not_found", param: "model" },
    );
  }
  const texts = typeof req.input === "string" ? [req.input] : req.input;
  try {
    validateTexts(texts, limits, "input");
  } catch (err) {
    throw apiError(err, "input");
  }
  const manifest = model.bundle.manifest;
  let dims: number | null = null;
  if (req.dimensions != null && req.dimensions !== model.info.dims) {
    // A model served at a Matryoshka size (MODEL_DIMS) can only be cut further, never widened.
    const refused =
      req.dimensions > model.info.dims
        ? `${manifest.name} is served at ${model.info.dims} dims (MODEL_DIMS); dimensions must be at most that`
        : checkServedDims(manifest, req.dimensions);
    if (refused) throw invalidRequest(refused, "dimensions");
    dims = req.dimensions;
  }
  return { texts, kind: req.input_type ?? "query", dims, base64: req.encoding_format === "base64" };
}

export interface EmbeddingsResponse {
  object: "list";
  data: Array<{ object: "embedding"; index: number; embedding: number[] | string }>;
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

/** `prompt_tokens` counts the model's tokens, special tokens included, after truncation to its max tokens. */
export function embeddingsResponse(
  results: readonly CachedEmbedding[],
  query: EmbeddingsQuery,
  model: EmbeddingModel,
): EmbeddingsResponse {
  let tokens = 0;
  const data = results.map((r, index) => {
    tokens += r.tokens;
    // truncateNormalize copies: the full vector may be a cache entry other requests share.
    const v = query.dims === null ? r.vector : truncateNormalize(r.vector, query.dims);
    // base64 of little-endian float32, as OpenAI sends it.
    const embedding = query.base64 ? encodeVector(v).toString("base64") : Array.from(v);
    return { object: "embedding" as const, index, embedding };
  });
  return {
    object: "list",
    data,
    model: model.info.bundleName,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}
