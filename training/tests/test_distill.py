"""A few distillation steps lower the alignment loss; the distilled export lives in the teacher's space."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tandem_training.data import load
from tandem_training.distill import (DistillConfig, Student, alignment_loss, distill, least_squares_projection,
                                     length_grouped_batches, main, train)
from tandem_training.encode import Encoder
from tandem_training.export import load_encoder
from tandem_training.fetch import fetch
from tandem_training.files import read_json
from tandem_training.manifest import validate
from tandem_training.sources import ALL_MINILM_L6_V2
from tandem_training.tokens import BundleTokenizer


def test_least_squares_recovers_a_linear_map() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 16)).astype(np.float32)
    w = rng.normal(size=(24, 16)).astype(np.float32)
    est = least_squares_projection(x, x @ w.T, ridge=0.0)
    assert np.allclose(est, w, atol=1e-3)


def test_no_eval_queries_in_training_data() -> None:
    import json

    from tandem_training.paths import datasets_dir

    data = load(2000, 50, n_heldout=20)
    train = {t.strip().lower() for t in data.train}
    for name in ("scifact", "nfcorpus"):
        with open(datasets_dir() / name / "queries.jsonl", encoding="utf-8") as f:
            assert not train & {json.loads(line)["text"].strip().lower() for line in f}
    assert not set(data.heldout_queries) & set(data.train)


def test_corpus_sentences_are_short_and_held_out_apart() -> None:
    data = load(10, 5, n_heldout=30, n_sentences=200)
    assert data.sources["sentences"]["used"] == 200  # type: ignore[index]
    others = set(load(10, 5, n_heldout=30).train)  # same seed: the same queries and passages
    sentences = [t for t in data.train if t not in others]
    assert len(sentences) == len(set(sentences)) == 200
    assert all(6 <= len(s.split()) <= 40 for s in sentences)
    assert len(data.heldout_sentences) == 10 and not set(data.heldout_sentences) & set(data.train)


def test_length_grouped_batches_cover_an_epoch_once_and_cut_padding() -> None:
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(4, 128, size=1000)]
    epoch = length_grouped_batches(lengths, 16, np.random.default_rng(1), group=8)
    seen = [i for b in epoch for i in b]
    assert all(len(b) == 16 for b in epoch) and len(seen) == len(set(seen)) >= 1000 - 8 * 16
    padded = sum(16 * max(lengths[i] for i in b) for b in epoch)
    shuffled = rng.permutation(len(lengths))
    random_padded = sum(16 * max(lengths[i] for i in shuffled[j: j + 16]) for j in range(0, len(seen), 16))
    assert padded < 0.7 * random_padded
    again = length_grouped_batches(lengths, 16, np.random.default_rng(1), group=8)
    assert epoch == again  # seeded: the same run trains on the same batches


@pytest.mark.parametrize("argv, message", [
    (["--sentences", "-1"], "--sentences: must be an integer >= 0, got -1"),
    (["--steps", "0"], "--steps: must be an integer >= 1, got 0"),
    (["--batch", "-4"], "--batch: must be an integer >= 1, got -4"),
    (["--queries", "0", "--passages", "0", "--sentences", "0"], "no training texts"),
])
def test_bad_budget_flags_are_refused_before_any_work(argv: list[str], message: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--models", "/nonexistent/tandem-models"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_few_steps_lower_alignment_loss(teacher_bundle: Path) -> None:
    torch.manual_seed(0)
    teacher = Encoder(teacher_bundle)
    texts = load(24, 8, n_heldout=0).train
    targets = teacher.encode(texts, "query")
    src = fetch(ALL_MINILM_L6_V2)
    student = Student(load_encoder(src.hf_dir), 768)
    tok = BundleTokenizer(src.hf_dir / "tokenizer.json", 128)

    def loss_now() -> float:
        ids, mask = tok.pad(tok.ids(texts))
        with torch.no_grad():
            student.eval()
            return float(alignment_loss(student(torch.from_numpy(ids), torch.from_numpy(mask)),
                                        torch.from_numpy(targets)))

    before = loss_now()  # random projection
    cfg = replace(DistillConfig(), steps=8, batch=16, lr=1e-4, proj_lr=3e-3, warmup=1)
    losses = train(student, tok, texts, targets, cfg, "cpu")
    after = loss_now()
    assert after < before * 0.9, (before, after, losses)


def test_distilled_export_declares_teacher_space(teacher_bundle: Path, tmp_path: Path) -> None:
    cfg = DistillConfig(name="leaf-test", teacher=str(teacher_bundle), queries=48, passages=16, heldout=12,
                        steps=3, batch=8)
    (bundle,) = distill(cfg, tmp_path, int8=False)
    m = read_json(bundle / "manifest.json")
    t = read_json(teacher_bundle / "manifest.json")
    assert validate(m) == []
    assert (m["role"], m["space"], m["dims"], m["hidden_size"]) == ("student", t["space"], t["dims"], t["dims"])
    assert m["query_prefix"] == t["query_prefix"]
    tr = m["provenance"]["training"]
    assert tr["teacher"]["onnx_sha256"] == t["provenance"]["onnx_sha256"]
    assert tr["steps"] == 3 and tr["data"]["queries"]["used"] == 48
    assert m["provenance"]["checks"]["onnx_vs_torch_min_cos"] >= 0.9999
    v = Encoder(bundle).encode(["what is the capital of france"])
    assert v.shape == (1, t["dims"])
    # Idempotent: same inputs -> skipped, same graph.
    sha = m["provenance"]["onnx_sha256"]
    distill(cfg, tmp_path, int8=False)
    assert read_json(bundle / "manifest.json")["provenance"]["onnx_sha256"] == sha
