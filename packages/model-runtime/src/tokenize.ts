import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

export type TextKind = "query" | "document";

export interface Tokenized {
  ids: number[];
  /** The text was longer than max tokens and cut (the final special token kept). */
  truncated: boolean;
}

/**
 * HF tokenizer.json (WordPiece, BPE, Unigram) through @huggingface/tokenizers.
 * That library ignores the truncation settings inside tokenizer.json, so the
 * cut to `maxTokens` happens here, keeping the closing special token.
 */
export class TextTokenizer {
  private readonly tokenizer: Tokenizer;

  constructor(
    tokenizerPath: string,
    readonly maxTokens: number,
    private readonly prefixes: Record<TextKind, string>,
  ) {
    const json = JSON.parse(readFileSync(tokenizerPath, "utf8")) as object;
    this.tokenizer = new Tokenizer(json, {});
  }

  tokenize(text: string, kind: TextKind): Tokenized {
    const { ids } = this.tokenizer.encode(this.prefixes[kind] + text);
    if (ids.length <= this.maxTokens) return { ids, truncated: false };
    const cut = ids.slice(0, this.maxTokens - 1);
    cut.push(ids[ids.length - 1] as number);
    return { ids: cut, truncated: true };
  }
}
