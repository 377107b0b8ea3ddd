import { createHash, timingSafeEqual } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import {
  type ChannelCredentials,
  credentials,
  InterceptingCall,
  type Interceptor,
  Metadata,
  ResponderBuilder,
  ServerCredentials,
  ServerInterceptingCall,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
  ServerListenerBuilder,
  type ServerMethodDefinition,
  status,
} from "@grpc/grpc-js";

/**
 * Transport security and caller authentication, for every service alike.
 *
 * - TLS: a server with TLS_CERT_FILE + TLS_KEY_FILE speaks TLS; with
 *   TLS_CLIENT_CA_FILE as well it requires a client certificate signed by that
 *   CA (mTLS). A client turns TLS on per upstream with `<UPSTREAM>_TLS_CA_FILE`
 *   and presents the service's own TLS_CERT_FILE/TLS_KEY_FILE as its client
 *   certificate (one workload identity, like a mesh sidecar would).
 * - Tokens: with AUTH_TOKENS_FILE a server requires `authorization: Bearer <t>`
 *   metadata on every call except grpc.health.v1 (kubelet probes carry no
 *   token). A client sends the token in AUTH_TOKEN_FILE. Both files are
 *   re-read when they change, so a rotated Kubernetes Secret takes effect
 *   without a restart.
 */

export interface ServerSecurityConfig {
  TLS_CERT_FILE: string;
  TLS_KEY_FILE: string;
  TLS_CLIENT_CA_FILE: string;
  AUTH_TOKENS_FILE: string;
  HEALTH_PORT?: number;
}

export interface ServerSecurity {
  credentials: ServerCredentials;
  /** null: no token required. */
  tokens: TokenSet | null;
  /** One line for the start-up log. */
  describe: string;
  /** > 0: a plaintext health-only listener on this port (see HEALTH_PORT). */
  healthPort?: number;
}

/** A certificate without its key, or a key without its certificate, is a configuration error (server or client). */
export function requireKeyPair(config: { TLS_CERT_FILE?: string; TLS_KEY_FILE?: string }): void {
  if (!config.TLS_CERT_FILE !== !config.TLS_KEY_FILE) {
    throw new Error("TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither");
  }
}

/** What `startServer` needs, from a service's parsed config: spread it into the options. */
export function serverSecurity(config: ServerSecurityConfig): ServerSecurity {
  const tokens = config.AUTH_TOKENS_FILE ? new TokenSet(config.AUTH_TOKENS_FILE) : null;
  requireKeyPair(config);
  if (!config.TLS_CERT_FILE) {
    if (config.TLS_CLIENT_CA_FILE) throw new Error("TLS_CLIENT_CA_FILE (mTLS) needs TLS_CERT_FILE and TLS_KEY_FILE");
    return {
      credentials: ServerCredentials.createInsecure(),
      healthPort: config.HEALTH_PORT ?? 0,
      tokens,
      describe: tokens ? "plaintext, bearer tokens (use only inside an encrypting mesh)" : "plaintext, no auth",
    };
  }
  const ca = config.TLS_CLIENT_CA_FILE ? readFileSync(config.TLS_CLIENT_CA_FILE) : null;
  return {
    credentials: ServerCredentials.createSsl(
      ca,
      [{ cert_chain: readFileSync(config.TLS_CERT_FILE), private_key: readFileSync(config.TLS_KEY_FILE) }],
      ca !== null,
    ),
    healthPort: config.HEALTH_PORT ?? 0,
    tokens,
    describe: `${ca ? "mTLS" : "TLS"}${tokens ? ", bearer tokens" : ""}`,
  };
}

/** Methods callable without a token: probes must work before any Secret is wired. */
const EXEMPT_PREFIX = "/grpc.health.v1.Health/";

/** Refuses, with UNAUTHENTICATED, every call but health that lacks a token from `tokens`. */
export function authInterceptor(tokens: TokenSet): ServerInterceptor {
  return (method: ServerMethodDefinition<unknown, unknown>, call: ServerInterceptingCallInterface) => {
    if (method.path.startsWith(EXEMPT_PREFIX)) return new ServerInterceptingCall(call);
    const listener = new ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        const problem = tokens.check(metadata.get("authorization")[0]);
        if (problem === null) next(metadata);
        else call.sendStatus({ code: status.UNAUTHENTICATED, details: problem });
      })
      .build();
    return new ServerInterceptingCall(call, new ResponderBuilder().withStart((next) => next(listener)).build());
  };
}

/**
 * The accepted tokens, kept as SHA-256 digests and compared in constant time.
 * The file is stat'ed at most once a second and re-read when its mtime or size
 * changes (a mounted Secret is swapped atomically by the kubelet).
 */
export class TokenSet {
  private digests: Buffer[] = [];
  private stamp = "";
  private checkedAt = 0;

  constructor(private readonly file: string) {
    this.reload(true);
    if (this.digests.length === 0) throw new Error(`AUTH_TOKENS_FILE ${file} holds no token`);
  }

  /** null when accepted, else the reason (sent to the caller: it names no token). */
  check(header: string | Buffer | undefined): string | null {
    this.reload(false);
    if (typeof header !== "string" || header === "") return "missing bearer token (authorization metadata)";
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m?.[1]) return "authorization metadata is not 'Bearer <token>'";
    const digest = sha256(m[1]);
    let ok = false;
    // No early exit: the time taken does not tell which entry matched.
    for (const d of this.digests) ok = timingSafeEqual(d, digest) || ok;
    return ok ? null : "invalid bearer token";
  }

  private reload(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.checkedAt < 1000) return;
    this.checkedAt = now;
    let stamp: string;
    try {
      const st = statSync(this.file);
      stamp = `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch (err) {
      if (force) throw err;
      return; // keep the last good set while a Secret is being swapped
    }
    if (stamp === this.stamp) return;
    this.stamp = stamp;
    this.digests = parseTokens(readFileSync(this.file, "utf8")).map(sha256);
  }
}

function parseTokens(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const fields = line.split(/\s+/);
    const token = fields[fields.length - 1];
    if (token) out.push(token);
  }
  return out;
}

const sha256 = (s: string) => createHash("sha256").update(s).digest();

// ---- client side -------------------------------------------------------------

export interface ClientSecurity {
  /** PEM CA bundle of the upstream; TLS when set. */
  caFile?: string;
  /** Client certificate + key (mTLS), used only with caFile. */
  certFile?: string;
  keyFile?: string;
  /** Expected name in the server certificate (grpc.ssl_target_name_override). */
  serverName?: string;
  /** File whose content is sent as `authorization: Bearer <content>`. */
  tokenFile?: string;
}

/**
 * The client security of the upstream `prefix` from a parsed service config:
 * `upstreamSecurity(config, "ENCODER")` reads ENCODER_TLS_CA_FILE,
 * ENCODER_TLS_SERVER_NAME, TLS_CERT_FILE/TLS_KEY_FILE and AUTH_TOKEN_FILE.
 * A variable naming a file that does not exist is refused here, by name.
 */
export function upstreamSecurity<P extends string>(
  config: { [K in `${P}_TLS_CA_FILE` | `${P}_TLS_SERVER_NAME`]: string } & {
    TLS_CERT_FILE: string;
    TLS_KEY_FILE: string;
    AUTH_TOKEN_FILE: string;
  },
  prefix: P,
): ClientSecurity {
  const c = config as unknown as Record<string, string>;
  const files = [`${prefix}_TLS_CA_FILE`, "TLS_CERT_FILE", "TLS_KEY_FILE", "AUTH_TOKEN_FILE"];
  const missing = files.filter((key) => c[key] && !existsSync(c[key]));
  if (missing.length > 0) {
    throw new Error(missing.map((key) => `${key}=${JSON.stringify(c[key])}: no such file`).join("; "));
  }
  return {
    caFile: c[`${prefix}_TLS_CA_FILE`] || undefined,
    serverName: c[`${prefix}_TLS_SERVER_NAME`] || undefined,
    certFile: config.TLS_CERT_FILE || undefined,
    keyFile: config.TLS_KEY_FILE || undefined,
    tokenFile: config.AUTH_TOKEN_FILE || undefined,
  };
}

/** Channel credentials: insecure unless `caFile` is set. */
export function clientCredentials(sec: ClientSecurity = {}): ChannelCredentials {
  if (!sec.caFile) return credentials.createInsecure();
  const mtls = sec.certFile && sec.keyFile;
  return credentials.createSsl(
    readFileSync(sec.caFile),
    mtls ? readFileSync(sec.keyFile as string) : null,
    mtls ? readFileSync(sec.certFile as string) : null,
  );
}

/** Adds the bearer token of `tokenFile` (re-read when it changes) to every call. */
export function bearerInterceptor(tokenFile: string): Interceptor {
  const token = new FileValue(tokenFile);
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("authorization", `Bearer ${token.get()}`);
        next(metadata, listener);
      },
    });
}

/** Per-call metadata carrying a bearer token, for callers that build Metadata themselves. */
export function bearerMetadata(token: string, metadata = new Metadata()): Metadata {
  metadata.set("authorization", `Bearer ${token}`);
  return metadata;
}

class FileValue {
  private value = "";
  private stamp = "";
  private checkedAt = 0;
  constructor(private readonly file: string) {
    this.get();
    if (!this.value) throw new Error(`AUTH_TOKEN_FILE ${file} is empty`);
  }
  get(): string {
    const now = Date.now();
    if (now - this.checkedAt >= 1000) {
      this.checkedAt = now;
      try {
        const st = statSync(this.file);
        const stamp = `${st.mtimeMs}:${st.size}:${st.ino}`;
        if (stamp !== this.stamp) {
          this.stamp = stamp;
          this.value = readFileSync(this.file, "utf8").trim();
        }
      } catch (err) {
        if (!this.value) throw err;
      }
    }
    return this.value;
  }
}
