"""A few distillation steps lower the alignment loss; the distilled export lives in the teacher's space."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tandem_training.data import load
from tandem_training.distill import (DistillConfig, Student, alignment_loss, distill, least_squares_projection,
                                     length_grouped_batches, main, rank_loss, train)
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


def test_rank_loss_sees_ranking_over_the_bank_and_hides_a_texts_own_row() -> None:
    g = torch.Generator().manual_seed(0)
    bank = torch.nn.functional.normalize(torch.randn(50, 16, generator=g), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(4, 16, generator=g), dim=-1)
    assert float(rank_loss(t, t, bank, 0.05)) == pytest.approx(0.0, abs=1e-6)
    # A small error the alignment loss barely sees can reorder the bank: the rank loss sees it.
    noisy = t + 0.3 * torch.randn(4, 16, generator=g)
    assert float(rank_loss(noisy, t, bank, 0.05)) > 0.05
    # Masked rows take no part: the loss is the same whatever those rows hold.
    mask = torch.zeros(4, 50, dtype=torch.bool)
    mask[:, [3, 7, 11, 19]] = True
    other = bank.clone()
    other[[3, 7, 11, 19]] = -other[[3, 7, 11, 19]]
    a, b = rank_loss(noisy, t, bank, 0.05, mask), rank_loss(noisy, t, other, 0.05, mask)
    assert torch.isfinite(a) and float(a) == pytest.approx(float(b), rel=1e-6)
    assert float(a) != pytest.approx(float(rank_loss(noisy, t, bank, 0.05)), rel=1e-3)


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
    (["--rank-weight", "-1"], "--rank-weight: must be a number >= 0.0, got -1.0"),
    (["--rank-weight", "nan"], "--rank-weight: must be a number >= 0.0, got nan"),
    (["--rank-temperature", "0"], "--rank-temperature: must be a number > 0.0, got 0.0"),
])
def test_bad_budget_flags_are_refused_before_any_work(argv: list[str], message: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--models", "/nonexistent/tandem-models"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def small_mix(teacher_bundle: Path) -> tuple[list[str], list[int], np.ndarray]:
    """24 queries + 8 passages with their teacher targets; the passages are the rank term's bank."""
    data = load(24, 8, n_heldout=0)
    return data.train, [i for i, k in enumerate(data.kinds) if k != "query"], \
        Encoder(teacher_bundle).encode(data.train, "query")


def _student() -> tuple[Student, BundleTokenizer]:
    torch.manual_seed(0)
    src = fetch(ALL_MINILM_L6_V2)
    return Student(load_encoder(src.hf_dir), 768), BundleTokenizer(src.hf_dir / "tokenizer.json", 128)


def _embed(student: Student, tok: BundleTokenizer, texts: list[str]) -> torch.Tensor:
    ids, mask = tok.pad(tok.ids(texts))
    with torch.no_grad():
        student.eval()
        return student(torch.from_numpy(ids), torch.from_numpy(mask))


def test_few_steps_lower_alignment_loss(small_mix: tuple[list[str], list[int], np.ndarray]) -> None:
    texts, _, targets = small_mix
    student, tok = _student()
    before = float(alignment_loss(_embed(student, tok, texts), torch.from_numpy(targets)))  # random projection
    cfg = replace(DistillConfig(), steps=8, batch=16, lr=1e-4, proj_lr=3e-3, warmup=1)
    losses = train(student, tok, texts, targets, cfg, "cpu")
    after = float(alignment_loss(_embed(student, tok, texts), torch.from_numpy(targets)))
    assert after < before * 0.9, (before, after, losses)


def test_training_with_the_rank_term_adds_it_over_the_corpus_bank(
        small_mix: tuple[list[str], list[int], np.ndarray]) -> None:
    texts, bank_rows, targets = small_mix

    def first_losses(rank_weight: float) -> list[float]:
        student, tok = _student()  # same seed: same projection, same batches
        cfg = replace(DistillConfig(), steps=2, batch=16, warmup=1, rank_weight=rank_weight)
        return train(student, tok, texts, targets, cfg, "cpu", bank_rows)

    alone, ranked = first_losses(0.0), first_losses(1.0)
    assert all(np.isfinite(ranked))
    # Step 1 sees the same batch through the same weights: the difference is the rank term's KL, > 0 while
    # the student's similarities to the bank differ from the teacher's.
    assert ranked[0] > alone[0] + 0.01, (ranked, alone)


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
