import { type ChildProcess, execFile, spawn } from "node:child_process";
import { REPO_ROOT } from "./paths.js";

/** The `tandem` CLI as a user runs it, with extra environment variables; resolves with its exit code and output. */
export function tandem(
  args: string[],
  vars: Record<string, string> = {},
  timeoutMs = 60_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const argv = ["--conditions=tandem-src", "--import", "tsx", "apps/cli/src/main.ts", ...args];
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      argv,
      { cwd: REPO_ROOT, env: { ...process.env, ...vars }, timeout: timeoutMs },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** A `tandem` command left running (e.g. `tandem up`), its stderr collected as it comes. */
export interface RunningTandem {
  child: ChildProcess;
  stderr(): string;
  /** The first match of `pattern` in stderr; rejects when the command exits or `timeoutMs` passes first. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** Its exit code (null when a signal ended it). */
  exited: Promise<number | null>;
}

export function spawnTandem(args: string[], vars: Record<string, string> = {}): RunningTandem {
  const child = spawn(
    process.execPath,
    ["--conditions=tandem-src", "--import", "tsx", "apps/cli/src/main.ts", ...args],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, ...vars },
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let text = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    text += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    stderr: () => text,
    async waitFor(pattern, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = text.match(pattern);
        if (m) return m;
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(`tandem ${args.join(" ")} exited before printing ${pattern}:\n${text}`);
        }
        if (Date.now() > deadline) throw new Error(`no ${pattern} within ${timeoutMs} ms:\n${text}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    exited,
  };
}
