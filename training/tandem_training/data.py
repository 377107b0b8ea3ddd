"""Distillation texts: real search queries, sentences and truncated passages of the corpora. Never an evaluation
set's queries."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
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
    kinds: list[str]  # "query" | "passage" | "sentence", one per training text
    heldout_queries: list[str]
    heldout_passages: list[str]
    heldout_sentences: list[str]
    sources: dict[str, object]  # provenance: files, sha256, counts


def _eval_queries(root: Path) -> set[str]:
    out: set[str] = set()
    for name in EVAL_SETS:
        path = root / name / "queries.jsonl"
        if path.exists():
            with open(path, encoding="utf-8") as f:
                out.update(json.loads(line)["text"].strip().lower() for line in f)
    return out


def _corpus_docs(root: Path) -> Iterator[dict[str, str]]:
    """Every document of the shared corpora, in file order: what passages and sentences are cut from."""
    for name in CORPORA:
        with open(root / name / "corpus.jsonl", encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)


# A sentence ends at . ! or ? followed by a space and a capital or an opening bracket; abbreviations that split
# wrongly only yield a shorter sentence, which the length filter mostly drops.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")


def _sentences(root: Path, min_words: int = 6, max_words: int = 40) -> list[str]:
    """Single sentences of the corpora's texts: short, claim- and question-length in-domain text.

    Queries are short; a student trained on 128-token passages alone learns the teacher on the wrong lengths,
    and web queries alone miss the corpora's vocabulary. No labels or queries of an eval set are involved.
    """
    return [s.strip() for d in _corpus_docs(root) for s in _SENTENCE_END.split(d.get("text", ""))
            if min_words <= len(s.split()) <= max_words]


def _passages(root: Path, words: int) -> list[str]:
    """title + text cut to the first `words` words (~1.3 tokens a word: 96 words ~ 128 tokens)."""
    out: list[str] = []
    for d in _corpus_docs(root):
        text = f"{d.get('title', '')}. {d.get('text', '')}".strip(". ").split()
        if len(text) >= 8:
            out.append(" ".join(text[:words]))
    return out


def load(n_queries: int, n_passages: int, n_heldout: int = 300, passage_words: int = 96, seed: int = 0,
         drop_prefixes: tuple[str, ...] = (), n_sentences: int = 0) -> DistillData:
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
    sentences = _sentences(root) if n_sentences else []
    rng.shuffle(sentences)
    sentences = list(dict.fromkeys(sentences))  # boilerplate sentences repeat across abstracts
    # Held-out texts come first and are never in the training slice.
    hq, hp, hs = queries[:n_heldout], passages[: n_heldout // 3], sentences[: n_heldout // 3]
    tq = queries[n_heldout: n_heldout + n_queries]
    tp = passages[n_heldout // 3: n_heldout // 3 + n_passages]
    ts = sentences[n_heldout // 3: n_heldout // 3 + n_sentences]
    pool = tq + tp + ts
    pool_kinds = ["query"] * len(tq) + ["passage"] * len(tp) + ["sentence"] * len(ts)
    order = list(range(len(pool)))
    rng.shuffle(order)  # the same permutation shuffling `pool` itself would draw
    train, kinds = [pool[i] for i in order], [pool_kinds[i] for i in order]
    corpora = [f"{c}/corpus.jsonl" for c in CORPORA]
    sources = {
        "queries": {"file": "train-queries/queries.tsv", "sha256": sha256_file(qfile), "used": len(tq),
                    "available": len(queries), "dropped_prefixes": list(drop_prefixes)},
        "passages": {"corpora": corpora, "used": len(tp), "available": len(passages),
                     "truncated_words": passage_words},
        "sentences": {"corpora": corpora, "used": len(ts),
                      "available": len(sentences), "words": "6-40"},
        "heldout": {"queries": len(hq), "passages": len(hp), "sentences": len(hs)},
        "excluded": f"queries equal to any {'/'.join(EVAL_SETS)} test query ({len(banned)} texts)",
        "seed": seed,
    }
    return DistillData(train, kinds, hq, hp, hs, sources)
