import type { TextKind as ModelTextKind } from "@tandem/model-runtime";
import { type EncodeRequest, TextKind } from "@tandem/proto";
import { InvalidArgumentError } from "@tandem/service-kit";
import type { EncoderConfig } from "./config.js";

export interface RequestLimits {
  maxTexts: number;
  maxTextBytes: number;
}

export function requestLimits(config: EncoderConfig): RequestLimits {
  return { maxTexts: config.MAX_TEXTS_PER_REQUEST, maxTextBytes: config.MAX_TEXT_BYTES };
}

/**
 * A request past a size limit (MAX_TEXTS_PER_REQUEST, MAX_TEXT_BYTES). Still INVALID_ARGUMENT over
 * gRPC; the HTTP endpoint answers it 413, so a client can tell "split this" from "fix this".
 */
export class RequestTooLargeError extends InvalidArgumentError {}

/**
 * The checks every path runs on the texts of a request before any work (gRPC `texts`, HTTP
 * `input`); `field` is the caller's name for them, so the messages say what to change.
 */
export function validateTexts(texts: readonly string[], limits: RequestLimits, field: string): void {
  if (texts.length === 0) throw new InvalidArgumentError(`${field} is empty: send at least one text to encode`);
  if (texts.length > limits.maxTexts) {
    throw new RequestTooLargeError(
      `${texts.length} texts in one request; the limit is ${limits.maxTexts} (MAX_TEXTS_PER_REQUEST): split the request`,
    );
  }
  texts.forEach((text, i) => {
    if (text.trim().length === 0) throw new InvalidArgumentError(`${field}[${i}] is empty or only whitespace`);
    const bytes = Buffer.byteLength(text, "utf8");
    if (bytes > limits.maxTextBytes) {
      throw new RequestTooLargeError(
        `${field}[${i}] is ${bytes} bytes; the limit is ${limits.maxTextBytes} bytes (MAX_TEXT_BYTES)`,
      );
    }
  });
}

/** Checks an Encode request before any work; the messages say what to change. */
export function validateEncode(req: EncodeRequest, limits: RequestLimits): ModelTextKind {
  validateTexts(req.texts, limits, "texts");
  switch (req.kind) {
    case TextKind.TEXT_KIND_QUERY:
      return "query";
    case TextKind.TEXT_KIND_DOCUMENT:
      return "document";
    default:
      throw new InvalidArgumentError(`kind ${req.kind} is not a known TextKind (QUERY=0, DOCUMENT=1)`);
  }
}
