"""LEAF / ScalingNote stage 2: distil a small student into a teacher's embedding space.

  python -m tandem_training.distill                      # CPU budget: all-MiniLM-L6-v2 -> all-mpnet-base-v2 space
  python -m tandem_training.distill --queries 60000 --sentences 60000 --passages 20000 --steps 20000 --batch 128
                                                         # bigger (GPU)

Student = MiniLM encoder + linear projection (no bias) to the teacher's width, mean pooled, L2-normalised.
Texts = real search queries, single sentences of the shared corpora (query-length, in-domain) and truncated
passages. Targets = the teacher bundle's own (ONNX) embeddings of the same texts, cached on disk. The projection
starts at the least-squares solution on the cached pairs, then everything is fine-tuned on
MSE(student, teacher) + (1 - cosine) + a ranking term (rank_loss: the teacher's and the student's similarities
to the corpus texts' teacher vectors, compared as distributions) over length-grouped batches. Only queries are
ever encoded by the student at serve time; documents are encoded by the teacher alone.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import BUILDER
from .bundle import build_bundles, log as bundle_log
from .data import DistillData, load
from .embcache import EmbeddingCache
from .encode import Encoder
from .export import TokenGraph, load_encoder
from .fetch import fetch
from .files import read_json, sha256_json
from .paths import force_offline, models_dir, work_dir
from .sources import PYPI_MODELS, ModelSpec
from .tokens import BundleTokenizer

RECIPE = 3  # bump when the training procedure changes what the same inputs produce


@dataclass(frozen=True)
class DistillConfig:
    name: str = "leaf-minilm-mpnet"
    teacher: str = "all-mpnet-base-v2"  # bundle name under --models (or a path)
    student: str = "all-minilm-l6-v2"  # PyPI model key (sources.py)
    queries: int = 6000
    passages: int = 600
    sentences: int = 6000
    passage_words: int = 96
    heldout: int = 300
    train_max_tokens: int = 128
    steps: int = 1500
    batch: int = 32
    lr: float = 1e-4
    proj_lr: float = 1e-4
    warmup: int = 50
    rank_weight: float = 1.0  # weight of rank_loss over the corpus texts' teacher vectors; 0: alignment only
    rank_temperature: float = 0.05
    seed: int = 0
    drop_prefixes: tuple[str, ...] = ()


def log(msg: str) -> None:
    print(f"[distill] {msg}", flush=True)


class Student(nn.Module):
    """Encoder tokens -> projection -> mean pool -> L2. Same computation as the exported TokenGraph + runtime."""

    def __init__(self, encoder: nn.Module, out_dims: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.projection = nn.Linear(int(encoder.config.hidden_size), out_dims, bias=False)
        self.graph = TokenGraph(encoder, self.projection)

    def pooled(self, ids: torch.Tensor, mask: torch.Tensor, project: bool = True) -> torch.Tensor:
        kwargs = {"token_type_ids": torch.zeros_like(ids)} if self.graph.needs_token_types else {}
        h = self.encoder(input_ids=ids, attention_mask=mask, **kwargs).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.projection(pooled) if project else pooled

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.pooled(ids, mask), dim=-1)


def alignment_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """MSE between unit vectors (summed over dims, mean over batch) + (1 - cosine).

    On unit vectors ||s - t||^2 = 2 (1 - cos): the two terms agree in direction; the MSE keeps the LEAF
    formulation, the cosine term is what retrieval scores with.
    """
    s = F.normalize(s, dim=-1)
    t = F.normalize(t, dim=-1)
    mse = ((s - t) ** 2).sum(-1).mean()
    cos = (s * t).sum(-1).mean()
    return mse + (1.0 - cos)


def rank_loss(s: torch.Tensor, t: torch.Tensor, bank: torch.Tensor, temperature: float,
              self_mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL(teacher || student) between each text's softmax over its similarities to a bank of teacher vectors.

    Alignment alone spends the student's capacity on every direction of the teacher's space alike; retrieval only
    sees the directions along which documents differ, and above all which documents come first. Scoring the
    student's vector against the teacher's own document vectors, as the ANN will, puts the error where ranking
    feels it. `self_mask` hides a text's own vector in the bank (it would dominate the softmax).
    """
    ls = F.normalize(s, dim=-1) @ bank.T / temperature
    lt = F.normalize(t, dim=-1) @ bank.T / temperature
    if self_mask is not None:  # a large finite negative: exp() is exactly 0 and no inf - inf reaches the KL
        ls, lt = ls.masked_fill(self_mask, -1e4), lt.masked_fill(self_mask, -1e4)
    return F.kl_div(F.log_softmax(ls, -1), F.log_softmax(lt, -1), log_target=True, reduction="batchmean")


def batches(tok: BundleTokenizer, texts: list[str], size: int) -> list[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
    rows = tok.ids(texts)
    order = np.argsort([len(r) for r in rows], kind="stable")
    out = []
    for i in range(0, len(order), size):
        idx = order[i: i + size]
        ids, mask = tok.pad([rows[j] for j in idx])
        out.append((torch.from_numpy(ids), torch.from_numpy(mask), idx))
    return out


@torch.no_grad()
def encode_student(student: Student, tok: BundleTokenizer, texts: list[str], project: bool = True,
                   device: str = "cpu") -> np.ndarray:
    student.eval()
    dims = student.projection.out_features if project else student.projection.in_features
    out = np.zeros((len(texts), dims), dtype=np.float32)
    for ids, mask, idx in batches(tok, texts, 128):
        v = student.pooled(ids.to(device), mask.to(device), project=project)
        out[idx] = (F.normalize(v, dim=-1) if project else v).float().cpu().numpy()
    return out


def least_squares_projection(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """W minimising ||X W^T - Y||^2 + ridge ||W||^2 (closed form, normal equations in float64)."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    gram = x64.T @ x64 + ridge * len(x64) * np.eye(x64.shape[1])
    return np.linalg.solve(gram, x64.T @ y64).T.astype(np.float32)  # [out, in]


def heldout_cosines(student: Student, tok: BundleTokenizer, texts: list[str], targets: np.ndarray,
                    device: str) -> dict[str, float]:
    s = encode_student(student, tok, texts, device=device)
    cos = (s * targets).sum(1)
    return {"mean": round(float(cos.mean()), 4), "min": round(float(cos.min()), 4),
            "p10": round(float(np.percentile(cos, 10)), 4)}


def distill(cfg: DistillConfig, models: Path, int8: bool = True, force: bool = False, device: str = "auto",
            threads: int | None = None) -> list[Path]:
    t_start = time.time()
    force_offline()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if threads:
        torch.set_num_threads(threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    teacher_dir = Path(cfg.teacher) if "/" in cfg.teacher else models / cfg.teacher
    teacher_m = read_json(teacher_dir / "manifest.json")
    teacher_sha = teacher_m["provenance"]["onnx_sha256"]
    if cfg.student not in PYPI_MODELS:
        raise SystemExit(f"unknown student {cfg.student!r}; known: {', '.join(PYPI_MODELS)}")
    student_src = fetch(PYPI_MODELS[cfg.student])
    student_base = PYPI_MODELS[cfg.student].spec

    spec = ModelSpec(
        key=cfg.name,
        model_id=f"tandem/{cfg.name} ({student_base.model_id} distilled into {teacher_m['model_id']})",
        role="student",
        space=teacher_m["space"],  # the point of distillation: queries land in the teacher's space
        pooling="mean",
        normalize=True,
        max_tokens=student_base.max_tokens,
        query_prefix=teacher_m["query_prefix"],  # the teacher's query convention
        document_prefix=teacher_m["document_prefix"],
    )
    distill_key = sha256_json({"builder": BUILDER, "recipe": RECIPE, "config": asdict(cfg), "teacher": teacher_sha,
                               "student": student_src.weights_sha256, "spec": asdict(spec)})
    names = [cfg.name] + ([f"{cfg.name}-int8"] if int8 else [])
    if not force and all(_trained_with(models / n, distill_key) for n in names):
        log(f"{', '.join(names)}: up to date (distill_key {distill_key[:12]}), skipped")
        return [models / n for n in names]

    data = load(cfg.queries, cfg.passages, cfg.heldout, cfg.passage_words, cfg.seed, cfg.drop_prefixes,
                cfg.sentences)
    heldout = {"queries": data.heldout_queries, "passages": data.heldout_passages,
               "sentences": data.heldout_sentences}
    heldout = {k: v for k, v in heldout.items() if v}
    log(f"data: {len(data.train)} training texts ({cfg.queries} queries, {cfg.passages} passages, "
        f"{cfg.sentences} sentences at most), held out " + ", ".join(f"{len(v)} {k}" for k, v in heldout.items()))

    # 1. Teacher targets, cached by (teacher sha, text sha). The teacher sees texts exactly as the student will
    #    learn them: with the teacher's query prefix, cut to train_max_tokens.
    t0 = time.time()
    teacher = Encoder(teacher_dir, threads=threads)
    teacher.tokenizer.max_tokens = min(teacher.tokenizer.max_tokens, cfg.train_max_tokens)
    cache = EmbeddingCache(work_dir() / "teacher-embeddings", f"{teacher_sha}-t{cfg.train_max_tokens}",
                           int(teacher_m["dims"]))
    all_texts = data.train + [t for v in heldout.values() for t in v]
    targets_all = cache.get(all_texts, lambda ts: teacher.encode(ts, "query", batch_size=64), progress="teacher")
    del teacher
    n_train = len(data.train)
    y_train = targets_all[:n_train]
    y_heldout: dict[str, np.ndarray] = {}
    at = n_train
    for k, v in heldout.items():
        y_heldout[k], at = targets_all[at: at + len(v)], at + len(v)
    teacher_seconds = time.time() - t0
    log(f"teacher targets ready in {teacher_seconds:.0f}s")

    # 2. Student and least-squares projection init on the cached pairs.
    t1 = time.time()
    encoder = load_encoder(student_src.hf_dir)
    student = Student(encoder, int(teacher_m["dims"])).to(device)
    tok = BundleTokenizer(student_src.hf_dir / "tokenizer.json", cfg.train_max_tokens)
    prefix = spec.query_prefix
    train_texts = [prefix + t for t in data.train]
    heldout_texts = {k: [prefix + t for t in v] for k, v in heldout.items()}

    def heldout_now() -> dict[str, dict[str, float]]:
        return {k: heldout_cosines(student, tok, heldout_texts[k], y_heldout[k], device) for k in heldout}
    x = encode_student(student, tok, train_texts, project=False, device=device)
    w = least_squares_projection(x, y_train)
    with torch.no_grad():
        student.projection.weight.copy_(torch.from_numpy(w).to(device))
    init = heldout_now()
    log(f"least-squares init ({time.time() - t1:.0f}s): held-out cosine {init}")

    # 3. Fine-tune encoder + projection.
    t2 = time.time()
    corpus_rows = [i for i, kind in enumerate(data.kinds) if kind != "query"]
    losses = train(student, tok, train_texts, y_train, cfg, device, corpus_rows)
    train_seconds = time.time() - t2
    final = heldout_now()
    log(f"fine-tuned {cfg.steps} steps in {train_seconds:.0f}s: loss {losses[0]:.4f} -> {losses[-1]:.4f}; "
        f"held-out cosine {final}")

    # 4. Export: projection folded into the token graph (mean pooling commutes with a linear map).
    student = student.to("cpu").eval()
    tail = max(1, min(20, len(losses) // 10))
    training: dict[str, Any] = {
        "method": "LEAF-style embedding alignment: MSE(unit vectors) + (1 - cosine)"
                  + (" + rank_weight x KL(teacher || student) of similarities to the corpus texts' teacher vectors"
                     if cfg.rank_weight > 0 else "") + "; projection init by least squares",
        "distill_key": distill_key,
        "teacher": {"bundle": teacher_m["name"], "onnx_sha256": teacher_sha, "space": teacher_m["space"]},
        "student_init": {"source": student_src.source, "weights_sha256": student_src.weights_sha256},
        "data": data.sources,
        "train_texts": n_train,
        "steps": cfg.steps,
        "batch": cfg.batch,
        "lr": cfg.lr,
        "projection_lr": cfg.proj_lr,
        "warmup": cfg.warmup,
        "rank_loss": {"weight": cfg.rank_weight, "temperature": cfg.rank_temperature,
                      "bank": f"teacher vectors of the {len(corpus_rows)} corpus texts in the training mix"}
        if cfg.rank_weight > 0 else "off",
        "train_max_tokens": cfg.train_max_tokens,
        "device": device,
        "loss": {"first": round(losses[0], 5), "last": round(float(np.mean(losses[-tail:])), 5),
                 "min": round(min(losses), 5), "first_step_mean": round(float(np.mean(losses[:tail])), 5)},
        "heldout_cosine_to_teacher": {"least_squares_init": init, "final": final},
        "seconds": {"teacher_embedding": round(teacher_seconds), "train": round(train_seconds),
                    "total_before_export": round(time.time() - t_start)},
    }
    weights = {**{f"init:{k}": v for k, v in student_src.weights_sha256.items()},
               "trained_state": sha256_json(_state_digest(student))}
    out = build_bundles(spec, student.graph, student_src.hf_dir / "tokenizer.json", models,
                        f"distilled: {student_src.source} -> teacher {teacher_m['name']} ({teacher_sha[:12]})",
                        weights, {"distill_key": distill_key}, training=training, int8=int8, force=True)
    log(f"done in {time.time() - t_start:.0f}s")
    return out


def _state_digest(model: nn.Module) -> list[str]:
    import hashlib

    return [hashlib.sha256(p.detach().cpu().numpy().tobytes()).hexdigest()[:16] for p in model.state_dict().values()]


def _trained_with(bundle: Path, distill_key: str) -> bool:
    from .bundle import is_current

    mf = bundle / "manifest.json"
    if not mf.exists():
        return False
    m = read_json(mf)
    training = m.get("provenance", {}).get("training") or {}
    return training.get("distill_key") == distill_key and is_current(bundle, m["provenance"].get("inputs_key", ""))


def length_grouped_batches(lengths: list[int], batch: int, rng: np.random.Generator,
                           group: int = 64) -> list[list[int]]:
    """One epoch of batches: shuffle, sort each run of `group` batches by length, shuffle the batches.

    Batches then hold texts of similar length, so a 12-token query is not padded to a 128-token passage's width
    (on CPU padding is most of the cost), while every batch is still a random draw of the data.
    """
    order = rng.permutation(len(lengths))
    out: list[list[int]] = []
    span = batch * group
    for start in range(0, len(order), span):
        part = sorted(order[start: start + span].tolist(), key=lambda i: lengths[i])
        out.extend(part[i: i + batch] for i in range(0, len(part) - batch + 1, batch))
    return [out[i] for i in rng.permutation(len(out))]


def train(student: Student, tok: BundleTokenizer, texts: list[str], targets: np.ndarray, cfg: DistillConfig,
          device: str, bank_rows: list[int] | None = None) -> list[float]:
    """AdamW, linear warmup then cosine decay, over length-grouped random batches (reshuffled each epoch).

    With cfg.rank_weight > 0, the teacher vectors of `bank_rows` (the corpus texts) are the bank of rank_loss,
    and a text in the batch never ranks against its own row.
    """
    student.train()
    opt = torch.optim.AdamW([
        {"params": student.encoder.parameters(), "lr": cfg.lr},
        {"params": student.projection.parameters(), "lr": cfg.proj_lr},
    ], weight_decay=0.01)
    base = [g["lr"] for g in opt.param_groups]
    rows = tok.ids(texts)
    lengths = [len(r) for r in rows]
    y = torch.from_numpy(targets)
    bank_idx = torch.tensor(bank_rows, dtype=torch.long) if cfg.rank_weight > 0 and bank_rows else None
    bank = y[bank_idx].to(device) if bank_idx is not None else None
    rng = np.random.default_rng(cfg.seed)
    queue: list[list[int]] = []
    losses: list[float] = []
    every = max(1, cfg.steps // 10)
    for step in range(cfg.steps):
        if not queue:
            queue = length_grouped_batches(lengths, min(cfg.batch, len(texts)), rng)
        idx = queue.pop()
        ids, mask = tok.pad([rows[i] for i in idx])
        scale = (step + 1) / cfg.warmup if step < cfg.warmup else \
            0.5 * (1 + math.cos(math.pi * (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)))
        for g, lr in zip(opt.param_groups, base):
            g["lr"] = lr * scale
        s = student(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
        t = y[idx].to(device)
        loss = alignment_loss(s, t)
        if bank_idx is not None:
            own = (torch.tensor(idx)[:, None] == bank_idx[None, :]).to(device)
            loss = loss + cfg.rank_weight * rank_loss(s, t, bank, cfg.rank_temperature, own)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.item()))
        if (step + 1) % every == 0 or step == 0:
            log(f"step {step + 1}/{cfg.steps} loss {np.mean(losses[-every:]):.4f}")
    student.eval()
    return losses


def _number(kind: Callable[[str], float], low: float, inclusive: bool) -> Callable[[str], Any]:
    """argparse type: a number above `low` (or at least `low`), refused with the flag's name before any work."""
    def parse(text: str) -> Any:
        value = kind(text)
        if not (value > low or (inclusive and value == low)):  # also refuses nan
            bound = f">= {low}" if inclusive else f"> {low}"
            noun = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"must be {noun} {bound}, got {value}")
        return value
    return parse


def main(argv: list[str] | None = None) -> None:
    d = DistillConfig()
    count, positive = _number(int, 0, inclusive=True), _number(int, 1, inclusive=True)
    ap = argparse.ArgumentParser(prog="python -m tandem_training.distill", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", default=d.name, help="output bundle name (int8 variant gets -int8)")
    ap.add_argument("--teacher", default=d.teacher, help="teacher bundle name under --models, or a path")
    ap.add_argument("--student", default=d.student, help="student weights (PyPI model key)")
    ap.add_argument("--models", type=Path, default=models_dir(), help="bundle root (read teacher, write student)")
    ap.add_argument("--queries", type=count, default=d.queries, help="training queries from train-queries")
    ap.add_argument("--passages", type=count, default=d.passages, help="training passages from the shared corpora")
    ap.add_argument("--sentences", type=count, default=d.sentences, help="training sentences of the shared corpora")
    ap.add_argument("--passage-words", type=positive, default=d.passage_words)
    ap.add_argument("--heldout", type=count, default=d.heldout,
                    help="held-out queries (+1/3 as many passages and as many sentences)")
    ap.add_argument("--train-max-tokens", type=positive, default=d.train_max_tokens)
    ap.add_argument("--steps", type=positive, default=d.steps)
    ap.add_argument("--batch", type=positive, default=d.batch)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--proj-lr", type=float, default=d.proj_lr)
    ap.add_argument("--warmup", type=positive, default=d.warmup)
    ap.add_argument("--rank-weight", type=_number(float, 0.0, inclusive=True), default=d.rank_weight,
                    help="weight of the ranking term over the corpus texts' teacher vectors (0: alignment only)")
    ap.add_argument("--rank-temperature", type=_number(float, 0.0, inclusive=False), default=d.rank_temperature)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--drop-prefix", action="append", default=[], help="drop train-queries ids with this prefix")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-int8", action="store_true")
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    if a.queries + a.passages + a.sentences == 0:
        ap.error("no training texts: give --queries, --passages or --sentences a count above 0")
    cfg = DistillConfig(name=a.name, teacher=a.teacher, student=a.student, queries=a.queries, passages=a.passages,
                        sentences=a.sentences, passage_words=a.passage_words, heldout=a.heldout,
                        train_max_tokens=a.train_max_tokens, steps=a.steps, batch=a.batch, lr=a.lr, proj_lr=a.proj_lr, warmup=a.warmup,
                        rank_weight=a.rank_weight, rank_temperature=a.rank_temperature, seed=a.seed,
                        drop_prefixes=tuple(a.drop_prefix))
    distill(cfg, a.models, int8=not a.no_int8, force=a.force, device=a.device, threads=a.threads)


if __name__ == "__main__":
    main(sys.argv[1:])
