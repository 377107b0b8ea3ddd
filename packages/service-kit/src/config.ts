import { z } from "zod";
import { type ClientSecurity, requireKeyPair, upstreamSecurity } from "./security.js";

/**
 * Configuration comes from environment variables, validated once at start-up.
 * A service declares a zod object whose keys are the variable names; every
 * field carries `.describe()` text so a failed start names what is wrong and
 * what the variable is for.
 */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

export function loadConfig<S extends z.ZodObject>(schema: S, env: NodeJS.ProcessEnv = process.env): z.infer<S> {
  const raw: Record<string, string | undefined> = {};
  for (const key of Object.keys(schema.shape)) {
    const value = env[key];
    raw[key] = value === "" ? undefined : value;
  }
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => {
    const key = String(issue.path[0] ?? "");
    const field = schema.shape[key] as z.ZodType | undefined;
    const what = field?.description ? ` (${field.description})` : "";
    return `${key}=${JSON.stringify(raw[key] ?? "")}: ${issue.message}${what}`;
  });
  throw new ConfigError(problems);
}

/** Environment-variable field builders: strings in, typed values out. */
export const env = {
  int: (def: number, min: number, max: number, description: string) =>
    z.coerce.number().int().min(min).max(max).default(def).describe(description),
  number: (def: number, min: number, max: number, description: string) =>
    z.coerce.number().min(min).max(max).default(def).describe(description),
  port: (def: number, description: string) =>
    z.coerce.number().int().min(0).max(65535).default(def).describe(description),
  string: (def: string, description: string) => z.string().default(def).describe(description),
  requiredString: (description: string) => z.string().min(1).describe(description),
  bool: (def: boolean, description: string) =>
    z
      .enum(["true", "false", "1", "0"])
      .default(def ? "true" : "false")
      .transform((v) => v === "true" || v === "1")
      .describe(description),
  oneOf: <const T extends readonly [string, ...string[]]>(values: T, def: T[number], description: string) =>
    z
      .enum(values)
      .default(def as never)
      .describe(description),
};

/** Server-side variables; part of commonConfig. Empty string = off. */
export const securityConfig = {
  TLS_CERT_FILE: env.string(
    "",
    "PEM certificate chain of this service; with TLS_KEY_FILE turns TLS on (server and client identity)",
  ),
  TLS_KEY_FILE: env.string("", "PEM private key of TLS_CERT_FILE"),
  TLS_CLIENT_CA_FILE: env.string(
    "",
    "PEM CA bundle; when set, callers must present a client certificate it signed (mTLS)",
  ),
  AUTH_TOKENS_FILE: env.string(
    "",
    "file of accepted bearer tokens, one per line ('token' or 'name token'; # comments); when set every RPC but health needs one",
  ),
  AUTH_TOKEN_FILE: env.string("", "file holding the bearer token this service sends to its upstreams"),
  HEALTH_PORT: env.port(
    0,
    "extra plaintext port serving only grpc.health.v1 (kubelet gRPC probes cannot speak TLS); 0: none",
  ),
};

/**
 * Client-side variables of one upstream, e.g. `upstreamConfig("ENCODER")` gives
 * ENCODER_TLS_CA_FILE and ENCODER_TLS_SERVER_NAME. Spread into a service schema.
 */
export function upstreamConfig<P extends string>(prefix: P): UpstreamConfigFields<P> {
  return {
    [`${prefix}_TLS_CA_FILE`]: env.string(
      "",
      `PEM CA bundle that signed the ${prefix} server's certificate; when set, calls use TLS`,
    ),
    [`${prefix}_TLS_SERVER_NAME`]: env.string(
      "",
      `name expected in the ${prefix} server certificate when it differs from the address host`,
    ),
  } as UpstreamConfigFields<P>;
}

/** The suffixes upstreamConfig gives each upstream prefix (`_TLS_CA_FILE`, `_TLS_SERVER_NAME`). */
const UPSTREAM_SUFFIXES = Object.keys(upstreamConfig(""));

/**
 * Whether `name` is one of the security variables: a server's (securityConfig: TLS, tokens, the
 * plaintext health port) or an upstream's (`<PREFIX>_TLS_CA_FILE`, `<PREFIX>_TLS_SERVER_NAME`).
 */
export function isSecurityVariable(name: string): boolean {
  return (
    Object.hasOwn(securityConfig, name) ||
    UPSTREAM_SUFFIXES.some((suffix) => name.length > suffix.length && name.endsWith(suffix))
  );
}

type UpstreamConfigFields<P extends string> = {
  [K in `${P}_TLS_CA_FILE` | `${P}_TLS_SERVER_NAME`]: z.ZodDefault<z.ZodString>;
};

/**
 * How a client outside the services (the `tandem` CLI) reaches upstream `prefix`: the variables a
 * service reads for that upstream (`<prefix>_TLS_CA_FILE`, `<prefix>_TLS_SERVER_NAME`,
 * TLS_CERT_FILE/TLS_KEY_FILE for mTLS, AUTH_TOKEN_FILE), validated the same way.
 */
export function upstreamSecurityFromEnv<P extends string>(
  prefix: P,
  vars: NodeJS.ProcessEnv = process.env,
): ClientSecurity {
  const schema = z.object({
    ...upstreamConfig(prefix),
    TLS_CERT_FILE: securityConfig.TLS_CERT_FILE,
    TLS_KEY_FILE: securityConfig.TLS_KEY_FILE,
    AUTH_TOKEN_FILE: securityConfig.AUTH_TOKEN_FILE,
  });
  // Generic keys defeat zod's inferred type; every field is a string with a default.
  const config = loadConfig(schema, vars) as Record<string, string>;
  requireKeyPair(config);
  return upstreamSecurity(config as unknown as Parameters<typeof upstreamSecurity<P>>[0], prefix);
}

/** The variables every service shares. */
export const commonConfig = {
  HOST: env.string("127.0.0.1", "interface the gRPC server binds to (0.0.0.0 in containers)"),
  LOG_LEVEL: env.oneOf(["trace", "debug", "info", "warn", "error", "fatal", "silent"], "info", "log level"),
  METRICS_PORT: env.port(0, "Prometheus /metrics port; 0 disables the endpoint"),
  MAX_MESSAGE_BYTES: env.int(16 * 1024 * 1024, 1024, 1024 * 1024 * 1024, "largest gRPC message accepted or sent"),
  SHUTDOWN_GRACE_MS: env.int(10_000, 0, 600_000, "how long shutdown waits for in-flight calls to drain"),
  ...securityConfig,
};
