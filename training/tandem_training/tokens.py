"""Tokenisation exactly as the TypeScript runtime does it: prefix + text, cut to max_tokens keeping the
closing special token, no token_type_ids, right padding with an attention mask."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer


def bundle_tokenizer_json(source: Path, max_tokens: int, vocab_rows: int | None = None) -> str:
    """The source tokenizer.json with its truncation set to the bundle's max_tokens and padding removed.

    sentence-transformers exports ship `padding: Fixed(128)` and `truncation: 128`; a consumer that honours
    them would pad every query to 128 tokens and cut documents at 128 rather than max_tokens.

    Added tokens whose id is past the embedding table (`vocab_rows`) are dropped: EmbeddingGemma's
    tokenizer declares `<image_soft_token>` as id 262144 while the text model has 262144 rows, so a text
    holding that string would index out of range. Without the entry the string is tokenised as plain text.
    """
    data = json.loads(source.read_text(encoding="utf-8"))
    if vocab_rows is not None:
        data["added_tokens"] = [t for t in data.get("added_tokens", []) if int(t["id"]) < vocab_rows]
    trunc = data.get("truncation") or {"strategy": "LongestFirst", "stride": 0}
    trunc = {**trunc, "max_length": max_tokens}
    data["truncation"] = trunc
    data["padding"] = None
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class BundleTokenizer:
    def __init__(self, tokenizer_json: Path, max_tokens: int) -> None:
        self.tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.max_tokens = max_tokens
        pad = self.tokenizer.token_to_id("[PAD]")
        if pad is None:
            pad = self.tokenizer.token_to_id("<pad>")
        self.pad_id = int(pad) if pad is not None else 0

    def ids(self, texts: list[str]) -> list[list[int]]:
        out: list[list[int]] = []
        for enc in self.tokenizer.encode_batch(texts):
            ids = list(enc.ids)
            if len(ids) > self.max_tokens:
                ids = ids[: self.max_tokens - 1] + [ids[-1]]  # keep the closing special token
            out.append(ids)
        return out

    def pad(self, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        return ids, mask
