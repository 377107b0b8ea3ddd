"""A few distillation steps lower the alignment loss; the distilled export lives in the teacher's space."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tandem_training.artifact import assemble, read_provenance, verify
from tandem_training.bundle import BuildError
from tandem_training.data import load
from tandem_training.distill import (Checkpoint, DistillConfig, LowerCache, Progress, Student, alignment_loss,
                                     distill, least_squares_projection, length_grouped_batches, lr_scale, main,
                                     rank_loss, train)
from tandem_training.encode import Encoder
from tandem_training.export import load_encoder
from tandem_training.fetch import fetch
from tandem_training.files import read_json, sha256_file
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
    (["--budget", "0m"], "--budget: must be a duration above 0 such as 90m, 2h or 3600s, got '0m'"),
    (["--budget", "ten minutes"], "--budget: must be a duration above 0"),
    (["--checkpoint-every", "-5"], "--checkpoint-every: must be a duration above 0"),
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


def test_cached_lower_layers_and_the_top_are_the_whole_encoder(
        small_mix: tuple[list[str], list[int], np.ndarray]) -> None:
    texts = small_mix[0][:8]
    student, tok = _student()
    student.eval()
    whole = _embed(student, tok, texts)
    ids, mask = (torch.from_numpy(a) for a in tok.pad(tok.ids(texts)))
    with torch.no_grad():
        for n in (1, 3, 5):
            assert torch.allclose(student.forward_top(student.lower(ids, mask, n), mask, n), whole, atol=1e-5)
        # The cache keeps each text cut to its own length, in fp16, and re-pads whatever batch a step draws.
        cache = LowerCache(student, tok, texts, 3, "cpu")
        assert [h.shape[0] for h in cache.hidden] == [int(m.sum()) for m in mask]
        pick = [5, 0, 2]
        h, m = cache.batch(pick)
        cos = (student.forward_top(h, m, 3) * whole[pick]).sum(-1)
    assert float(cos.min()) > 0.9999


def test_freezing_lower_layers_leaves_the_top_and_the_projection_training() -> None:
    student, _ = _student()
    student.freeze_lower(4)
    trainable = {k for k, p in student.encoder.named_parameters() if p.requires_grad}
    assert trainable and all(k.startswith(("encoder.layer.4.", "encoder.layer.5.", "pooler.")) for k in trainable)
    assert student.projection.weight.requires_grad
    for bad in (0, 6):
        with pytest.raises(ValueError, match="between 1 and 5"):
            _student()[0].freeze_lower(bad)


def test_steps_on_cached_lower_layers_train_the_top_and_leave_the_rest(
        small_mix: tuple[list[str], list[int], np.ndarray]) -> None:
    texts, _, targets = small_mix
    student, tok = _student()
    student.freeze_lower(3)
    frozen = {k: p.detach().clone() for k, p in student.encoder.named_parameters() if not p.requires_grad}
    before = float(alignment_loss(_embed(student, tok, texts), torch.from_numpy(targets)))
    cfg = replace(DistillConfig(), steps=8, batch=16, lr=1e-4, proj_lr=3e-3, warmup=1, freeze_layers=3)
    train(student, tok, texts, targets, cfg, "cpu", lower=LowerCache(student, tok, texts, 3, "cpu"))
    after = float(alignment_loss(_embed(student, tok, texts), torch.from_numpy(targets)))
    assert after < before * 0.9, (before, after)
    params = dict(student.encoder.named_parameters())
    assert all(torch.equal(params[k], v) for k, v in frozen.items())


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


def test_schedule_warms_up_then_decays_over_the_share_of_the_run() -> None:
    assert lr_scale(0, 0.0, 10) == pytest.approx(0.1)
    assert lr_scale(9, 0.0, 10) == pytest.approx(1.0)
    assert lr_scale(500, 0.5, 10) == pytest.approx(0.5)
    assert lr_scale(900, 1.0, 10) == pytest.approx(0.0)
    assert lr_scale(900, 1.7, 10) == pytest.approx(0.0)  # a budget overrun never turns the rate back up


def test_a_time_budget_sets_the_length_of_the_run(small_mix: tuple[list[str], list[int], np.ndarray]) -> None:
    texts, _, targets = small_mix
    student, tok = _student()
    progress = Progress()
    cfg = replace(DistillConfig(), budget=1.0, batch=8, warmup=1, rank_weight=0.0)
    train(student, tok, texts, targets, cfg, "cpu", progress=progress)
    assert progress.train_seconds >= 1.0 and progress.step >= 1
    assert len(progress.losses) == progress.step
    steps = progress.step
    train(student, tok, texts, targets, cfg, "cpu", progress=progress)  # resumed with the budget spent
    assert progress.step == steps


class _Interrupt(Exception):
    pass


def test_a_killed_run_resumes_from_its_checkpoint_as_if_never_stopped(
        small_mix: tuple[list[str], list[int], np.ndarray], tmp_path: Path) -> None:
    texts, bank_rows, targets = small_mix
    cfg = replace(DistillConfig(), steps=6, batch=8, warmup=2, eval_points=3)

    class Probe:  # records the dose points; optionally dies at one, the way a killed machine would
        def __init__(self, die_at: int | None) -> None:
            self.die_at, self.steps = die_at, []

        def __call__(self, student: Student, progress: Progress, batch: int) -> dict[str, object]:
            if progress.step == self.die_at:
                raise _Interrupt
            self.steps.append(progress.step)
            return {"step": progress.step, "dev": {}, "heldout_cosine": {}}

    student, tok = _student()
    whole = train(student, tok, texts, targets, cfg, "cpu", bank_rows, progress=Progress(), probe=Probe(None))

    ckpt = Checkpoint(tmp_path / "ckpt", every_seconds=0.0)  # saves after every step
    student, tok = _student()
    with pytest.raises(_Interrupt):
        train(student, tok, texts, targets, cfg, "cpu", bank_rows, progress=Progress(), checkpoint=ckpt,
              probe=Probe(4))
    saved = ckpt.load()
    assert saved is not None and saved["progress"]["step"] == 3
    student, tok = _student()
    student.load_state_dict(saved["student"])
    probe = Probe(None)
    resumed = train(student, tok, texts, targets, cfg, "cpu", bank_rows, progress=Progress(**saved["progress"]),
                    checkpoint=ckpt, probe=probe, saved_opt=saved["opt"])
    assert resumed == pytest.approx(whole, rel=1e-5)  # same batches, dropout, optimiser moments: same losses
    assert probe.steps == [4, 6]  # the dose points after the stop; those before it are in the checkpoint


def test_distilled_artifact_assembles_into_a_bundle_in_the_teachers_space(teacher_bundle: Path,
                                                                          tmp_path: Path) -> None:
    cfg = DistillConfig(name="leaf-test", teacher=str(teacher_bundle), queries=48, passages=16, heldout=12,
                        steps=3, batch=8, lstsq_texts=40, eval_points=1)
    artifacts, models = tmp_path / "artifacts", tmp_path / "models"
    (bundle,) = distill(cfg, models, int8=False, artifacts=artifacts, checkpoint_dir=tmp_path / "ckpt",
                        log_path=tmp_path / "dose.jsonl")
    m = read_json(bundle / "manifest.json")
    t = read_json(teacher_bundle / "manifest.json")
    assert validate(m) == []
    assert (m["role"], m["space"], m["dims"], m["hidden_size"]) == ("student", t["space"], t["dims"], t["dims"])
    assert m["query_prefix"] == t["query_prefix"]
    prov = read_provenance("leaf-test", artifacts)
    tr = prov["training"]
    assert tr["teacher"]["onnx_sha256"] == t["provenance"]["onnx_sha256"]
    assert tr["steps"] == 3 and tr["examples_seen"] == 24 and tr["data"]["queries"]["used"] == 48
    assert m["provenance"]["training"]["artifact"]["sha256"] == prov["sha256"] == sha256_file(artifacts / "leaf-test" / prov["file"])
    assert m["provenance"]["checks"]["onnx_vs_torch_min_cos"] >= 0.9999
    # The artifact holds what training changed, not the frozen word embeddings the base weights supply.
    assert prov["parameters"] < 12_000_000 and prov["bytes"] < 30 * 2**20
    dose = [json.loads(line) for line in (tmp_path / "dose.jsonl").read_text().splitlines()]
    assert [row["step"] for row in dose] == [0, 3] and dose[-1]["examples"] == 24
    assert verify("leaf-test", models, artifacts)["ok"]
    v = Encoder(bundle).encode(["what is the capital of france"])
    assert v.shape == (1, t["dims"])
    # Set-up's path: a fresh model root, assembled from the artifact alone (no teacher, no training data).
    (again,) = assemble("leaf-test", tmp_path / "fresh", artifacts, int8=False)
    assert read_json(again / "manifest.json")["provenance"]["onnx_sha256"] == m["provenance"]["onnx_sha256"]
    # Idempotent: same inputs -> the artifact is kept, the bundle skipped.
    sha = m["provenance"]["onnx_sha256"]
    distill(cfg, models, int8=False, artifacts=artifacts, checkpoint_dir=tmp_path / "ckpt")
    assert read_json(bundle / "manifest.json")["provenance"]["onnx_sha256"] == sha


def test_assembly_refuses_an_artifact_that_does_not_match_its_provenance(teacher_bundle: Path,
                                                                          tmp_path: Path) -> None:
    cfg = DistillConfig(name="leaf-bad", teacher=str(teacher_bundle), queries=16, passages=0, sentences=0,
                        heldout=0, steps=1, batch=8, lstsq_texts=16, eval_points=1)
    artifacts = tmp_path / "artifacts"
    distill(cfg, tmp_path / "models", int8=False, artifacts=artifacts, checkpoint_dir=tmp_path / "ckpt")
    prov = read_provenance("leaf-bad", artifacts)
    path = artifacts / "leaf-bad" / prov["file"]
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    with pytest.raises(BuildError) as err:
        assemble("leaf-bad", tmp_path / "other", artifacts, int8=False)
    assert prov["sha256"] in str(err.value) and sha256_file(path) in str(err.value)
    assert not (tmp_path / "other" / "leaf-bad").exists()
    with pytest.raises(SystemExit, match="no student artifact 'nope'"):
        assemble("nope", tmp_path / "other", artifacts)


def test_a_run_continues_the_committed_release_from_where_its_dose_ended(teacher_bundle: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # No dev figures: with the eval's document vectors cached, selection on dev could export the parent's state.
    monkeypatch.setenv("TANDEM_EMBEDDINGS_DIR", str(tmp_path / "no-eval-cache"))
    first_cfg = DistillConfig(name="leaf-next", teacher=str(teacher_bundle), queries=48, passages=16, heldout=12,
                              steps=3, batch=8, lstsq_texts=40, eval_points=1)
    artifacts, models = tmp_path / "artifacts", tmp_path / "models"
    distill(first_cfg, models, int8=False, artifacts=artifacts, checkpoint_dir=tmp_path / "c1",
            log_path=tmp_path / "d1.jsonl")
    first = read_provenance("leaf-next", artifacts)
    first_tensors = load_file(str(artifacts / "leaf-next" / first["file"]))
    # A learning rate that moves the top past fp16's resolution in two steps (the artifact is fp16).
    cfg = replace(first_cfg, init="artifact", freeze_layers=4, steps=2, warmup=1, lr=1e-3)
    (bundle,) = distill(cfg, models, int8=False, artifacts=artifacts, checkpoint_dir=tmp_path / "c2",
                        log_path=tmp_path / "d2.jsonl")
    prov = read_provenance("leaf-next", artifacts)
    assert (first["release"], prov["release"]) == (1, 2)
    assert prov["file"] == "leaf-next.r2.safetensors" and not (artifacts / "leaf-next" / first["file"]).exists()
    tr = prov["training"]
    assert tr["init"] == {"release": 1, "file": first["file"], "sha256": first["sha256"], "examples_total": 24}
    assert (tr["examples_seen"], tr["examples_seen_total"]) == (16, 40)
    # The curve starts where release 1 ended (its fp16-rounded weights), counting the examples both runs saw.
    d1 = [json.loads(line) for line in (tmp_path / "d1.jsonl").read_text().splitlines()]
    d2 = [json.loads(line) for line in (tmp_path / "d2.jsonl").read_text().splitlines()]
    assert [r["examples_total"] for r in d2] == [24, 40]
    for kind, cos in d1[-1]["heldout_cosine"].items():
        assert d2[0]["heldout_cosine"][kind]["mean"] == pytest.approx(cos["mean"], abs=2e-3)
    # Layers frozen in this run still ship release 1's training: the artifact is the whole chain, not the last run.
    tensors = load_file(str(artifacts / "leaf-next" / prov["file"]))
    frozen_key = "encoder.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(tensors[frozen_key], first_tensors[frozen_key])
    assert not torch.equal(tensors["encoder.encoder.layer.5.output.dense.weight"],
                           first_tensors["encoder.encoder.layer.5.output.dense.weight"])
    assert verify("leaf-next", models, artifacts)["ok"] and bundle.name == "leaf-next"
    # A release of another space or base model cannot be continued.
    other = json.loads((artifacts / "leaf-next" / "provenance.json").read_text())
    other["spec"]["space"] = "some-other-model/768"
    (artifacts / "leaf-next" / "provenance.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="cannot start a run"):
        distill(cfg, models, int8=False, artifacts=artifacts, checkpoint_dir=tmp_path / "c3")
