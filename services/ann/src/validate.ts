import { decodeVector } from "@tandem/proto";
import { InvalidArgumentError } from "@tandem/service-kit";
import type { MetricName, Quantization } from "./hnsw.js";

/**
 * Request checks shared by the handlers. Size limits on a request are
 * INVALID_ARGUMENT (the request itself is wrong and retrying it cannot work);
 * capacity limits of the server (collections, points per collection) are
 * RESOURCE_EXHAUSTED and live where the capacity is counted.
 */

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Collection and alias names: they become directory names, so a conservative alphabet. */
export function checkName(what: "collection" | "alias", name: string, maxBytes: number): string {
  if (name === "") throw new InvalidArgumentError(`${what} name is empty`);
  if (name.length > maxBytes) throw new InvalidArgumentError(`${what} name is longer than ${maxBytes} characters`);
  if (!NAME.test(name)) {
    throw new InvalidArgumentError(
      `${what} name ${JSON.stringify(name)} may use only letters, digits, "_", "-" and "." and must start with a letter or digit`,
    );
  }
  return name;
}

export function checkId(id: string, maxBytes: number): void {
  if (id === "") throw new InvalidArgumentError("point id is empty");
  const bytes = Buffer.byteLength(id, "utf8");
  if (bytes > maxBytes) throw new InvalidArgumentError(`point id is ${bytes} bytes; the limit is ${maxBytes}`);
}

/** A payload must be a JSON object ("" stands for {}). Returns the text to store and the parsed object. */
export function checkPayload(
  id: string,
  json: string,
  maxBytes: number,
): { text: string; object: Record<string, unknown> } {
  if (json === "") return { text: "{}", object: {} };
  const bytes = Buffer.byteLength(json, "utf8");
  if (bytes > maxBytes) {
    throw new InvalidArgumentError(
      `payload of point ${JSON.stringify(id)} is ${bytes} bytes; the limit is ${maxBytes}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (err) {
    throw new InvalidArgumentError(
      `payload of point ${JSON.stringify(id)} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new InvalidArgumentError(`payload of point ${JSON.stringify(id)} must be a JSON object`);
  }
  return { text: json, object: parsed as Record<string, unknown> };
}

export function checkVector(bytes: Uint8Array, dims: number, what: string): Float32Array {
  const v = decodeVector(bytes, dims);
  if (typeof v === "string") throw new InvalidArgumentError(`${what}: ${v}`);
  return v;
}

export function checkCount(what: string, n: number, max: number): void {
  if (n > max) throw new InvalidArgumentError(`${what}: ${n} exceeds the limit of ${max} per request`);
}

/** Candidates taken per result when rescoring, unless the collection says otherwise. */
export const DEFAULT_OVERSAMPLING = 4;
/** Past this, scoring k x oversampling originals costs more than an exact search saves: use `exact`. */
export const MAX_OVERSAMPLING = 64;

/**
 * A new collection's graph precision and its rescoring: unset rescoring is on for the quantised
 * kinds (f16, i8) and off for f32. Settings that would do nothing are refused rather than
 * ignored, so a client never believes it bought recall it did not get.
 */
export function checkQuantization(
  quantization: string,
  metric: MetricName,
  rescore: boolean | undefined,
  oversampling: number | undefined,
): { quantization: Quantization; rescore: boolean; oversampling: number } {
  if (quantization !== "f32" && quantization !== "f16" && quantization !== "i8") {
    throw new InvalidArgumentError(`index.quantization must be f32, f16 or i8, not ${JSON.stringify(quantization)}`);
  }
  // usearch's i8 scales components into [-127, 127] assuming unit vectors.
  if (quantization === "i8" && metric !== "cosine") {
    throw new InvalidArgumentError("index.quantization=i8 is only supported with the cosine metric");
  }
  if (quantization === "f32") {
    if (rescore === true) {
      throw new InvalidArgumentError(
        "index.rescore=true does nothing with quantization=f32: its graph distances are already exact; leave rescore unset, or choose quantization f16 or i8",
      );
    }
    if (oversampling !== undefined) {
      throw new InvalidArgumentError(
        `index.oversampling=${oversampling} applies only to rescoring, which quantization=f32 does not need; leave it unset, or choose quantization f16 or i8`,
      );
    }
    return { quantization, rescore: false, oversampling: 1 };
  }
  const on = rescore ?? true;
  if (oversampling === undefined) return { quantization, rescore: on, oversampling: on ? DEFAULT_OVERSAMPLING : 1 };
  if (!on) {
    throw new InvalidArgumentError(
      `index.oversampling=${oversampling} applies only to rescoring, and index.rescore=false; set rescore to true or leave oversampling unset`,
    );
  }
  if (!Number.isFinite(oversampling) || oversampling < 1 || oversampling > MAX_OVERSAMPLING) {
    throw new InvalidArgumentError(
      `index.oversampling must be a number in [1, ${MAX_OVERSAMPLING}] (graph candidates per result, e.g. ${DEFAULT_OVERSAMPLING}), not ${oversampling}; for more, search with exact: true`,
    );
  }
  return { quantization, rescore: true, oversampling };
}
