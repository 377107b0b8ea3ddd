"""nDCG@10 / Recall@100 on a BEIR-format set (standard definitions: graded gains, log2 discount, ideal DCG
from the judged relevant docs). A quick Python sanity check; the product's evaluation is the TypeScript one.

  python -m tandem_training.evaluate scifact --query-bundle .cache/models/all-minilm-l6-v2
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np

from .embcache import EmbeddingCache
from .encode import Encoder
from .paths import datasets_dir, force_offline, work_dir


def load_beir(name: str) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    root = datasets_dir() / name
    corpus: dict[str, str] = {}
    with open(root / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            corpus[d["_id"]] = f"{d.get('title', '')}. {d.get('text', '')}".strip(". ") if d.get("title") else d["text"]
    queries: dict[str, str] = {}
    with open(root / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            queries[q["_id"]] = q["text"]
    return corpus, queries, read_qrels(root / "qrels" / "test.tsv")


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """A BEIR qrels file (query-id, corpus-id, score; header row): query id -> judged doc id -> grade."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    return qrels


def ndcg_at(ranked: list[str], rels: dict[str, int], k: int = 10) -> float:
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked: list[str], rels: dict[str, int], k: int = 100) -> float:
    relevant = {d for d, r in rels.items() if r > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def evaluate_beir(name: str, query_enc: Encoder, doc_enc: Encoder, doc_limit: int | None = None,
                  seed: int = 0) -> dict[str, float | int]:
    """doc_limit: keep every judged doc plus random others up to this many (an easier, cheaper proxy)."""
    if query_enc.manifest["space"] != doc_enc.manifest["space"]:
        raise ValueError(f"space mismatch: queries {query_enc.manifest['space']} vs docs {doc_enc.manifest['space']}")
    corpus, queries, qrels = load_beir(name)
    qids = [q for q in qrels if q in queries]
    doc_ids = list(corpus)
    if doc_limit and doc_limit < len(doc_ids):
        judged = {d for q in qids for d in qrels[q] if d in corpus}
        rest = [d for d in doc_ids if d not in judged]
        random.Random(seed).shuffle(rest)
        doc_ids = sorted(judged) + rest[: max(0, doc_limit - len(judged))]
    t0 = time.time()
    doc_sha = doc_enc.manifest["provenance"]["onnx_sha256"]
    cache = EmbeddingCache(work_dir() / "doc-embeddings", f"{doc_sha}-t{doc_enc.manifest['max_tokens']}",
                           int(doc_enc.manifest["dims"]))
    docs = cache.get([corpus[d] for d in doc_ids], lambda ts: doc_enc.encode(ts, "document"), progress="docs")
    t1 = time.time()
    q = query_enc.encode([queries[x] for x in qids], "query")
    scores = q @ docs.T
    top = np.argsort(-scores, axis=1)[:, :100]
    ndcg = recall = 0.0
    for i, qid in enumerate(qids):
        ranked = [doc_ids[j] for j in top[i]]
        ndcg += ndcg_at(ranked, qrels[qid])
        recall += recall_at(ranked, qrels[qid])
    return {"ndcg@10": round(ndcg / len(qids), 4), "recall@100": round(recall / len(qids), 4),
            "queries": len(qids), "docs": len(doc_ids), "doc_seconds": round(t1 - t0, 1),
            "query_seconds": round(time.time() - t1, 1)}


def main(argv: list[str] | None = None) -> None:
    force_offline()
    ap = argparse.ArgumentParser(prog="python -m tandem_training.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", help="BEIR set under the shared datasets, e.g. scifact")
    ap.add_argument("--query-bundle", type=Path, required=True)
    ap.add_argument("--doc-bundle", type=Path, help="default: the query bundle (symmetric)")
    ap.add_argument("--doc-limit", type=int)
    a = ap.parse_args(argv)
    qe = Encoder(a.query_bundle)
    de = Encoder(a.doc_bundle) if a.doc_bundle else qe
    print(json.dumps(evaluate_beir(a.dataset, qe, de, a.doc_limit)))


if __name__ == "__main__":
    main(sys.argv[1:])
