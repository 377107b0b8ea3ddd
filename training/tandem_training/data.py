"""Distillation texts: real search queries plus truncated corpus passages. Never an evaluation set's queries."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from .files import sha256_file
from .paths import datasets_dir

# Eval sets whose queries must never be trained on (their corpora may be: the student never encodes documents
# at serve time, and passages only teach it to mimic the teacher on more varied text).
EVAL_SETS = ("scifact", "nfcorpus")
CORPORA = ("scifact", "nfcorpus")


@dataclass(frozen=True)
class DistillData:
    train: list[str]
    heldout_queries: list[str]
    heldout_passages: list[str]
    sources: dict[str, object]  # provenance: files, sha256, counts


def _eval_queries(root: Path) -> set[str]:
    out: set[str] = set()
    for name in EVAL_SETS:
        path = root / name / "queries.jsonl"
        if path.exists():
            with open(path, encoding="utf-8") as f:
                out.update(json.loads(line)["text"].strip().lower() for line in f)
    return out


def _passages(root: Path, words: int) -> list[str]:
    """title + text cut to the first `words` words (~1.3 tokens a word: 96 words ~ 128 tokens)."""
    out: list[str] = []
    for name in CORPORA:
        with open(root / name / "corpus.jsonl", encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                text = f"{d.get('title', '')}. {d.get('text', '')}".strip(". ").split()
                if len(text) >= 8:
                    out.append(" ".join(text[:words]))
    return out


def load(n_queries: int, n_passages: int, n_heldout: int = 300, passage_words: int = 96, seed: int = 0,
         drop_prefixes: tuple[str, ...] = ()) -> DistillData:
    root = datasets_dir()
    qfile = root / "train-queries" / "queries.tsv"
    banned = _eval_queries(root)
    queries: list[str] = []
    with open(qfile, encoding="utf-8") as f:
        for line in f:
            qid, _, text = line.rstrip("\n").partition("\t")
            if any(qid.startswith(p) for p in drop_prefixes):
                continue
            if text.strip().lower() in banned:  # SOURCE.md says 0 lines match; enforced anyway
                continue
            queries.append(text)
    rng = random.Random(seed)
    rng.shuffle(queries)  # the file is grouped by source
    passages = _passages(root, passage_words)
    rng.shuffle(passages)
    # Held-out texts come first and are never in the training slice.
    hq, hp = queries[:n_heldout], passages[: n_heldout // 3]
    tq = queries[n_heldout: n_heldout + n_queries]
    tp = passages[n_heldout // 3: n_heldout // 3 + n_passages]
    train = tq + tp
    rng.shuffle(train)
    sources = {
        "queries": {"file": "train-queries/queries.tsv", "sha256": sha256_file(qfile), "used": len(tq),
                    "available": len(queries), "dropped_prefixes": list(drop_prefixes)},
        "passages": {"corpora": [f"{c}/corpus.jsonl" for c in CORPORA], "used": len(tp), "available": len(passages),
                     "truncated_words": passage_words},
        "heldout": {"queries": len(hq), "passages": len(hp)},
        "excluded": f"queries equal to any {'/'.join(EVAL_SETS)} test query ({len(banned)} texts)",
        "seed": seed,
    }
    return DistillData(train, hq, hp, sources)
