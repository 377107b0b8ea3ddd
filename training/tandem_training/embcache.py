"""Teacher embeddings computed once, kept on disk, keyed by (teacher bundle ONNX sha256, text sha256)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .files import sha256_text


class EmbeddingCache:
    """Append-only shards: shard-N.npy (float32 [n, d]) + shard-N.keys (one text sha256 a line).

    The keys file is written last, so a crash mid-write leaves an orphan .npy that is ignored.
    """

    def __init__(self, root: Path, model_sha256: str, dims: int) -> None:
        self.dir = root / model_sha256
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dims = dims
        self.index: dict[str, tuple[int, int]] = {}
        self.shards: list[np.ndarray] = []
        for keys_path in sorted(self.dir.glob("shard-*.keys")):
            arr = np.load(keys_path.with_suffix(".npy"), mmap_mode="r")
            keys = keys_path.read_text().split()
            if arr.shape != (len(keys), dims):
                continue
            s = len(self.shards)
            self.shards.append(arr)
            for i, k in enumerate(keys):
                self.index[k] = (s, i)

    def get(self, texts: list[str], compute: Callable[[list[str]], np.ndarray], chunk: int = 512,
            progress: str = "") -> np.ndarray:
        keys = [sha256_text(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in self.index}.items())
        t0 = time.time()
        for start in range(0, len(missing), chunk):
            part = missing[start: start + chunk]
            vecs = compute([t for _, t in part]).astype(np.float32)
            self._append([k for k, _ in part], vecs)
            if progress:
                done = min(start + chunk, len(missing))
                rate = done / max(time.time() - t0, 1e-9)
                print(f"[{progress}] {done}/{len(missing)} new embeddings ({rate:.1f} texts/s)", flush=True)
        out = np.empty((len(texts), self.dims), dtype=np.float32)
        for i, k in enumerate(keys):
            s, j = self.index[k]
            out[i] = self.shards[s][j]
        return out

    def _append(self, keys: list[str], vecs: np.ndarray) -> None:
        n = len(self.shards)
        base = self.dir / f"shard-{os.getpid()}-{time.time_ns()}-{n:05d}"
        np.save(base.with_suffix(".npy"), vecs)
        tmp = base.with_suffix(".keys.tmp")
        tmp.write_text("\n".join(keys) + "\n")
        os.replace(tmp, base.with_suffix(".keys"))
        self.shards.append(vecs)
        for i, k in enumerate(keys):
            self.index[k] = (n, i)
