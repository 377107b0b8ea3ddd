import { execFile } from "node:child_process";
import { REPO_ROOT } from "./paths.js";

/** The `tandem` CLI as a user runs it, with extra environment variables; resolves with its exit code and output. */
export function tandem(
  args: string[],
  vars: Record<string, string> = {},
  timeoutMs = 60_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const argv = ["--conditions=tandem-src", "--import", "tsx", "packages/cli/src/main.ts", ...args];
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      argv,
      { cwd: REPO_ROOT, env: { ...process.env, ...vars }, timeout: timeoutMs },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}
