import {
  type ChannelCredentials,
  type Client,
  credentials,
  loadPackageDefinition,
  type ServiceError,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { protoPath } from "grpc-health-check";

/**
 * grpc.health.v1 Check, with the health.proto that grpc-health-check ships (the same one the
 * services serve through service-kit), loaded on the first check rather than at every CLI start.
 */
export type HealthStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN" | "UNAVAILABLE";

type HealthClient = Client & {
  check(
    request: { service: string },
    options: { deadline: number },
    cb: (err: ServiceError | null, response: { status: HealthStatus }) => void,
  ): void;
};
type HealthClientConstructor = new (addr: string, creds: ChannelCredentials) => HealthClient;

let Health: HealthClientConstructor | undefined;
function healthClient(): HealthClientConstructor {
  if (!Health) {
    // Enums as names, defaults on: proto3 omits a zero enum, which then reads back as "UNKNOWN".
    const pkg = loadPackageDefinition(loadSync(protoPath, { enums: String, defaults: true })) as unknown as {
      grpc: { health: { v1: { Health: HealthClientConstructor } } };
    };
    Health = pkg.grpc.health.v1.Health;
  }
  return Health;
}

/** The health of the server at `addr`, or "UNAVAILABLE" when nothing answers in time. */
export function checkHealth(addr: string, timeoutMs = 1000, service = ""): Promise<HealthStatus> {
  const client = new (healthClient())(addr, credentials.createInsecure());
  return new Promise((resolve) => {
    client.check({ service }, { deadline: Date.now() + timeoutMs }, (err, response) => {
      client.close();
      resolve(err ? "UNAVAILABLE" : (response.status ?? "UNKNOWN"));
    });
  });
}
