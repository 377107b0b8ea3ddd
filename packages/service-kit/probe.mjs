// Container HEALTHCHECK: `node packages/service-kit/probe.mjs [port]` exits 0
// when grpc.health.v1 on 127.0.0.1 reports SERVING. Plain JS (no tsx start-up)
// so it is cheap to run every few seconds. It dials HEALTH_PORT when set (the
// plaintext health listener, always there when TLS is on), else PORT.
import { credentials, loadPackageDefinition } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { protoPath } from "grpc-health-check";

const port = process.argv[2] || (process.env.HEALTH_PORT !== "0" && process.env.HEALTH_PORT) || process.env.PORT;
if (!port) {
  process.stderr.write("probe: no port (argument, HEALTH_PORT or PORT)\n");
  process.exit(2);
}
const pkg = loadPackageDefinition(loadSync(protoPath, { enums: String }));
const client = new pkg.grpc.health.v1.Health(`127.0.0.1:${port}`, credentials.createInsecure());
client.check({ service: "" }, { deadline: Date.now() + 2000 }, (err, res) => {
  client.close();
  const state = err ? `error: ${err.details || err.message}` : res.status;
  process.stdout.write(`${state}\n`);
  process.exit(state === "SERVING" ? 0 : 1);
});
