import type { TextKind as ModelTextKind } from "@tandem/model-runtime";
import { type EncodeRequest, TextKind } from "@tandem/proto";
import { InvalidArgumentError } from "@tandem/service-kit";

export interface RequestLimits {
  maxTexts: number;
  maxTextBytes: number;
}

/** Checks an Encode request before any work; the messages say what to change. */
export function validateEncode(req: EncodeRequest, limits: RequestLimits): ModelTextKind {
  if (req.texts.length === 0) throw new InvalidArgumentError("texts is empty: send at least one text to encode");
  if (req.texts.length > limits.maxTexts) {
    throw new InvalidArgumentError(
      `${req.texts.length} texts in one request; the limit is ${limits.maxTexts} (MAX_TEXTS_PER_REQUEST): split the request`,
    );
  }
  req.texts.forEach((text, i) => {
    if (text.trim().length === 0) throw new InvalidArgumentError(`texts[${i}] is empty or only whitespace`);
    const bytes = Buffer.byteLength(text, "utf8");
    if (bytes > limits.maxTextBytes) {
      throw new InvalidArgumentError(
        `texts[${i}] is ${bytes} bytes; the limit is ${limits.maxTextBytes} bytes (MAX_TEXT_BYTES)`,
      );
    }
  });
  switch (req.kind) {
    case TextKind.TEXT_KIND_QUERY:
      return "query";
    case TextKind.TEXT_KIND_DOCUMENT:
      return "document";
    default:
      throw new InvalidArgumentError(`kind ${req.kind} is not a known TextKind (QUERY=0, DOCUMENT=1)`);
  }
}
