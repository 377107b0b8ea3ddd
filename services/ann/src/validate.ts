import { decodeVector } from "@tandem/proto";
import { InvalidArgumentError } from "@tandem/service-kit";

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
