import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** The same variables, with the same defaults, as the CLI's (apps/cli/src/paths.ts) and training/'s. */
export const DATASETS =
  process.env.TANDEM_DATASETS_DIR ?? fileURLToPath(new URL("../../../shared/datasets", import.meta.url));
export const MODELS = process.env.TANDEM_MODELS_DIR ?? `${REPO_ROOT}.cache/models`;

/** A bundle built by training/ (see README: `scripts/setup.sh`); fails loudly when missing. */
export function bundleDir(name: string): string {
  const dir = `${MODELS}/${name}`;
  if (!existsSync(`${dir}/manifest.json`)) {
    throw new Error(`model bundle ${dir} is missing: run scripts/setup.sh (it builds the bundles) first`);
  }
  return dir;
}
