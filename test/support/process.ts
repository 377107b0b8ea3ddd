import { type ChildProcess, spawn } from "node:child_process";
import { checkHealth } from "./grpc.js";
import { REPO_ROOT } from "./paths.js";

export interface ServiceProcess {
  child: ChildProcess;
  port: number;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Runs a service's main.ts as its own process (the way it runs in production)
 * and waits until its health service reports SERVING.
 */
export async function startServiceProcess(
  entry: string,
  port: number,
  env: Record<string, string>,
  opts: { healthService?: string; timeoutMs?: number /** Node flags, e.g. --cpu-prof. */; execArgv?: string[] } = {},
): Promise<ServiceProcess> {
  const child = spawn(
    process.execPath,
    [...(opts.execArgv ?? []), "--conditions=tandem-src", "--import", "tsx", entry],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, LOG_LEVEL: "warn", ...env, PORT: String(port) },
      stdio: ["ignore", "inherit", "inherit"],
    },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  while ((await checkHealth(port, opts.healthService ?? "", 500)) !== "SERVING") {
    if (child.exitCode !== null) throw new Error(`${entry} exited with code ${child.exitCode} before serving`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${entry} did not report SERVING within ${opts.timeoutMs ?? 120_000} ms`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    child,
    port,
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
