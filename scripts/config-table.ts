// Prints the README's configuration tables from the services' config schemas,
// so the documented variables, defaults and meanings are the enforced ones.
// Usage: node --conditions=tandem-src --import tsx scripts/config-table.ts

import type { z } from "zod";
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

function defaultOf(field: z.ZodType): string {
  let def = (field as unknown as { _zod: { def: Def } })._zod.def;
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

/** Variables every service shares are printed once, in their own table. */
const shared = new Set(Object.keys(commonConfig));

function table(title: string, schema: z.ZodObject, keep = (name: string) => !shared.has(name)): string {
  const rows = Object.entries(schema.shape)
    .filter(([name]) => keep(name))
    .map(
      ([name, field]) =>
        `| \`${name}\` | ${defaultOf(field as z.ZodType)} | ${(field as z.ZodType).description ?? ""} |`,
    );
  return [`#### ${title}`, "", "| variable | default | meaning |", "|---|---|---|", ...rows, ""].join("\n");
}

console.log(
  [
    table("every service", encoderConfigSchema, (name) => shared.has(name)),
    table("query-encoder", encoderConfigSchema),
    table("ann", annConfigSchema),
    table("doc-indexer", indexerConfigSchema),
  ].join("\n"),
);
