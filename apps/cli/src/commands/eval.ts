import { readFileSync } from "node:fs";
import { join } from "node:path";
import { annConfig, startAnn } from "@tandem/ann";
import { annClient, loopbackEnv } from "../clients.js";
import { markdownTable, textTable } from "../eval/report.js";
import { type EvalReport, isDense, MODES, type ModeId, runEval, type Tower } from "../eval/run.js";
import { bundleExists, bundlePath, EMBEDDINGS_DIR, STATE_DIR, userPath } from "../paths.js";
import { type Progress, startProgress } from "../progress.js";

export interface EvalFlags {
  dataset: string;
  teacher: string;
  student: string;
  base: string;
  modes?: string;
  maxDocs?: number;
  maxQueries?: number;
  ann?: string;
  collection?: string;
  ef: number;
  threads: number;
  dims?: number;
  json?: boolean;
  markdown?: boolean;
  render?: string;
}

export async function evalCommand(flags: EvalFlags): Promise<number> {
  if (flags.render) {
    // A report saved with --json, printed again (e.g. as the README's markdown) without re-running anything.
    const report = JSON.parse(readFileSync(userPath(flags.render), "utf8")) as EvalReport;
    process.stdout.write(`${flags.markdown ? markdownTable(report) : textTable(report)}\n`);
    return 0;
  }
  const bundles: Record<Tower, string> = {
    teacher: bundlePath(flags.teacher),
    student: bundlePath(flags.student),
    base: bundlePath(flags.base),
  };
  const requested = flags.modes ? flags.modes.split(",").map((m) => m.trim()) : (Object.keys(MODES) as ModeId[]);
  const modes: ModeId[] = [];
  for (const m of requested) {
    if (!(m in MODES)) throw new Error(`unknown mode "${m}" (${Object.keys(MODES).join(", ")})`);
    const mode = m as ModeId;
    if (isDense(mode)) {
      const spec = MODES[mode];
      const absent = [spec.query, spec.docs].filter((t) => !bundleExists(bundles[t]));
      if (absent.length) {
        // Without --modes, a mode whose bundle is not built is skipped with a note; asked for, it is an error.
        const msg = `${spec.label}: bundle ${absent.map((t) => bundles[t]).join(", ")} is not built (scripts/setup.sh builds them)`;
        if (flags.modes) throw new Error(msg);
        process.stderr.write(`skipping ${msg}\n`);
        continue;
      }
    }
    modes.push(mode);
  }
  if (flags.collection && !flags.ann)
    throw new Error("--collection names a collection of a running ANN service: give --ann too");
  if (modes.length === 0) throw new Error("no mode can run: no model bundle is built");

  // Without --ann, an ANN service runs inside this process on a free port with
  // its own data dir: the real service code over real gRPC, without touching the
  // collections of a `tandem up` stack. BM25 alone needs none.
  const needsAnn = modes.some(isDense);
  let embedded: Awaited<ReturnType<typeof startAnn>> | null = null;
  let addr = flags.ann;
  if (!addr && needsAnn) {
    embedded = await startAnn(
      annConfig({ DATA_DIR: join(STATE_DIR, "eval-ann"), PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "warn" }),
    );
    addr = `127.0.0.1:${embedded.port}`;
  }
  // The in-process service is plaintext: the shell's ANN_TLS_* settings are for --ann's service only.
  const ann = addr ? annClient(addr, embedded ? loopbackEnv(process.env).vars : process.env) : undefined;
  const log = (line: string) => process.stderr.write(`${line}\n`);
  let bar: Progress | null = null;
  let barStart = 0;
  try {
    const report = await runEval({
      dataset: userPath(flags.dataset),
      bundles,
      modes,
      slice: { maxDocs: flags.maxDocs, maxQueries: flags.maxQueries },
      ann,
      annLabel: embedded
        ? `in-process ANN service (${join(STATE_DIR, "eval-ann")})`
        : addr
          ? `ANN service at ${addr}`
          : "none (BM25 only)",
      ef: flags.ef,
      intraOpThreads: flags.threads,
      dims: flags.dims,
      cacheDir: EMBEDDINGS_DIR,
      reuse: flags.collection ? { teacher: flags.collection } : {},
      log,
      onEmbedProgress: (tower, done, total) => {
        if (!bar) {
          bar = startProgress(total, { label: `embedding ${tower}`, unit: "docs" });
          barStart = performance.now();
        }
        const elapsed = (performance.now() - barStart) / 1000;
        (bar as Progress).update(done, `${elapsed > 0 ? (done / elapsed).toFixed(1) : "0.0"} docs/s`);
      },
      onEmbedDone: () => {
        bar?.stop();
        bar = null;
      },
    });
    if (flags.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else if (flags.markdown) process.stdout.write(`${markdownTable(report)}\n`);
    else process.stdout.write(`\n${textTable(report)}\n`);
    return 0;
  } finally {
    (bar as Progress | null)?.stop();
    ann?.close();
    await embedded?.stop();
  }
}
