import { existsSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (apps/cli/src -> ../../..): bundles, caches and .tandem/ live under it. */
export const REPO_ROOT = fileURLToPath(new URL("../../..", import.meta.url));

/** Built model bundles (training/ writes them here). */
export const MODELS_DIR = process.env.TANDEM_MODELS_DIR ?? join(REPO_ROOT, ".cache/models");

/** Document-embedding cache of `tandem eval`. */
export const EMBEDDINGS_DIR = process.env.TANDEM_EMBEDDINGS_DIR ?? join(REPO_ROOT, ".cache/embeddings");

/** State of `tandem up` (ANN data, logs). */
export const STATE_DIR = process.env.TANDEM_STATE_DIR ?? join(REPO_ROOT, ".tandem");

/** The example corpus `tandem up` indexes: the repository's own documentation, cut by `pnpm example-corpus`. */
export const EXAMPLE_CORPUS = join(REPO_ROOT, "examples/tandem-docs/corpus.jsonl");

/** BEIR sets for `tandem eval` (not part of the repository): by default the shared datasets next to the checkout. */
export const DATASETS_DIR = process.env.TANDEM_DATASETS_DIR ?? resolve(REPO_ROOT, "../shared/datasets");

/**
 * A path the user typed. `pnpm tandem ...` runs in the repository root, so a
 * relative path is taken from the directory pnpm was started in (INIT_CWD).
 */
export function userPath(p: string): string {
  return isAbsolute(p) ? p : resolve(process.env.INIT_CWD ?? process.cwd(), p);
}

/** A bundle given by name (a directory under MODELS_DIR) or by path. */
export function bundlePath(nameOrPath: string): string {
  if (nameOrPath.includes("/") || nameOrPath.startsWith(".")) return userPath(nameOrPath);
  return join(MODELS_DIR, nameOrPath);
}

export function bundleExists(dir: string): boolean {
  return existsSync(join(dir, "manifest.json")) || existsSync(join(dir, "modules.json"));
}
