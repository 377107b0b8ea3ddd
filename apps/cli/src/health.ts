import { type Client, credentials, makeGenericClientConstructor, type ServiceError } from "@grpc/grpc-js";

/**
 * grpc.health.v1 Check, spoken directly: the request is `{string service = 1}`
 * and the answer `{ServingStatus status = 1}`, small enough to encode by hand
 * instead of loading health.proto at every CLI start.
 */
export type HealthStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN" | "UNAVAILABLE";
const STATUS: HealthStatus[] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

const HealthClient = makeGenericClientConstructor(
  {
    check: {
      path: "/grpc.health.v1.Health/Check",
      requestStream: false,
      responseStream: false,
      requestSerialize: (service: string) => {
        const bytes = Buffer.from(service, "utf8");
        // Field 1, wire type 2; names here are far below 128 bytes (one-byte length).
        return bytes.length ? Buffer.concat([Buffer.from([0x0a, bytes.length]), bytes]) : Buffer.alloc(0);
      },
      requestDeserialize: (b: Buffer) => b.toString("utf8"),
      responseSerialize: (s: number) => Buffer.from([0x08, s]),
      // proto3 omits a zero enum: an empty body means UNKNOWN.
      responseDeserialize: (b: Buffer) => (b.length >= 2 && b[0] === 0x08 ? (b[1] as number) : 0),
    },
  },
  "grpc.health.v1.Health",
);

type CheckFn = (
  service: string,
  options: { deadline: number },
  cb: (err: ServiceError | null, status: number) => void,
) => void;

/** The health of the server at `addr`, or "UNAVAILABLE" when nothing answers in time. */
export function checkHealth(addr: string, timeoutMs = 1000, service = ""): Promise<HealthStatus> {
  const client = new HealthClient(addr, credentials.createInsecure()) as unknown as Client & {
    check: CheckFn;
  };
  return new Promise((resolve) => {
    client.check(service, { deadline: Date.now() + timeoutMs }, (err, status) => {
      client.close();
      resolve(err ? "UNAVAILABLE" : (STATUS[status] ?? "UNKNOWN"));
    });
  });
}
