// Regenerates the README's figures between `<!-- generated:NAME -->` and
// `<!-- /generated:NAME -->` markers, so nothing in them is edited by hand:
//   config      the configuration tables, from the services' zod schemas (the enforced ones)
//   eval        one table per report in docs/figures/eval-*.json (saved by `tandem eval --json`)
//   bench-*     the output of a benchmark run, saved in docs/figures/bench-*.txt
// Every README of the repository (the top level's, each service's and package's, training's) is
// rendered the same way; a README without markers is left as it is.
// Usage: pnpm readme           rewrite the READMEs that changed
//        pnpm readme --check   exit 1 when a README differs from what would be written
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { markdownTable } from "../packages/cli/src/eval/report.js";
import type { EvalReport } from "../packages/cli/src/eval/run.js";
import { commonConfig } from "../packages/service-kit/src/config.js";
import { annConfigSchema } from "../services/ann/src/config.js";
import { indexerConfigSchema } from "../services/doc-indexer/src/config.js";
import { encoderConfigSchema } from "../services/query-encoder/src/config.js";

interface Def {
  type: string;
  defaultValue?: unknown;
  in?: { _zod: { def: Def } };
  innerType?: { _zod: { def: Def } };
}

/** What this script reads of a zod field (structurally: zod lives in the services, not at the root). */
interface Field {
  description?: string;
  _zod: { def: Def };
}

function defaultOf(field: Field): string {
  let def = field._zod.def;
  for (;;) {
    if (def.type === "default") {
      const v = typeof def.defaultValue === "function" ? (def.defaultValue as () => unknown)() : def.defaultValue;
      return v === "" ? "(empty)" : `\`${String(v)}\``;
    }
    const next = def.in ?? def.innerType;
    if (!next) return "required";
    def = next._zod.def;
  }
}

/** Defaults computed from the machine, shown as their rule so the README is the same everywhere. */
const MACHINE_DEFAULTS: Record<string, string> = { INTRA_OP_THREADS: "min(4, CPUs)" };

/** Variables every service shares are printed once, in their own table. */
const shared = new Set(Object.keys(commonConfig));

function table(
  title: string,
  schema: { shape: Record<string, unknown> },
  keep = (name: string) => !shared.has(name),
): string {
  const rows = Object.entries(schema.shape)
    .filter(([name]) => keep(name))
    .map(
      ([name, field]) =>
        `| \`${name}\` | ${MACHINE_DEFAULTS[name] ?? defaultOf(field as Field)} | ${(field as Field).description ?? ""} |`,
    );
  return [`#### ${title}`, "", "| variable | default | meaning |", "|---|---|---|", ...rows, ""].join("\n");
}

const configTables = () =>
  [
    table("every service", encoderConfigSchema, (name) => shared.has(name)),
    table("query-encoder", encoderConfigSchema),
    table("ann", annConfigSchema),
    table("doc-indexer", indexerConfigSchema),
  ].join("\n");

const ROOT = join(import.meta.dirname, "..");
const FIGURES = join(ROOT, "docs/figures");
const figureFiles = (prefix: string, ext: string) =>
  existsSync(FIGURES)
    ? readdirSync(FIGURES)
        .filter((f) => f.startsWith(prefix) && f.endsWith(ext))
        .sort()
    : [];

function render(name: string): string {
  if (name === "config") return configTables();
  if (name === "eval") {
    const files = figureFiles("eval-", ".json");
    if (files.length === 0) throw new Error(`no eval report in ${FIGURES} (save one with tandem eval --json)`);
    return files
      .map((f) => markdownTable(JSON.parse(readFileSync(join(FIGURES, f), "utf8")) as EvalReport))
      .join("\n\n");
  }
  if (name.startsWith("bench-")) {
    const text = readFileSync(join(FIGURES, `${name}.txt`), "utf8").trimEnd();
    return ["```", text, "```"].join("\n");
  }
  throw new Error(`unknown generated block "${name}"`);
}

// An empty block (the markers on consecutive lines) matches too, so a new one renders on the first run.
const BLOCK = /(<!-- generated:([\w-]+) -->\n)(?:[\s\S]*?\n)?(<!-- \/generated:\2 -->)/g;

/** README text with every generated block re-rendered. */
export function regenerate(readme: string): string {
  return readme.replace(BLOCK, (_all, open: string, name: string, close: string) => `${open}${render(name)}\n${close}`);
}

/** The repository's READMEs, relative to its root: the top level's, then those one or two folders down. */
export function readmes(): string[] {
  const skip = new Set(["node_modules", ".cache", ".git", "docs"]);
  const below = (dir: string, depth: number): string[] =>
    readdirSync(join(ROOT, dir), { withFileTypes: true })
      .filter((e) => e.isDirectory() && !skip.has(e.name) && !e.name.startsWith("."))
      .sort((a, b) => a.name.localeCompare(b.name))
      .flatMap((e) => {
        const sub = dir ? `${dir}/${e.name}` : e.name;
        const own = existsSync(join(ROOT, sub, "README.md")) ? [`${sub}/README.md`] : [];
        return depth > 1 ? [...own, ...below(sub, depth - 1)] : own;
      });
  return ["README.md", ...below("", 2)];
}

if (process.argv[1] === import.meta.filename) {
  const stale: string[] = [];
  for (const file of readmes()) {
    const path = join(ROOT, file);
    const current = readFileSync(path, "utf8");
    const next = regenerate(current);
    if (next === current) continue;
    stale.push(file);
    if (!process.argv.includes("--check")) {
      writeFileSync(path, next);
      process.stdout.write(`${file} regenerated\n`);
    }
  }
  if (process.argv.includes("--check") && stale.length > 0) {
    process.stderr.write(`out of date with their sources: ${stale.join(", ")}; run \`pnpm readme\`\n`);
    process.exit(1);
  }
}
