"""Checks that gate a build: exported graph == PyTorch, int8 ~= fp32, and the vectors make sense."""

from __future__ import annotations

import json
from importlib.resources import files

import numpy as np

from .encode import Encoder

MIN_ONNX_VS_TORCH = 0.9999
MIN_INT8_VS_FP32 = 0.99

# (anchor, paraphrase / answer, unrelated): a sane embedding puts the second closer than the third.
TRIPLES: list[tuple[str, str, str]] = [
    ("How do I reset my password?", "Steps to recover a forgotten account password",
     "The Roman Empire fell in the fifth century."),
    ("what causes high blood pressure", "Hypertension is often caused by obesity, salt intake and genetics.",
     "Python lists can be sorted in place with the sort method."),
    ("A man is playing a guitar on stage.", "A musician performs a song with his guitar.",
     "A chef is slicing vegetables in the kitchen."),
    ("vitamin D deficiency and bone density", "Low vitamin D levels are associated with reduced bone mineral density.",
     "The stock market closed higher on Friday after strong earnings."),
    ("capital of france", "Paris is the capital and largest city of France.",
     "Photosynthesis converts light energy into chemical energy in plants."),
    ("best way to learn programming", "Tips for beginners who want to start coding",
     "The recipe calls for two cups of flour and one egg."),
    ("symptoms of the flu", "Influenza usually causes fever, cough, sore throat and muscle aches.",
     "The bridge was completed in 1937 and spans the Golden Gate strait."),
    ("how far is the moon from earth", "The Moon orbits Earth at an average distance of about 384,400 km.",
     "Dogs were domesticated from wolves thousands of years ago."),
]


# Committed with the package (package data), so a build needs nothing outside the repository.
VERIFICATION_TEXTS = "verification_texts.json"


def verification_texts(n_queries: int = 20, n_passages: int = 20) -> list[str]:
    """Short queries and full-length passages (several above MiniLM's 256 and MPNet's 384 max_tokens).

    The first `n_queries` queries and `n_passages` passages of verification_texts.json: queries written for
    it, passages from the example corpus (examples/tandem-docs, the repository's documentation), the long
    ones placed early so that a small n still exercises truncation. Only used to compare two encodings of
    the same model, never to train. Dynamic int8 scales activations per batch, so a text's int8-vs-fp32
    cosine moves with what it is batched with (+-0.005 for MiniLM's per-channel recipe, which sits near
    MIN_INT8_VS_FP32 on this text): the passage it holds least well (The API, 0.989-0.994) is the last one,
    in the full set the build gates on (0.9922 there) and out of test_bundle's 8 + 8.
    """
    data = json.loads(files("tandem_training").joinpath(VERIFICATION_TEXTS).read_text(encoding="utf-8"))
    queries, passages = data["queries"], data["passages"]
    if n_queries > len(queries) or n_passages > len(passages):
        raise ValueError(f"{VERIFICATION_TEXTS} holds {len(queries)} queries and {len(passages)} passages; "
                         f"asked for {n_queries} and {n_passages}")
    return queries[:n_queries] + passages[:n_passages]


def long_passages(n: int = 4, join: int = 3) -> list[str]:
    """Passages past 512 tokens for models with longer context (EmbeddingGemma's sliding-window attention sees
    256 tokens either side, so only texts well past that show whether an exported mask holds): runs of `join`
    consecutive verification passages, joined into one text."""
    passages = verification_texts(0, n * join)
    return ["\n\n".join(passages[i * join:(i + 1) * join]) for i in range(n)]


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def triple_check(encoder: Encoder) -> dict[str, float | str]:
    """Queries are encoded as queries, the candidates as documents: the way retrieval uses the model."""
    anchors = encoder.encode([t[0] for t in TRIPLES], "query")
    pos = encoder.encode([t[1] for t in TRIPLES], "document")
    neg = encoder.encode([t[2] for t in TRIPLES], "document")
    margins = (anchors * pos).sum(1) - (anchors * neg).sum(1)
    return {"similar_gt_dissimilar": f"{int((margins > 0).sum())}/{len(TRIPLES)}",
            "min_margin": round(float(margins.min()), 4), "mean_margin": round(float(margins.mean()), 4)}


def cross_space_check(query_encoder: Encoder, doc_encoder: Encoder) -> dict[str, float | str]:
    """Same as triple_check with queries from one bundle and documents from another (student -> teacher)."""
    anchors = query_encoder.encode([t[0] for t in TRIPLES], "query")
    pos = doc_encoder.encode([t[1] for t in TRIPLES], "document")
    neg = doc_encoder.encode([t[2] for t in TRIPLES], "document")
    margins = (anchors * pos).sum(1) - (anchors * neg).sum(1)
    return {"similar_gt_dissimilar": f"{int((margins > 0).sum())}/{len(TRIPLES)}",
            "min_margin": round(float(margins.min()), 4)}
