import assert from "node:assert/strict";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { credentials, Metadata, status } from "@grpc/grpc-js";
import { type EncodeRequest, type EncodeResponse, QueryEncoderClient, TextKind } from "@tandem/proto";
import { encoderConfig, type RunningEncoder, startQueryEncoder } from "@tandem/query-encoder";
import { bearerMetadata, type ClientSecurity, clientTransport, serverSecurity, unary } from "@tandem/service-kit";
import { makeTestPki, type TestPki } from "../support/certs.js";
import { tandem } from "../support/cli.js";
import { checkHealth, expectStatus } from "../support/grpc.js";
import { freePort } from "../support/net.js";
import { bundleDir } from "../support/paths.js";

/**
 * Security on the real query-encoder: bearer tokens (plaintext and over mTLS),
 * TLS and mTLS round trips with certificates generated for this run.
 */
const BUNDLE = bundleDir("all-minilm-l6-v2");
const GOOD = "s3cret-token-for-tests";

function start(vars: Record<string, string>): Promise<RunningEncoder> {
  return startQueryEncoder(
    encoderConfig({
      MODEL_DIR: BUNDLE,
      PORT: "0",
      LOG_LEVEL: "silent",
      INTRA_OP_THREADS: "1",
      MAX_BATCH_REQUESTS: "4",
      ...vars,
    }),
  );
}

function client(port: number, sec: ClientSecurity = {}, host = "127.0.0.1"): QueryEncoderClient {
  const t = clientTransport(1 << 20, sec);
  return new QueryEncoderClient(`${host}:${port}`, t.credentials, t.options);
}

const encode = (c: QueryEncoderClient, metadata?: Metadata) =>
  unary<EncodeRequest, EncodeResponse>(
    c.encode.bind(c),
    { texts: ["does exercise lower blood pressure"], kind: TextKind.TEXT_KIND_QUERY },
    { timeoutMs: 10_000, metadata },
  );

let tmp: string;
let pki: TestPki;
let tokensFile: string;
let tokenFile: string;
let wrongTokenFile: string;

before(() => {
  tmp = mkdtempSync(join(tmpdir(), "tandem-sec-"));
  pki = makeTestPki();
  tokensFile = join(tmp, "tokens");
  writeFileSync(tokensFile, `# accepted callers\nann ${GOOD}\nother-token-2\n`);
  tokenFile = join(tmp, "token");
  writeFileSync(tokenFile, `${GOOD}\n`);
  wrongTokenFile = join(tmp, "wrong");
  writeFileSync(wrongTokenFile, "not-the-token");
});
after(() => {
  rmSync(tmp, { recursive: true, force: true });
  pki.cleanup();
});

describe("bearer tokens (plaintext)", () => {
  let svc: RunningEncoder;
  before(async () => {
    svc = await start({ AUTH_TOKENS_FILE: tokensFile });
  });
  after(() => svc.stop());

  it("refuses a call without a token with UNAUTHENTICATED", async () => {
    const c = client(svc.port);
    const err = await expectStatus(encode(c));
    assert.equal(err.code, status.UNAUTHENTICATED);
    assert.match(err.details, /missing bearer token/);
    c.close();
  });

  it("refuses a wrong token and a malformed authorization header", async () => {
    const c = client(svc.port, { tokenFile: wrongTokenFile });
    const err = await expectStatus(encode(c));
    assert.equal(err.code, status.UNAUTHENTICATED);
    assert.match(err.details, /invalid bearer token/);
    assert.ok(!err.details.includes("not-the-token"), "the refusal does not echo the token");
    c.close();
    const bare = client(svc.port);
    const md = new Metadata();
    md.set("authorization", `Basic ${GOOD}`);
    assert.equal((await expectStatus(encode(bare, md))).code, status.UNAUTHENTICATED);
    bare.close();
  });

  it("accepts the right token, from a token file or as per-call metadata", async () => {
    const c = client(svc.port, { tokenFile });
    const res = await encode(c);
    assert.equal(res.embeddings.length, 1);
    c.close();
    const bare = client(svc.port);
    assert.equal((await encode(bare, bearerMetadata("other-token-2"))).embeddings.length, 1);
    bare.close();
  });

  it("keeps grpc health open (probes carry no token) and reports SERVING", async () => {
    assert.equal(await checkHealth(svc.port), "SERVING");
    assert.equal(await checkHealth(svc.port, "tandem.v1.QueryEncoder"), "SERVING");
  });

  it("picks up a rotated tokens file without a restart", async () => {
    const next = join(tmp, "tokens.next");
    writeFileSync(next, "rotated-token\n");
    renameSync(next, tokensFile); // atomic swap, as the kubelet does for a Secret
    await new Promise((r) => setTimeout(r, 1100)); // the file is checked at most once a second
    const bare = client(svc.port);
    assert.equal((await encode(bare, bearerMetadata("rotated-token"))).embeddings.length, 1);
    assert.equal((await expectStatus(encode(bare, bearerMetadata(GOOD)))).code, status.UNAUTHENTICATED);
    bare.close();
    writeFileSync(tokensFile, `ann ${GOOD}\nother-token-2\n`);
  });
});

describe("TLS", () => {
  let svc: RunningEncoder;
  let healthPort: number;
  before(async () => {
    healthPort = await freePort();
    svc = await start({ TLS_CERT_FILE: pki.cert, TLS_KEY_FILE: pki.key, HEALTH_PORT: String(healthPort) });
  });
  after(() => svc.stop());

  it("round trip over TLS with the test CA", async () => {
    const c = client(svc.port, { caFile: pki.caCert }, "localhost");
    const res = await encode(c);
    assert.equal(res.dims, 384);
    c.close();
  });

  it("a server name override lets a client dial an IP whose name differs", async () => {
    const c = client(svc.port, { caFile: pki.caCert, serverName: "localhost" });
    assert.equal((await encode(c)).dims, 384);
    c.close();
  });

  it("serves plaintext health on HEALTH_PORT for kubelet probes, and nothing else there", async () => {
    assert.equal(await checkHealth(healthPort), "SERVING");
    assert.equal(await checkHealth(healthPort, "tandem.v1.QueryEncoder"), "SERVING");
    assert.equal(await checkHealth(svc.port), "UNAVAILABLE", "the main port speaks TLS only");
    const c = client(healthPort);
    assert.equal((await expectStatus(encode(c))).code, status.UNIMPLEMENTED);
    c.close();
  });

  it("a plaintext client and a client trusting another CA both fail", async () => {
    const plain = client(svc.port);
    assert.equal((await expectStatus(encode(plain))).code, status.UNAVAILABLE);
    plain.close();
    const rogue = client(svc.port, { caFile: pki.rogueCaCert }, "localhost");
    assert.equal((await expectStatus(encode(rogue))).code, status.UNAVAILABLE);
    rogue.close();
  });
});

describe("mTLS + tokens", () => {
  let svc: RunningEncoder;
  before(async () => {
    svc = await start({
      TLS_CERT_FILE: pki.cert,
      TLS_KEY_FILE: pki.key,
      TLS_CLIENT_CA_FILE: pki.caCert,
      AUTH_TOKENS_FILE: tokensFile,
    });
  });
  after(() => svc.stop());

  it("accepts a client certificate from the CA with the right token", async () => {
    const c = client(svc.port, { caFile: pki.caCert, certFile: pki.cert, keyFile: pki.key, tokenFile }, "localhost");
    assert.equal((await encode(c)).embeddings.length, 1);
    c.close();
  });

  it("the right certificate without a token is UNAUTHENTICATED", async () => {
    const c = client(svc.port, { caFile: pki.caCert, certFile: pki.cert, keyFile: pki.key }, "localhost");
    assert.equal((await expectStatus(encode(c))).code, status.UNAUTHENTICATED);
    c.close();
  });

  it("refuses a client without a certificate, or with one from another CA", async () => {
    const none = client(svc.port, { caFile: pki.caCert, tokenFile }, "localhost");
    assert.equal((await expectStatus(encode(none))).code, status.UNAVAILABLE);
    none.close();
    const rogue = client(
      svc.port,
      { caFile: pki.caCert, certFile: pki.rogueCert, keyFile: pki.rogueKey, tokenFile },
      "localhost",
    );
    assert.equal((await expectStatus(encode(rogue))).code, status.UNAVAILABLE);
    rogue.close();
  });

  const args = () => ["encode", "does exercise lower blood pressure", "--json", "--encoder", `127.0.0.1:${svc.port}`];

  it("lets the tandem CLI in with the variables the services use for the same upstream", async () => {
    const res = await tandem(args(), {
      ENCODER_TLS_CA_FILE: pki.caCert,
      TLS_CERT_FILE: pki.cert,
      TLS_KEY_FILE: pki.key,
      AUTH_TOKEN_FILE: tokenFile,
    });
    assert.equal(res.code, 0, res.stderr);
    const out = JSON.parse(res.stdout) as { dims: number; embeddings: Array<{ vector: number[] }> };
    assert.equal(out.embeddings[0]?.vector.length, out.dims);
  });

  it("the tandem CLI says UNAUTHENTICATED without the token, and names the variable of a half-set key pair or a missing file", async () => {
    const noToken = await tandem(args(), {
      ENCODER_TLS_CA_FILE: pki.caCert,
      TLS_CERT_FILE: pki.cert,
      TLS_KEY_FILE: pki.key,
    });
    assert.notEqual(noToken.code, 0);
    assert.match(noToken.stderr, /UNAUTHENTICATED/);
    const halfCert = await tandem(args(), { ENCODER_TLS_CA_FILE: pki.caCert, TLS_CERT_FILE: pki.cert });
    assert.notEqual(halfCert.code, 0);
    assert.match(halfCert.stderr, /TLS_CERT_FILE and TLS_KEY_FILE go together/);
    const noCa = await tandem(args(), { ENCODER_TLS_CA_FILE: join(tmp, "missing-ca.pem"), AUTH_TOKEN_FILE: tokenFile });
    assert.notEqual(noCa.code, 0);
    assert.match(noCa.stderr, /ENCODER_TLS_CA_FILE=".*missing-ca\.pem": no such file/);
  });
});

describe("server security config", () => {
  const base = { TLS_CERT_FILE: "", TLS_KEY_FILE: "", TLS_CLIENT_CA_FILE: "", AUTH_TOKENS_FILE: "" };
  it("refuses half a key pair, mTLS without TLS, and an empty tokens file", () => {
    assert.throws(() => serverSecurity({ ...base, TLS_CERT_FILE: "/x.crt" }), /go together/);
    assert.throws(() => serverSecurity({ ...base, TLS_CLIENT_CA_FILE: "/ca.crt" }), /needs TLS_CERT_FILE/);
    const empty = join(tmp, "empty");
    writeFileSync(empty, "# nobody\n");
    assert.throws(() => serverSecurity({ ...base, AUTH_TOKENS_FILE: empty }), /holds no token/);
  });

  it("plaintext by default", () => {
    const s = serverSecurity(base);
    assert.equal(s.tokens, null);
    assert.equal(s.describe, "plaintext, no auth");
    assert.ok(credentials.createInsecure());
  });
});
