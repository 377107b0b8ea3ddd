import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Test PKI made at test time with openssl (no key material in the repo): a CA,
 * a leaf for "localhost"/127.0.0.1 usable as server and client certificate,
 * and a second, unrelated CA with its own leaf (a caller the server must refuse).
 */
export interface TestPki {
  dir: string;
  caCert: string;
  cert: string;
  key: string;
  rogueCaCert: string;
  rogueCert: string;
  rogueKey: string;
  cleanup(): void;
}

function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

function makeCa(dir: string, name: string): void {
  openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.crt`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
}

function makeLeaf(dir: string, ca: string, name: string): void {
  writeFileSync(
    join(dir, `${name}.ext`),
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
  );
  openssl(dir, [
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-subj",
    `/CN=${name}`,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
  ]);
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${ca}.crt`,
    "-CAkey",
    `${ca}.key`,
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    `${name}.ext`,
    "-out",
    `${name}.crt`,
  ]);
}

export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), "tandem-pki-"));
  makeCa(dir, "ca");
  makeLeaf(dir, "ca", "leaf");
  makeCa(dir, "rogue-ca");
  makeLeaf(dir, "rogue-ca", "rogue");
  const p = (f: string) => join(dir, f);
  return {
    dir,
    caCert: p("ca.crt"),
    cert: p("leaf.crt"),
    key: p("leaf.key"),
    rogueCaCert: p("rogue-ca.crt"),
    rogueCert: p("rogue.crt"),
    rogueKey: p("rogue.key"),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
