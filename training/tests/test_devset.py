"""Dev-split scoring during distillation reads the eval's document-vector cache: format, gaps, metrics."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tandem_training.devset import indexed_text, load_dev_set

SHA = "ab" * 32
DIMS = 4


def _beir(root: Path) -> list[dict[str, str]]:
    docs = [{"_id": f"d{i}", "title": f"Title {i}" if i % 2 else "", "text": f"text of document {i}"} for i in range(6)]
    (root / "toy" / "qrels").mkdir(parents=True)
    (root / "toy" / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "toy" / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) + "\n" for i in range(3)))
    # q2 has only a zero grade: not a scorable query. The test split is never read.
    (root / "toy" / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td3\t2\nq2\td1\t0\n")
    return docs


def _cache(path: Path, docs: list[dict[str, str]], partial_tail: bool = False) -> np.ndarray:
    vectors = np.eye(len(docs), DIMS, dtype="<f4")[:, :DIMS] + 0.01
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    with open(path, "wb") as f:
        for d, v in zip(docs, vectors):
            f.write(hashlib.sha256(indexed_text(d).encode("utf-8")).digest() + v.astype("<f4").tobytes())
        if partial_tail:
            f.write(b"\x01" * 17)  # a killed writer's half record
    return vectors


def test_dev_set_reads_the_eval_cache_and_scores_a_perfect_ranking(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_DATASETS_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TANDEM_EMBEDDINGS_DIR", str(tmp_path / "emb"))
    docs = _beir(tmp_path / "data")
    (tmp_path / "emb").mkdir()
    vectors = _cache(tmp_path / "emb" / f"{SHA}-abc123-document.f32", docs, partial_tail=True)
    ds = load_dev_set("toy", "dev", SHA, DIMS)
    assert ds is not None
    assert ds.queries == ["query 0", "query 1"] and ds.doc_ids == [d["_id"] for d in docs]
    assert np.allclose(ds.doc_vectors, vectors)
    perfect = np.stack([vectors[0], vectors[3]])  # each query points at its judged document
    assert ds.score(perfect) == {"ndcg@10": 100.0, "recall@100": 100.0}
    wrong = np.stack([vectors[5], -vectors[3]])
    assert ds.score(wrong)["ndcg@10"] < 100.0


def test_a_corpus_the_eval_has_not_fully_embedded_is_skipped_with_a_reason(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_DATASETS_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TANDEM_EMBEDDINGS_DIR", str(tmp_path / "emb"))
    docs = _beir(tmp_path / "data")
    notes: list[str] = []
    assert load_dev_set("toy", "dev", SHA, DIMS, log=notes.append) is None  # no cache file at all
    assert "no cached teacher document vectors" in notes[-1]
    (tmp_path / "emb").mkdir()
    _cache(tmp_path / "emb" / f"{SHA}-abc123-document.f32", docs[:-1])
    assert load_dev_set("toy", "dev", SHA, DIMS, log=notes.append) is None
    assert "document d5 is not cached" in notes[-1]
    assert load_dev_set("toy", "train", SHA, DIMS, log=notes.append) is None
    assert "train.tsv not found" in notes[-1]
