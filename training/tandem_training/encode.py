"""Text -> vector through a bundle (ONNX Runtime) or through the PyTorch graph it was exported from.

Pooling, dense and normalisation follow the manifest, the same steps the TypeScript runtime applies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal

import numpy as np

from .files import read_json
from .tokens import BundleTokenizer

TextKind = Literal["query", "document"]


def pool(tokens: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    if pooling == "cls":
        return tokens[:, 0, :]
    m = mask[:, :, None].astype(np.float32)
    return (tokens * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (l2_normalize(a) * l2_normalize(b)).sum(axis=1)


RunTokens = Callable[[np.ndarray, np.ndarray], np.ndarray]


class Encoder:
    """Batches texts by length (less padding = much less CPU), runs a token graph, pools, projects, normalises."""

    def __init__(self, bundle_dir: Path, run: RunTokens | None = None, threads: int | None = None) -> None:
        self.dir = bundle_dir
        self.manifest = read_json(bundle_dir / "manifest.json")
        m = self.manifest
        self.tokenizer = BundleTokenizer(bundle_dir / m["tokenizer"]["file"], m["max_tokens"])
        self.dense: tuple[np.ndarray, np.ndarray | None] | None = None
        if m.get("dense"):
            d = m["dense"]
            raw = np.fromfile(bundle_dir / d["file"], dtype="<f4")
            w = raw[: d["in"] * d["out"]].reshape(d["out"], d["in"])
            self.dense = (w, raw[d["in"] * d["out"]:] if d["bias"] else None)
        self._run = run or self._onnx_runner(threads)

    def _onnx_runner(self, threads: int | None) -> RunTokens:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        session = ort.InferenceSession(str(self.dir / self.manifest["onnx"]["file"]), opts,
                                       providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        output = self.manifest["onnx"]["output"]

        def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in names:
                feeds["token_type_ids"] = np.zeros_like(ids)
            return session.run([output], feeds)[0]

        return run

    def encode(self, texts: list[str], kind: TextKind = "query", batch_size: int = 32,
               max_batch_tokens: int = 8192) -> np.ndarray:
        m = self.manifest
        prefix = m["query_prefix"] if kind == "query" else m["document_prefix"]
        rows = self.tokenizer.ids([prefix + t for t in texts])
        order = np.argsort([len(r) for r in rows], kind="stable")
        out = np.zeros((len(texts), m["dims"]), dtype=np.float32)
        i = 0
        while i < len(order):
            # Token budget per batch: long passages go in small batches, short queries in big ones.
            width = len(rows[order[min(i + batch_size, len(order)) - 1]])
            n = max(1, min(batch_size, max_batch_tokens // max(width, 1)))
            idx = order[i: i + n]
            ids, mask = self.tokenizer.pad([rows[j] for j in idx])
            raw = self._run(ids, mask)
            vec = pool(raw, mask, m["pooling"]) if m["onnx"]["output_kind"] == "token" else raw
            if self.dense is not None:
                w, b = self.dense
                vec = vec @ w.T + (b if b is not None else 0.0)
            out[idx] = l2_normalize(vec) if m["normalize"] else vec
            i += n
        return out
