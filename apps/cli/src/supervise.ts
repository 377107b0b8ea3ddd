import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { checkHealth } from "./health.js";
import { REPO_ROOT } from "./paths.js";

/** When a crashed service is started again, and when the supervisor stops trying. */
export interface RestartPolicy {
  /** Crashes of one service tolerated within `windowMs`, each followed by a restart; one more gives up. */
  maxRestarts: number;
  windowMs: number;
  /** Wait before a restart: `backoffMs`, doubled for each earlier crash still in the window, at most `maxBackoffMs`. */
  backoffMs: number;
  maxBackoffMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = {
  maxRestarts: 5,
  windowMs: 300_000,
  backoffMs: 1000,
  maxBackoffMs: 30_000,
};

/** A service of this repository run as a child process from its own entry point. */
export interface ServiceSpec {
  name: string;
  /** Entry point, relative to the repository root. */
  entry: string;
  /** Where it answers grpc.health.v1. */
  addr: string;
  env: NodeJS.ProcessEnv;
  /** Its stdout and stderr are appended here. */
  log: string;
  /** How long it may take to report SERVING: models load and warm up first. */
  readyTimeoutMs: number;
}

type Phase = "starting" | "serving" | "backoff" | "restarting";

interface Supervised {
  spec: ServiceSpec;
  phase: Phase;
  child: ChildProcess;
  exited: Promise<void>;
  /** Wall clock of each crash still inside the policy's window. */
  crashes: number[];
  restarts: number;
  timer?: NodeJS.Timeout;
}

export function logTail(path: string, lines = 15): string {
  if (!existsSync(path)) return "";
  return readFileSync(path, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
}

/**
 * Runs services as child processes, as a process supervisor does: a service that dies after it
 * served is started again after an exponential backoff while the others keep serving, and after
 * more crashes than `policy` allows within its window the supervisor gives up (`gaveUp` settles
 * and the caller decides what stops). Every start, crash and restart is told to `say`.
 */
export class Supervisor {
  private readonly services: Supervised[] = [];
  private stopping = false;
  private giveUp: (reason: Error) => void = () => {};
  /** Settles with the reason once a service crashed more often than the policy allows. */
  readonly gaveUp = new Promise<Error>((resolve) => {
    this.giveUp = resolve;
  });

  constructor(
    private readonly policy: RestartPolicy,
    private readonly say: (line: string) => void,
  ) {}

  /**
   * Starts a service and resolves once it reports SERVING. A first start that fails is not
   * retried: a service that cannot start once (a bad bundle, a port taken) would not on a
   * retry either, and its log says why.
   */
  async start(spec: ServiceSpec): Promise<void> {
    const s: Supervised = {
      spec,
      phase: "starting",
      crashes: [],
      restarts: 0,
      ...this.spawn(spec, (code, signal) => this.exited(s, code, signal)),
    };
    this.services.push(s);
    this.say(`starting ${spec.name} on ${spec.addr} (pid ${s.child.pid}) …`);
    await waitServing(s);
    s.phase = "serving";
    this.say(`  ${spec.name} is serving`);
  }

  /** Stops every service, last started first (nothing then writes into a service while it shuts down); no more restarts. */
  async stopAll(graceMs = 20_000): Promise<void> {
    this.stopping = true;
    for (const s of this.services) clearTimeout(s.timer);
    for (const s of [...this.services].reverse()) await stop(s, graceMs);
  }

  /** For a process that is exiting anyway and cannot wait: leave no service behind. */
  killAll(): void {
    for (const s of this.services) if (alive(s.child)) s.child.kill("SIGKILL");
  }

  private spawn(
    spec: ServiceSpec,
    onExit: (code: number | null, signal: NodeJS.Signals | null) => void,
  ): Pick<Supervised, "child" | "exited"> {
    const fd = openSync(spec.log, "a");
    // Own process group (detached): Ctrl-C in the terminal reaches only the CLI, which then
    // stops the services in order instead of all of them at once.
    const child = spawn(process.execPath, ["--conditions=tandem-src", "--import", "tsx", spec.entry], {
      cwd: REPO_ROOT,
      env: spec.env,
      stdio: ["ignore", fd, fd],
      detached: true,
    });
    closeSync(fd);
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.once("exit", onExit);
    return { child, exited };
  }

  private exited(s: Supervised, code: number | null, signal: NodeJS.Signals | null): void {
    // A first start that fails is start()'s to report.
    if (this.stopping || s.phase === "starting") return;
    const { spec, child } = s;
    const now = Date.now();
    s.crashes = [...s.crashes.filter((t) => now - t < this.policy.windowMs), now];
    const how = signal ? `killed by ${signal}` : `exit code ${code}`;
    // A signal leaves nothing in the log worth showing; an exit code was the service's own doing.
    const tail = signal ? "" : `; the end of ${spec.log}:\n${logTail(spec.log)}`;
    const window = `${this.policy.windowMs / 1000} s`;
    if (s.crashes.length > this.policy.maxRestarts) {
      this.giveUp(
        new Error(
          `${spec.name} (pid ${child.pid}) ${how}: crash ${s.crashes.length} within ${window}, past the ` +
            `${this.policy.maxRestarts} restarts allowed there (--max-restarts, --restart-window): giving up` +
            (tail || `; its log: ${spec.log}`),
        ),
      );
      return;
    }
    const delay = Math.min(this.policy.backoffMs * 2 ** (s.crashes.length - 1), this.policy.maxBackoffMs);
    s.restarts++;
    s.phase = "backoff";
    this.say(
      `${spec.name} (pid ${child.pid}) ${how}; restart ${s.restarts} in ${delay / 1000} s ` +
        `(crash ${s.crashes.length} of ${this.policy.maxRestarts} allowed within ${window})${tail}`,
    );
    s.timer = setTimeout(() => void this.restart(s), delay);
  }

  private async restart(s: Supervised): Promise<void> {
    if (this.stopping) return;
    const { child, exited } = this.spawn(s.spec, (code, signal) => this.exited(s, code, signal));
    s.child = child;
    s.exited = exited;
    s.phase = "restarting";
    this.say(`restarting ${s.spec.name} (pid ${child.pid}) …`);
    try {
      await waitServing(s);
      s.phase = "serving";
      this.say(`  ${s.spec.name} is serving again (restart ${s.restarts})`);
    } catch (err) {
      // Died while starting: its exit already counted as another crash. Alive but not serving
      // in time: killed, and that exit counts.
      if (alive(child) && !this.stopping) {
        this.say(`${s.spec.name}: ${(err as Error).message}; killing it`);
        child.kill("SIGKILL");
      }
    }
  }
}

const alive = (child: ChildProcess) => child.exitCode === null && child.signalCode === null;

async function stop(s: Supervised, graceMs: number): Promise<void> {
  if (!alive(s.child)) return;
  s.child.kill("SIGTERM");
  const timer = setTimeout(() => s.child.kill("SIGKILL"), graceMs);
  await s.exited;
  clearTimeout(timer);
}

async function waitServing(s: Supervised): Promise<void> {
  const { spec, child } = s;
  const deadline = Date.now() + spec.readyTimeoutMs;
  for (;;) {
    if ((await checkHealth(spec.addr, 1000)) === "SERVING") return;
    if (!alive(child)) {
      throw new Error(
        `${spec.name} exited (${child.exitCode ?? child.signalCode}) before serving; the end of ${spec.log}:\n${logTail(spec.log)}`,
      );
    }
    if (Date.now() > deadline) {
      throw new Error(`${spec.name} did not report SERVING within ${spec.readyTimeoutMs / 1000} s; see ${spec.log}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
