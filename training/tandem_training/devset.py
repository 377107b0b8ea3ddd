"""Dev-split retrieval during distillation: the student's queries against the teacher's document vectors.

Model selection reads dev / train qrels only (SciFact `qrels/train.tsv`, NFCorpus `qrels/dev.tsv`), never the test
split. The document vectors are the ones `tandem eval` already computed and cached (`TANDEM_EMBEDDINGS_DIR`,
one `<bundle onnx sha256>-<settings>-document.f32` file per teacher bundle: 32 bytes of sha256(text), then dims
float32 little-endian, per record). Reusing them means a dev figure costs only the student's query encodes, and
it is scored against exactly the vectors the served index and the test-split eval hold. A dev set whose corpus
is not fully cached is skipped with a note: embedding a corpus with the teacher is the eval's job.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .evaluate import ndcg_at, read_qrels, recall_at
from .paths import REPO_ROOT, datasets_dir

# (dataset, qrels split) pairs used for selection; neither is a test split.
DEV_SPLITS: tuple[tuple[str, str], ...] = (("scifact", "train"), ("nfcorpus", "dev"))


def embeddings_dir() -> Path:
    """Where `tandem eval` caches document vectors (the CLI reads the same variable)."""
    return Path(os.environ.get("TANDEM_EMBEDDINGS_DIR", REPO_ROOT / ".cache" / "embeddings"))


def indexed_text(doc: dict[str, str]) -> str:
    """A corpus line as the indexer embeds it (doc-indexer's parseCorpusLine: "title text")."""
    title = (doc.get("title") or "").strip()
    return f"{title} {doc['text']}" if title else doc["text"]


def read_vector_cache(path: Path, dims: int) -> dict[bytes, np.ndarray]:
    """The eval's append-only cache file; a partial last record (a killed writer) is ignored."""
    raw = np.fromfile(path, dtype=np.uint8)
    record = 32 + 4 * dims
    rows = raw[: len(raw) // record * record].reshape(-1, record)
    vectors = rows[:, 32:].copy().view("<f4")
    return {bytes(k): v for k, v in zip(rows[:, :32], vectors)}


@dataclass(frozen=True)
class DevSet:
    name: str
    split: str
    queries: list[str]
    qrels: list[dict[str, int]]  # per query, judged doc id -> grade
    doc_ids: list[str]
    doc_vectors: np.ndarray  # [docs, dims], unit rows

    def score(self, query_vectors: np.ndarray) -> dict[str, float]:
        top = np.argsort(-(query_vectors @ self.doc_vectors.T), axis=1)[:, :100]
        ranked = [[self.doc_ids[j] for j in row] for row in top]
        n = len(self.queries)
        return {"ndcg@10": round(100 * sum(ndcg_at(r, q) for r, q in zip(ranked, self.qrels)) / n, 2),
                "recall@100": round(100 * sum(recall_at(r, q) for r, q in zip(ranked, self.qrels)) / n, 2)}


def load_dev_set(name: str, split: str, teacher_onnx_sha256: str, dims: int,
                 log: Callable[[str], None] = print) -> DevSet | None:
    root = datasets_dir() / name
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        log(f"dev {name}/{split}: {qrels_path} not found, skipped")
        return None
    caches = sorted(embeddings_dir().glob(f"{teacher_onnx_sha256}-*-document.f32"))
    if not caches:
        log(f"dev {name}/{split}: no cached teacher document vectors in {embeddings_dir()} "
            f"(run `pnpm tandem eval --dataset {root} --teacher <the teacher bundle>` first), skipped")
        return None
    cached: dict[bytes, np.ndarray] = {}
    for path in caches:
        cached.update(read_vector_cache(path, dims))
    doc_ids: list[str] = []
    vectors: list[np.ndarray] = []
    with open(root / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            v = cached.get(hashlib.sha256(indexed_text(doc).encode("utf-8")).digest())
            if v is None:
                log(f"dev {name}/{split}: the teacher's vector of document {doc['_id']} is not cached "
                    f"(the eval has not embedded the whole corpus), skipped")
                return None
            doc_ids.append(str(doc["_id"]))
            vectors.append(v)
    judged = read_qrels(qrels_path)
    texts: dict[str, str] = {}
    with open(root / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            texts[str(q["_id"])] = q["text"]
    qids = [q for q, rels in judged.items() if q in texts and any(g > 0 for g in rels.values())]
    return DevSet(name, split, [texts[q] for q in qids], [judged[q] for q in qids], doc_ids, np.stack(vectors))
