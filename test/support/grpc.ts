import { type Client, credentials, loadPackageDefinition, type ServiceError } from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { AnnClient, IndexerClient, QueryEncoderClient } from "@tandem/proto";
import { protoPath as healthProtoPath } from "grpc-health-check";

const insecure = credentials.createInsecure();
export const encoderClient = (port: number) => new QueryEncoderClient(`127.0.0.1:${port}`, insecure);
export const annClient = (port: number) => new AnnClient(`127.0.0.1:${port}`, insecure);
export const indexerClient = (port: number) => new IndexerClient(`127.0.0.1:${port}`, insecure);

type HealthClient = Client & {
  check(
    req: { service: string },
    opts: { deadline: number },
    cb: (err: ServiceError | null, res: { status: string }) => void,
  ): void;
};
const healthPkg = loadPackageDefinition(protoLoader.loadSync(healthProtoPath, { enums: String })) as unknown as {
  grpc: { health: { v1: { Health: new (addr: string, creds: typeof insecure) => HealthClient } } };
};

/** grpc.health.v1 Check: "SERVING" | "NOT_SERVING" | ..., or "UNAVAILABLE" when nothing answers. */
export function checkHealth(port: number, service = "", timeoutMs = 1000): Promise<string> {
  const client = new healthPkg.grpc.health.v1.Health(`127.0.0.1:${port}`, insecure);
  return new Promise((resolve) => {
    client.check({ service }, { deadline: Date.now() + timeoutMs }, (err, res) => {
      client.close();
      resolve(err ? "UNAVAILABLE" : res.status);
    });
  });
}

/** Resolves with the error of a call expected to fail; fails the test when it succeeds. */
export async function expectStatus(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error("expected the call to fail, it succeeded");
}
