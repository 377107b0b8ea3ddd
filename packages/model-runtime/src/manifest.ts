import { createHash } from "node:crypto";
import { createReadStream, existsSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { z } from "zod";
import { BundleError } from "./errors.js";
import { POOLINGS, type Pooling } from "./pool.js";

/**
 * The bundle manifest (format "tandem-bundle/1"), written by training/ and read
 * here. It is the one place that says how a graph's output becomes a vector in
 * a named embedding space. training/ validates against the JSON Schema generated
 * from it (MANIFEST_SCHEMA_FILE); the rules that compare fields with each other,
 * which JSON Schema cannot say, are in parseManifest and again in
 * training/tandem_training/manifest.py.
 */
const ManifestSchema = z.object({
  format: z.literal("tandem-bundle/1"),
  name: z.string().min(1),
  model_id: z.string().min(1),
  role: z.enum(["student", "teacher"]),
  space: z.string().min(1),
  dims: z.number().int().positive(),
  hidden_size: z.number().int().positive(),
  pooling: z.enum(POOLINGS),
  normalize: z.boolean(),
  max_tokens: z.number().int().min(2),
  query_prefix: z.string(),
  document_prefix: z.string(),
  precision: z.enum(["fp32", "int8", "fp16"]),
  onnx: z.object({
    file: z.string().min(1),
    output: z.string().min(1),
    output_kind: z.enum(["token", "pooled"]),
  }),
  dense: z
    .object({
      file: z.string().min(1),
      in: z.number().int().positive(),
      out: z.number().int().positive(),
      bias: z.boolean(),
    })
    .nullable()
    .default(null),
  /** Prefix sizes the model keeps meaning at (Matryoshka): the first d dims, re-normalised. */
  matryoshka_dims: z.array(z.number().int().positive()).default([]),
  tokenizer: z.object({ file: z.string().min(1) }),
  provenance: z.record(z.string(), z.unknown()).default({}),
});

export type Manifest = z.infer<typeof ManifestSchema>;

/** The committed JSON Schema of the manifest, relative to the repository root (`pnpm schema` writes it). */
export const MANIFEST_SCHEMA_FILE = "packages/model-runtime/manifest.schema.json";

/**
 * The manifest's JSON Schema as committed: the input side of ManifestSchema, so
 * fields with a default (dense, matryoshka_dims, provenance) are optional, as in
 * bundles built before matryoshka_dims existed.
 */
export function manifestJsonSchema(): string {
  const schema = {
    $comment: "Generated from ManifestSchema in packages/model-runtime/src/manifest.ts by `pnpm schema`: do not edit.",
    ...z.toJSONSchema(ManifestSchema, { io: "input" }),
  };
  return `${JSON.stringify(schema, null, 2)}\n`;
}

export interface ResolvedBundle {
  dir: string;
  manifest: Manifest;
  onnxPath: string;
  tokenizerPath: string;
  /** sha256 of the ONNX graph: names the exact weights. */
  sha256: string;
}

function readJson(dir: string, file: string): unknown {
  const path = join(dir, file);
  if (!existsSync(path)) throw new BundleError(dir, `missing file ${file}`);
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new BundleError(dir, `${file} is not valid JSON: ${(err as Error).message}`);
  }
}

export function parseManifest(dir: string, raw: unknown): Manifest {
  const parsed = ManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new BundleError(dir, `invalid manifest.json: ${problems.join("; ")}`);
  }
  const m = parsed.data;
  if (m.dense) {
    if (m.dense.in !== m.hidden_size) {
      throw new BundleError(dir, `dense.in is ${m.dense.in} but hidden_size is ${m.hidden_size}`);
    }
    if (m.dense.out !== m.dims) throw new BundleError(dir, `dense.out is ${m.dense.out} but dims is ${m.dims}`);
  } else if (m.hidden_size !== m.dims) {
    throw new BundleError(dir, `dims is ${m.dims} but hidden_size is ${m.hidden_size} and there is no dense layer`);
  }
  const mrl = m.matryoshka_dims;
  if (mrl.some((d) => d >= m.dims) || new Set(mrl).size !== mrl.length) {
    throw new BundleError(dir, `matryoshka_dims [${mrl.join(", ")}] must be distinct and below dims ${m.dims}`);
  }
  if (mrl.length > 0 && !m.normalize) {
    throw new BundleError(dir, "matryoshka_dims needs normalize: true (truncated vectors are re-normalised)");
  }
  return m;
}

/**
 * The embedding space of a bundle served at `dims`: its own space at its full
 * width, else the space with the width renamed ("embeddinggemma-300m/768" at
 * 256 is "embeddinggemma-300m/256"). A truncated space is a space of its own:
 * its vectors never meet the full ones.
 */
export function spaceAt(m: Manifest, dims: number): string {
  if (dims === m.dims) return m.space;
  const base = m.space.endsWith(`/${m.dims}`) ? m.space.slice(0, -`/${m.dims}`.length) : m.space;
  return `${base}/${dims}`;
}

/** `dims` if the bundle can serve it (its width or a declared Matryoshka size), else a message saying what it can. */
export function checkServedDims(m: Manifest, dims: number): string | null {
  if (dims === m.dims || m.matryoshka_dims.includes(dims)) return null;
  const offered = [m.dims, ...m.matryoshka_dims].join(", ");
  return m.matryoshka_dims.length > 0
    ? `${m.name} cannot serve ${dims} dims: it serves ${offered} (its full width and its Matryoshka sizes)`
    : `${m.name} cannot serve ${dims} dims: it declares no Matryoshka sizes, only its full width ${m.dims}`;
}

/**
 * A plain sentence-transformers export (config.json, tokenizer.json,
 * onnx/model.onnx, 1_Pooling/config.json, modules.json) read as a manifest.
 */
function fromSentenceTransformers(dir: string): Manifest {
  const config = readJson(dir, "config.json") as { hidden_size?: number; _name_or_path?: string };
  const pooling = readJson(dir, join("1_Pooling", "config.json")) as Record<string, unknown>;
  const modules = readJson(dir, "modules.json") as Array<{ type?: string }>;
  const stConfig = existsSync(join(dir, "sentence_bert_config.json"))
    ? (readJson(dir, "sentence_bert_config.json") as { max_seq_length?: number })
    : {};
  if (modules.some((m) => m.type?.endsWith("Dense"))) {
    throw new BundleError(dir, "sentence-transformers Dense modules are not supported: export a bundle with training/");
  }
  let mode: Pooling;
  if (pooling.pooling_mode_mean_tokens === true) mode = "mean";
  else if (pooling.pooling_mode_cls_token === true) mode = "cls";
  else {
    const active = Object.keys(pooling).filter((k) => k.startsWith("pooling_mode_") && pooling[k] === true);
    throw new BundleError(dir, `unknown pooling ${active.join(",") || "(none)"} in 1_Pooling/config.json`);
  }
  const hidden = config.hidden_size;
  if (!hidden) throw new BundleError(dir, "config.json has no hidden_size");
  const modelId = config._name_or_path || basename(dir);
  return parseManifest(dir, {
    format: "tandem-bundle/1",
    name: basename(dir),
    model_id: modelId,
    role: "student",
    space: `${basename(modelId)}/${hidden}`.toLowerCase(),
    dims: hidden,
    hidden_size: hidden,
    pooling: mode,
    normalize: modules.some((m) => m.type?.endsWith("Normalize")),
    max_tokens: stConfig.max_seq_length ?? 512,
    query_prefix: "",
    document_prefix: "",
    precision: "fp32",
    onnx: { file: join("onnx", "model.onnx"), output: "last_hidden_state", output_kind: "token" },
    dense: null,
    tokenizer: { file: "tokenizer.json" },
    provenance: { source: "sentence-transformers export" },
  });
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

export async function resolveBundle(dir: string): Promise<ResolvedBundle> {
  if (!existsSync(dir)) throw new BundleError(dir, "directory does not exist");
  let manifest: Manifest;
  if (existsSync(join(dir, "manifest.json"))) manifest = parseManifest(dir, readJson(dir, "manifest.json"));
  else if (existsSync(join(dir, "modules.json"))) manifest = fromSentenceTransformers(dir);
  else throw new BundleError(dir, "missing file manifest.json (and not a sentence-transformers export)");

  const onnxPath = join(dir, manifest.onnx.file);
  const tokenizerPath = join(dir, manifest.tokenizer.file);
  for (const path of [onnxPath, tokenizerPath, ...(manifest.dense ? [join(dir, manifest.dense.file)] : [])]) {
    if (!existsSync(path)) throw new BundleError(dir, `missing file ${path.slice(dir.length + 1)}`);
  }
  const recorded = manifest.provenance.onnx_sha256;
  const sha256 = typeof recorded === "string" && recorded.length === 64 ? recorded : await sha256File(onnxPath);
  return { dir, manifest, onnxPath, tokenizerPath, sha256 };
}
