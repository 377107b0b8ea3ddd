import { readFileSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer, type ServerOptions as HttpsOptions } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import {
  LATENCY_BUCKETS_MS,
  type Logger,
  type Meter,
  type ServerSecurityConfig,
  type TokenSet,
} from "@tandem/service-kit";
import type { Embedder } from "./embed.js";
import { ApiError, apiError, embeddingsResponse, invalidRequest, parseEmbeddingsRequest } from "./openai.js";
import type { RequestLimits } from "./validate.js";

/**
 * The OpenAI-compatible HTTP API on its own port, on Node's own http/https server: one JSON
 * route needs no framework, and the server's request and header timeouts bound slow clients.
 * Requests go through the gRPC API's Embedder (queue, limits, cache), its TokenSet and its TLS
 * files: one set of rules whichever protocol a caller speaks.
 */
export interface HttpApiOptions {
  host: string;
  port: number;
  embedder: Embedder;
  limits: RequestLimits;
  maxBodyBytes: number;
  /** The gRPC server's accepted tokens (null: none required); health needs none, as over gRPC. */
  tokens: TokenSet | null;
  tls: ServerSecurityConfig;
  log: Logger;
  meter: Meter;
}

export interface RunningHttpApi {
  port: number;
  /** GET /health answers 200 only while serving (after warm-up, before shutdown). */
  setServing(serving: boolean): void;
  /** New requests get 503, requests in flight get up to `graceMs` to finish, then connections are cut. */
  shutdown(graceMs: number): Promise<void>;
}

type Route = (req: IncomingMessage, res: ServerResponse, signal: AbortSignal) => Promise<void>;

export async function startHttpApi(opts: HttpApiOptions): Promise<RunningHttpApi> {
  const { embedder, log } = opts;
  const model = embedder.model;
  let serving = false;
  let stopping = false;
  const duration = opts.meter.createHistogram("http_server_duration", {
    unit: "ms",
    description: "HTTP API latency by route and status",
    advice: { explicitBucketBoundaries: LATENCY_BUCKETS_MS },
  });

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    const json = JSON.stringify(body);
    // While draining, an answer closes its connection: a keep-alive client reconnects to another replica
    // instead of holding this one open until its idle timeout.
    if (stopping) headers = { ...headers, connection: "close" };
    res.writeHead(status, {
      ...headers,
      "content-type": "application/json",
      "content-length": Buffer.byteLength(json),
    });
    res.end(json);
  };

  // `open`: needs no token (probes carry none, as for grpc.health.v1).
  const routes: Record<string, { method: string; open?: boolean; run: Route }> = {
    "/v1/embeddings": {
      method: "POST",
      async run(req, res, signal) {
        const body = await readJson(req, opts.maxBodyBytes);
        // Checked once the body is in: a request still arriving when shutdown began is refused, not queued.
        if (stopping) {
          throw new ApiError(503, "the encoder is shutting down; retry on another replica", "server_error", {
            code: "service_unavailable",
          });
        }
        const query = parseEmbeddingsRequest(body, model, opts.limits);
        // No deadline: HTTP carries none; a client that gives up closes the connection, which aborts `signal`.
        const results = await embedder.embed(query.texts, query.kind, signal, Number.POSITIVE_INFINITY);
        send(res, 200, embeddingsResponse(results, query, model));
      },
    },
    "/v1/models": {
      method: "GET",
      async run(_req, res) {
        const card = { id: model.info.bundleName, object: "model", created: 0, owned_by: "tandem" };
        send(res, 200, { object: "list", data: [card] });
      },
    },
    "/health": {
      method: "GET",
      open: true,
      async run(_req, res) {
        send(res, serving ? 200 : 503, { status: serving ? "SERVING" : "NOT_SERVING" });
      },
    },
  };

  // Open connections and the requests in progress on each. Shutdown closes the ones with none, which
  // Node's closeIdleConnections leaves open when no request ever came (clients open spare connections).
  const connections = new Map<Socket, number>();

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const started = performance.now();
    const socket = req.socket;
    connections.set(socket, (connections.get(socket) ?? 0) + 1);
    res.once("close", () => {
      if (connections.has(socket)) connections.set(socket, (connections.get(socket) ?? 1) - 1);
    });
    // Split, not parsed: a request-target URL() refuses ("//") must still get its 404.
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const route = routes[path];
    const controller = new AbortController();
    res.on("close", () => {
      if (!res.writableFinished) controller.abort(new Error("client closed the connection"));
      duration.record(performance.now() - started, { route: route ? path : "other", code: res.statusCode });
    });
    try {
      if (!route) throw new ApiError(404, `Invalid URL (${req.method} ${path})`, "invalid_request_error");
      if (req.method !== route.method) {
        throw new ApiError(405, `${path} takes ${route.method}, not ${req.method}`, "invalid_request_error", {
          headers: { allow: route.method },
        });
      }
      const refused = route.open ? null : (opts.tokens?.check(req.headers.authorization) ?? null);
      if (refused !== null) {
        throw new ApiError(401, refused, "invalid_request_error", {
          code: "invalid_api_key",
          headers: { "www-authenticate": "Bearer" },
        });
      }
      await route.run(req, res, controller.signal);
    } catch (err) {
      if (controller.signal.aborted || res.headersSent) return; // nobody left to answer, or answered
      const e = apiError(err);
      if (e.status >= 500) log.error({ err, path }, "HTTP request failed");
      send(res, e.status, e.body, e.headers);
    }
  };

  const tls = tlsOptions(opts.tls);
  const onRequest = (req: IncomingMessage, res: ServerResponse) =>
    void handle(req, res).catch((err: unknown) => log.error({ err }, "HTTP request handler failed"));
  const server: Server = tls ? createHttpsServer(tls, onRequest) : createHttpServer(onRequest);
  server.on(tls ? "secureConnection" : "connection", (socket: Socket) => {
    connections.set(socket, 0);
    socket.once("close", () => connections.delete(socket));
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });

  return {
    port,
    setServing(value) {
      serving = value;
    },
    async shutdown(graceMs) {
      serving = false;
      stopping = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const [socket, requests] of connections) if (requests === 0) socket.destroy();
      let timer: NodeJS.Timeout | undefined;
      const overdue = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          log.warn({ graceMs }, "shutdown grace period over: closing HTTP connections still in flight");
          server.closeAllConnections();
          resolve();
        }, graceMs);
      });
      await Promise.race([closed, overdue]);
      clearTimeout(timer);
    },
  };
}

/** The gRPC server's TLS files, read the same way: TLS with a certificate, mTLS with a client CA as well. */
function tlsOptions(config: ServerSecurityConfig): HttpsOptions | null {
  if (!config.TLS_CERT_FILE) return null;
  const ca = config.TLS_CLIENT_CA_FILE ? readFileSync(config.TLS_CLIENT_CA_FILE) : undefined;
  return {
    cert: readFileSync(config.TLS_CERT_FILE),
    key: readFileSync(config.TLS_KEY_FILE),
    ca,
    requestCert: ca !== undefined,
    rejectUnauthorized: ca !== undefined,
  };
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The body parsed as JSON, refused with 413 past `limit` bytes: by Content-Length before a byte is
 * read, else as soon as the count passes it (the rest is read and dropped, so the client, still
 * sending, receives the 413 instead of a reset connection).
 */
function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const tooLarge = () =>
    new ApiError(
      413,
      `request body is larger than ${limit} bytes (MAX_HTTP_BODY_BYTES): send fewer or shorter texts`,
      "invalid_request_error",
      { code: "request_too_large" },
    );
  if (Number(req.headers["content-length"]) > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on("data", (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size <= limit) return void chunks.push(chunk);
      over = true;
      chunks.length = 0;
      reject(tooLarge());
    });
    req.on("error", reject);
    // A client gone mid-body may end the stream with neither "end" nor "error".
    req.on("close", () => {
      if (!req.complete) reject(new Error("client closed the connection before the body was complete"));
    });
    req.on("end", () => {
      if (over) return;
      let text: string;
      try {
        text = utf8.decode(Buffer.concat(chunks));
      } catch {
        return reject(invalidRequest("request body is not valid UTF-8"));
      }
      try {
        resolve(JSON.parse(text));
      } catch (err) {
        reject(invalidRequest(`request body is not valid JSON: ${(err as Error).message}`));
      }
    });
  });
}
