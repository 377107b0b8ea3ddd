#!/usr/bin/env node
// The installed `tandem` bin: runs the TypeScript sources with the workspace's
// "tandem-src" export condition (so sibling packages resolve to src/, no build
// step) under tsx. Signals reach the child directly (same process group); this
// shim only waits and passes the exit code on.
import { spawn } from "node:child_process";
import { constants } from "node:os";
import { fileURLToPath } from "node:url";

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url));
const child = spawn(
  process.execPath,
  ["--conditions=tandem-src", "--import", import.meta.resolve("tsx"), main, ...process.argv.slice(2)],
  { stdio: "inherit" },
);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => {});
child.on("exit", (code, signal) => process.exit(code ?? 128 + (constants.signals[signal] ?? 0)));
