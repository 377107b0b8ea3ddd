"""LEAF / ScalingNote stage 2: distil a small student into a teacher's embedding space.

  python -m tandem_training.distill --budget 40m         # from the base weights: all-MiniLM-L6-v2 -> mpnet's space
  python -m tandem_training.distill --init artifact --freeze-layers 3 --budget 45m   # the next release, continued
  python -m tandem_training.distill --budget 8h --device cuda --queries 70000 --sentences 60000   # a bigger dose

The run's product is the committed artifact (training/artifacts/<name>/, see artifact.py) from which set-up
assembles the served bundle; set-up never runs this. Each run writes the release after the committed one. With
--init artifact it starts from that release's trained tensors, so dose accumulates across runs (and machines
whose caches are gone). A run is resumable: it checkpoints every --checkpoint-every seconds (default under
.cache/training/checkpoints; --checkpoint-dir puts them somewhere that outlives the machine) and the same command
continues from the last checkpoint. Its dose curve (examples seen -> held-out cosine, dev nDCG@10) goes to
docs/figures/distill-<name>.r<release>.jsonl.

Student = MiniLM encoder + linear projection (no bias) to the teacher's width, mean pooled, L2-normalised.
Texts = real search queries, single sentences of the shared corpora (query-length, in-domain) and truncated
passages. Targets = the teacher bundle's own (ONNX) embeddings of the same texts, cached on disk. The projection
starts at the least-squares solution on the cached pairs (or at the continued release's), then the trainable part
(all but the word embeddings; with --freeze-layers, only the layers above the frozen ones, fed from their cached
outputs) is fine-tuned on
MSE(student, teacher) + (1 - cosine) + a ranking term (rank_loss: the teacher's and the student's similarities
to the corpus texts' teacher vectors, compared as distributions) over length-grouped batches. Only queries are
ever encoded by the student at serve time; documents are encoded by the teacher alone.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import random
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from safetensors.torch import load_file
from transformers.masking_utils import create_bidirectional_mask

from . import BUILDER

from .artifact import ARTIFACTS_DIR, assemble, checked_artifact, load_trained, read_provenance, write_artifact
from .data import load
from .devset import DEV_SPLITS, DevSet, load_dev_set
from .embcache import EmbeddingCache
from .encode import Encoder
from .export import TokenGraph, load_encoder
from .fetch import fetch
from .files import read_json, sha256_json, write_json
from .paths import REPO_ROOT, force_offline, models_dir, work_dir
from .sources import PYPI_MODELS, ModelSpec
from .tokens import BundleTokenizer

RECIPE = 5  # bump when the training procedure changes what the same inputs produce


@dataclass(frozen=True)
class DistillConfig:
    name: str = "leaf-minilm-mpnet"
    # The int8 teacher: its own space (cosine >= 0.995 to fp32), 2-3x cheaper targets, and the bundle that embeds
    # the documents the student's queries are searched against (tandem up, the eval).
    teacher: str = "all-mpnet-base-v2-int8"  # bundle name under --models (or a path)
    student: str = "all-minilm-l6-v2"  # PyPI model key (sources.py)
    queries: int = 14000  # general queries first: the student also serves collections unlike the shared corpora
    passages: int = 300
    sentences: int = 3000
    passage_words: int = 96
    heldout: int = 300
    train_max_tokens: int = 128
    steps: int = 1500  # ignored when budget > 0
    budget: float = 0.0  # seconds of training; the schedule follows the share of it spent, and steps follow
    batch: int = 32
    lr: float = 1e-4
    proj_lr: float = 1e-4
    warmup: int = 50
    rank_weight: float = 1.0  # weight of rank_loss over the corpus texts' teacher vectors; 0: alignment only
    rank_temperature: float = 0.05
    freeze_word_embeddings: bool = True  # a 12M-parameter table that queries barely move; not in the artifact
    freeze_layers: int = 0  # >0: embeddings + this many lower layers frozen, their outputs computed once per text
    dev_documents: str = ""  # bundle whose cached document vectors dev queries search ("": the teacher)
    init: str = "base"  # "base": pinned base weights + least-squares projection; "artifact": the committed release
    lstsq_texts: int = 20000  # training texts the least-squares projection is fitted on
    eval_points: int = 10  # dose-curve points over the run (held-out cosine, dev nDCG)
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

    def _pool(self, h: torch.Tensor, mask: torch.Tensor, project: bool) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.projection(pooled) if project else pooled

    def pooled(self, ids: torch.Tensor, mask: torch.Tensor, project: bool = True) -> torch.Tensor:
        kwargs = {"token_type_ids": torch.zeros_like(ids)} if self.graph.needs_token_types else {}
        h = self.encoder(input_ids=ids, attention_mask=mask, **kwargs).last_hidden_state
        return self._pool(h, mask, project)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.pooled(ids, mask), dim=-1)

    # Frozen lower layers (DistillConfig.freeze_layers): their outputs are computed once per text (`lower`) and each
    # step runs only the trainable top (`forward_top`), the same computation as `forward` split in two.
    def layers(self) -> nn.ModuleList:
        stack = getattr(getattr(self.encoder, "encoder", None), "layer", None)
        if not isinstance(stack, nn.ModuleList):
            raise ValueError(f"{type(self.encoder).__name__} has no encoder.layer stack to split")
        return stack

    def freeze_lower(self, n: int) -> None:
        """Embeddings and the first n layers stop training (n < number of layers: the top always trains)."""
        stack = self.layers()
        if not 0 < n < len(stack):
            raise ValueError(f"freeze_layers must be between 1 and {len(stack) - 1} for this encoder, got {n}")
        for module in (self.encoder.embeddings, *stack[:n]):
            module.requires_grad_(False)

    def _mask(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        return create_bidirectional_mask(config=self.encoder.config, inputs_embeds=h, attention_mask=mask)

    @torch.no_grad()
    def lower(self, ids: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
        kwargs = {"token_type_ids": torch.zeros_like(ids)} if self.graph.needs_token_types else {}
        h = self.encoder.embeddings(input_ids=ids, **kwargs)
        ext = self._mask(h, mask)
        for layer in self.layers()[:n]:
            h = layer(h, ext)
        return h

    def forward_top(self, h: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
        ext = self._mask(h, mask)
        for layer in self.layers()[n:]:
            h = layer(h, ext)
        return F.normalize(self._pool(h, mask, project=True), dim=-1)


class LowerCache:
    """The frozen lower layers' output for every training text, computed once (fp16, each cut to its length).

    With the embeddings and the first n layers frozen, every step would recompute the same activations for them;
    caching those makes a step cost only the trainable top's forward and backward.
    """

    def __init__(self, student: Student, tok: BundleTokenizer, texts: list[str], n: int, device: str) -> None:
        self.n = n
        self.hidden: list[torch.Tensor] = []
        slots: dict[int, torch.Tensor] = {}
        t0 = time.time()
        student.eval()
        for ids, mask, idx in batches(tok, texts, 128):
            h = student.lower(ids.to(device), mask.to(device), n).to("cpu", torch.float16)
            for j, i in enumerate(idx.tolist()):
                slots[i] = h[j, : int(mask[j].sum())].clone()
        self.hidden = [slots[i] for i in range(len(texts))]
        tokens = sum(h.shape[0] for h in self.hidden)
        log(f"frozen layers 0-{n - 1}: outputs of {len(texts)} texts cached ({tokens} tokens, "
            f"{tokens * self.hidden[0].shape[1] * 2 / 2**20:.0f} MiB) in {time.time() - t0:.0f}s")

    def batch(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.hidden[i] for i in idx]
        width = max(r.shape[0] for r in rows)
        h = torch.zeros(len(rows), width, rows[0].shape[1])
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for j, r in enumerate(rows):
            h[j, : r.shape[0]] = r.float()
            mask[j, : r.shape[0]] = 1
        return h, mask


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


@dataclass
class Progress:
    """Everything a resumed run needs to continue where it stopped (saved in the checkpoint)."""

    step: int = 0
    train_seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    dose: list[dict[str, Any]] = field(default_factory=list)  # one row per eval point
    queue: list[list[int]] = field(default_factory=list)
    rng_state: dict[str, Any] | None = None  # numpy's (batch order)
    torch_rng: torch.Tensor | None = None  # torch's (dropout)
    best: dict[str, Any] | None = None  # the dose point the dev set chose, with its student state


class Checkpoint:
    """One file, replaced atomically: student, optimiser and Progress. A run killed at any moment resumes."""

    def __init__(self, directory: Path, every_seconds: float) -> None:
        self.path = directory / "checkpoint.pt"
        self.every = every_seconds
        self.last = time.time()

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=False)

    def due(self) -> bool:
        return time.time() - self.last >= self.every

    def save(self, student: nn.Module, opt: torch.optim.Optimizer, progress: Progress) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save({"student": student.state_dict(), "opt": opt.state_dict(), "progress": progress.__dict__}, tmp)
        os.replace(tmp, self.path)
        self.last = time.time()


@dataclass
class DoseProbe:
    """Held-out cosine and dev-split retrieval of the student as it trains: the dose curve, and model selection."""

    tok: BundleTokenizer
    heldout_texts: dict[str, list[str]]
    heldout_targets: dict[str, np.ndarray]
    prefix: str
    documents_sha: str  # the bundle whose cached document vectors the dev queries are searched against
    dims: int
    device: str
    log_path: Path | None
    examples_before: int = 0  # what earlier releases saw, for a run that continues one
    dev: dict[str, DevSet] = field(default_factory=dict)

    def load_dev(self) -> None:
        """Dev sets whose teacher document vectors the eval has cached (checked again at each point)."""
        for name, split in DEV_SPLITS:
            key = f"{name}/{split}"
            if key not in self.dev:
                ds = load_dev_set(name, split, self.documents_sha, self.dims, log=lambda m: None)
                if ds is not None:
                    self.dev[key] = ds

    def __call__(self, student: "Student", progress: Progress, batch: int) -> dict[str, Any]:
        self.load_dev()
        row: dict[str, Any] = {
            "step": progress.step, "examples": progress.step * batch,
            "examples_total": self.examples_before + progress.step * batch,
            "train_seconds": round(progress.train_seconds),
            "loss": round(float(np.mean(progress.losses[-50:])), 5) if progress.losses else None,
            "heldout_cosine": {k: heldout_cosines(student, self.tok, v, self.heldout_targets[k], self.device)
                               for k, v in self.heldout_texts.items()},
            "dev": {k: ds.score(encode_student(student, self.tok, [self.prefix + q for q in ds.queries],
                                               device=self.device))
                    for k, ds in self.dev.items()},
        }
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        log(f"dose: step {row['step']}, {row['examples']} examples, {row['train_seconds']}s: "
            f"held-out {({k: v['mean'] for k, v in row['heldout_cosine'].items()})}, dev {row['dev']}")
        return row


def dev_score(row: dict[str, Any]) -> float | None:
    """Mean dev nDCG@10 over the dev sets a row has (None without any)."""
    dev = row.get("dev") or {}
    return float(np.mean([v["ndcg@10"] for v in dev.values()])) if dev else None


def _bundle_dir(name: str, models: Path) -> Path:
    """A bundle named under --models, or a path to one."""
    return Path(name) if "/" in name else models / name


def run_release(name: str, artifacts: Path) -> int:
    """The release a run writes: the one after the committed artifact's (1 for a name never released)."""
    return read_provenance(name, artifacts)["release"] + 1 if (artifacts / name / "provenance.json").exists() else 1


def parent_release(cfg: DistillConfig, artifacts: Path, space: str,
                   base_weights: dict[str, str]) -> dict[str, Any] | None:
    """With cfg.init == "artifact": the committed release this run continues from, checked like set-up checks it."""
    if cfg.init == "base":
        return None
    prov, _ = checked_artifact(cfg.name, artifacts)
    if prov["spec"]["space"] != space or prov["base"]["key"] != cfg.student \
            or prov["base"]["weights_sha256"] != base_weights:
        raise SystemExit(f"release {prov['release']} of {cfg.name} was trained from {prov['base']['key']} into "
                         f"{prov['spec']['space']}: it cannot start a run of {cfg.student} into {space}")
    training = prov["training"]
    return {"release": prov["release"], "file": prov["file"], "sha256": prov["sha256"],
            "examples_total": training.get("examples_seen_total", training["examples_seen"])}


def distill(cfg: DistillConfig, models: Path, int8: bool = True, force: bool = False, device: str = "auto",
            threads: int | None = None, artifacts: Path = ARTIFACTS_DIR, checkpoint_dir: Path | None = None,
            checkpoint_every: float = 600.0, log_path: Path | None = None) -> list[Path]:
    """Train, write the artifact (artifacts/<name>/), then assemble the bundles from it as set-up does."""
    t_start = time.time()
    force_offline()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if threads:
        torch.set_num_threads(threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    teacher_dir = _bundle_dir(cfg.teacher, models)
    teacher_m = read_json(teacher_dir / "manifest.json")
    teacher_sha = teacher_m["provenance"]["onnx_sha256"]
    # Dev queries are searched against a teacher bundle's document vectors as `tandem eval` cached them: by default
    # this teacher's; another bundle of the same space (fp32 for an int8 teacher) where that is what was embedded.
    documents_m = read_json(_bundle_dir(cfg.dev_documents, models) / "manifest.json") if cfg.dev_documents \
        else teacher_m
    if documents_m["space"] != teacher_m["space"]:
        raise SystemExit(f"--dev-documents {cfg.dev_documents} is in {documents_m['space']}, the teacher in "
                         f"{teacher_m['space']}: dev figures need documents of the teacher's space")
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
    parent = parent_release(cfg, artifacts, teacher_m["space"], student_src.weights_sha256)
    release = run_release(cfg.name, artifacts)
    distill_key = sha256_json({"builder": BUILDER, "recipe": RECIPE, "config": asdict(cfg), "teacher": teacher_sha,
                               "student": student_src.weights_sha256, "spec": asdict(spec),
                               "parent": parent["sha256"] if parent else None})
    prov_path = artifacts / cfg.name / "provenance.json"
    if not force and prov_path.exists() and read_json(prov_path).get("training", {}).get("distill_key") == distill_key:
        log(f"{cfg.name}: artifact already trained with these inputs (distill_key {distill_key[:12]}); assembling")
        return assemble(cfg.name, models, artifacts, int8=int8)

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

    # 2. Student; from a checkpoint, or with the projection at the least-squares solution on the cached pairs.
    t1 = time.time()
    encoder = load_encoder(student_src.hf_dir)
    student = Student(encoder, int(teacher_m["dims"]))
    inherited: list[str] = []
    if parent is not None:  # the previous release's trained tensors: its dose is where this run starts
        tensors = load_file(str(artifacts / cfg.name / parent["file"]))
        with torch.no_grad():
            student.projection.weight.copy_(load_trained(encoder, tensors).weight)
        inherited = [k.removeprefix("encoder.") for k in tensors if k.startswith("encoder.")]
    student = student.to(device)
    if cfg.freeze_word_embeddings:
        encoder.get_input_embeddings().weight.requires_grad_(False)
    if cfg.freeze_layers:
        student.freeze_lower(cfg.freeze_layers)
    tok = BundleTokenizer(student_src.hf_dir / "tokenizer.json", cfg.train_max_tokens)
    prefix = spec.query_prefix
    train_texts = [prefix + t for t in data.train]
    probe = DoseProbe(tok, {k: [prefix + t for t in v] for k, v in heldout.items()}, y_heldout, prefix,
                      documents_m["provenance"]["onnx_sha256"], int(teacher_m["dims"]), device, log_path,
                      parent["examples_total"] if parent else 0)
    ckpt = Checkpoint(checkpoint_dir or work_dir() / "checkpoints" / f"{cfg.name}-{distill_key[:12]}",
                      checkpoint_every)
    saved = ckpt.load()
    if saved is None and parent is not None:
        log(f"warm start from release {parent['release']} ({parent['file']}, {parent['examples_total']} examples seen)")
        if log_path is not None and log_path.exists():
            log_path.unlink()
        progress = Progress()
    elif saved is None:
        fit = np.random.default_rng(cfg.seed).permutation(n_train)[: cfg.lstsq_texts]
        x = encode_student(student, tok, [train_texts[i] for i in fit], project=False, device=device)
        w = least_squares_projection(x, y_train[fit])
        with torch.no_grad():
            student.projection.weight.copy_(torch.from_numpy(w).to(device))
        log(f"least-squares projection on {len(fit)} texts ({time.time() - t1:.0f}s)")
        if log_path is not None and log_path.exists():
            log_path.unlink()  # a fresh run starts a fresh dose curve
        progress = Progress()
    else:
        student.load_state_dict(saved["student"])
        progress = Progress(**saved["progress"])
        log(f"resumed from {ckpt.path}: step {progress.step}, {progress.train_seconds:.0f}s of training done")

    # 3. Fine-tune encoder + projection, probing the dose curve on the way.
    corpus_rows = [i for i, kind in enumerate(data.kinds) if kind != "query"]
    lower = LowerCache(student, tok, train_texts, cfg.freeze_layers, device) if cfg.freeze_layers else None
    losses = train(student, tok, train_texts, y_train, cfg, device, corpus_rows, progress=progress,
                   checkpoint=ckpt, probe=probe, saved_opt=saved["opt"] if saved else None, lower=lower)
    init = progress.dose[0]["heldout_cosine"]
    final = progress.dose[-1]
    chosen = final
    if progress.best is not None and progress.best["row"]["step"] != final["step"] and dev_score(final) is not None \
            and dev_score(progress.best["row"]) > dev_score(final):  # type: ignore[operator]
        chosen = progress.best["row"]
        student.load_state_dict(progress.best["state"])
    log(f"fine-tuned {progress.step} steps in {progress.train_seconds:.0f}s: loss {losses[0]:.4f} -> "
        f"{np.mean(losses[-20:]):.4f}; chosen on dev: step {chosen['step']} {chosen['dev'] or '(no dev set cached)'}")

    # 4. The artifact (what training changed, fp16), then the bundles from it, exactly as set-up builds them.
    student = student.to("cpu").eval()
    tail = max(1, min(20, len(losses) // 10))
    machine = f"{os.cpu_count()} x {_cpu_name()}, {platform.system()} {platform.machine()}, torch {torch.__version__}"
    training: dict[str, Any] = {
        "recipe": RECIPE,
        "method": "LEAF-style embedding alignment: MSE(unit vectors) + (1 - cosine)"
                  + (" + rank_weight x KL(teacher || student) of similarities to the corpus texts' teacher vectors"
                     if cfg.rank_weight > 0 else "")
                  + (f"; continued from release {parent['release']}" if parent else "; projection init by least squares")
                  + (f"; embeddings and layers 0-{cfg.freeze_layers - 1} frozen, their outputs cached"
                     if cfg.freeze_layers else ""),
        "init": {k: parent[k] for k in ("release", "file", "sha256", "examples_total")} if parent else "base",
        "distill_key": distill_key,
        "config": asdict(cfg),
        "teacher": {"bundle": teacher_m["name"], "onnx_sha256": teacher_sha, "space": teacher_m["space"]},
        "student_init": {"source": student_src.source, "weights_sha256": student_src.weights_sha256},
        "data": data.sources,
        "train_texts": n_train,
        "steps": progress.step,
        "examples_seen": progress.step * cfg.batch,
        "examples_seen_total": (parent["examples_total"] if parent else 0) + progress.step * cfg.batch,
        "rank_loss": {"weight": cfg.rank_weight, "temperature": cfg.rank_temperature,
                      "bank": f"teacher vectors of the {len(corpus_rows)} corpus texts in the training mix"}
        if cfg.rank_weight > 0 else "off",
        "device": device,
        "machine": machine,
        "loss": {"first": round(losses[0], 5), "last": round(float(np.mean(losses[-tail:])), 5),
                 "min": round(min(losses), 5)},
        "seconds": {"teacher_embedding": round(teacher_seconds), "train": round(progress.train_seconds),
                    "total_this_session": round(time.time() - t_start)},
        "dose_curve": str(log_path.relative_to(REPO_ROOT)) if log_path and log_path.is_relative_to(REPO_ROOT)
        else None,
    }
    write_artifact(artifacts / cfg.name, cfg.name, release, student.encoder, student.projection, cfg.student, spec, inherited, {
        "training": training,
        "heldout_cosine_to_teacher": {"least_squares_init": init, "final": chosen["heldout_cosine"]},
        "dev": {"chosen_step": chosen["step"], "scores": chosen["dev"],
                "splits": [f"{n}/{s}" for n, s in DEV_SPLITS],
                "documents": {"bundle": documents_m["name"], "onnx_sha256": documents_m["provenance"]["onnx_sha256"]}},
    })
    out = assemble(cfg.name, models, artifacts, int8=int8, force=True)
    prov = read_json(artifacts / cfg.name / "provenance.json")
    prov["onnx_sha256"] = read_json(out[0] / "manifest.json")["provenance"]["onnx_sha256"]
    write_json(artifacts / cfg.name / "provenance.json", prov)
    log(f"done in {time.time() - t_start:.0f}s")
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return re.sub(r"\s+", " ", line.split(":", 1)[1]).strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


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


def lr_scale(step: int, done: float, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay over the share `done` (0..1) of the run."""
    return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))


def train(student: Student, tok: BundleTokenizer, texts: list[str], targets: np.ndarray, cfg: DistillConfig,
          device: str, bank_rows: list[int] | None = None, progress: Progress | None = None,
          checkpoint: Checkpoint | None = None, probe: DoseProbe | None = None,
          saved_opt: dict[str, Any] | None = None, lower: LowerCache | None = None) -> list[float]:
    """AdamW, linear warmup then cosine decay, over length-grouped random batches (reshuffled each epoch).

    The run lasts cfg.steps steps, or with cfg.budget > 0 that many seconds of training, the schedule following
    the share of the budget spent. With cfg.rank_weight > 0, the teacher vectors of `bank_rows` (the corpus texts)
    are the bank of rank_loss, and a text in the batch never ranks against its own row. `probe` records the dose
    curve at cfg.eval_points even shares of the run (and before the first step) and keeps the student state the
    dev set likes best; `checkpoint` saves everything a resumed run needs. With `lower`, each step starts from the
    cached outputs of the frozen lower layers.
    """
    p = progress or Progress()
    student.train()
    opt = torch.optim.AdamW([
        {"params": [q for q in student.encoder.parameters() if q.requires_grad], "lr": cfg.lr},
        {"params": student.projection.parameters(), "lr": cfg.proj_lr},
    ], weight_decay=0.01)
    if saved_opt is not None:
        opt.load_state_dict(saved_opt)
    base = [g.get("initial_lr", g["lr"]) for g in opt.param_groups]
    for g, lr in zip(opt.param_groups, base):
        g["initial_lr"] = lr
    rows = tok.ids(texts)
    lengths = [len(r) for r in rows]
    y = torch.from_numpy(targets)
    bank_idx = torch.tensor(bank_rows, dtype=torch.long) if cfg.rank_weight > 0 and bank_rows else None
    bank = y[bank_idx].to(device) if bank_idx is not None else None
    rng = np.random.default_rng(cfg.seed)
    if p.rng_state is not None:
        rng.bit_generator.state = p.rng_state
    if p.torch_rng is not None:
        torch.set_rng_state(p.torch_rng)
    every = max(1, cfg.steps // 10)

    def done() -> float:
        return p.train_seconds / cfg.budget if cfg.budget > 0 else p.step / cfg.steps

    def probe_now() -> None:
        if probe is None:
            return
        row = probe(student, p, cfg.batch)
        student.train()
        p.dose.append(row)
        score = dev_score(row)
        if score is not None and (p.best is None or score > (dev_score(p.best["row"]) or -1.0)):
            p.best = {"row": row, "state": copy.deepcopy(student.state_dict())}

    if not p.dose:
        probe_now()
    next_probe = (math.floor(done() * cfg.eval_points) + 1) / cfg.eval_points
    while done() < 1.0:
        t_step = time.perf_counter()
        if not p.queue:
            p.queue = length_grouped_batches(lengths, min(cfg.batch, len(texts)), rng)
        idx = p.queue.pop()
        scale = lr_scale(p.step, done(), cfg.warmup)
        for g, lr in zip(opt.param_groups, base):
            g["lr"] = lr * scale
        if lower is not None:
            h, hmask = lower.batch(idx)
            s = student.forward_top(h.to(device), hmask.to(device), lower.n)
        else:
            ids, mask = tok.pad([rows[i] for i in idx])
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
        p.losses.append(float(loss.item()))
        p.step += 1
        p.train_seconds += time.perf_counter() - t_step
        if cfg.budget <= 0 and (p.step % every == 0 or p.step == 1):
            log(f"step {p.step}/{cfg.steps} loss {np.mean(p.losses[-every:]):.4f}")
        if done() >= next_probe or done() >= 1.0:
            probe_now()
            next_probe = (math.floor(done() * cfg.eval_points) + 1) / cfg.eval_points
        if checkpoint is not None and (checkpoint.due() or done() >= 1.0):
            p.rng_state, p.torch_rng = rng.bit_generator.state, torch.get_rng_state()
            checkpoint.save(student, opt, p)
    student.eval()
    return p.losses


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")


def parse_duration(text: str) -> float:
    """'90m', '2h', '3600' or '3600s' -> seconds (> 0); argparse refuses anything else with the flag's name."""
    m = _DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"must be a duration above 0 such as 90m, 2h or 3600s, got {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


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
    ap.add_argument("--steps", type=positive, default=d.steps, help="length of the run when no --budget is given")
    ap.add_argument("--budget", type=parse_duration, default=d.budget or None,
                    help="length of the run as training time (90m, 2h, 3600s): steps follow, the lr schedule "
                         "follows the share of the budget spent")
    ap.add_argument("--batch", type=positive, default=d.batch)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--proj-lr", type=float, default=d.proj_lr)
    ap.add_argument("--warmup", type=positive, default=d.warmup)
    ap.add_argument("--rank-weight", type=_number(float, 0.0, inclusive=True), default=d.rank_weight,
                    help="weight of the ranking term over the corpus texts' teacher vectors (0: alignment only)")
    ap.add_argument("--rank-temperature", type=_number(float, 0.0, inclusive=False), default=d.rank_temperature)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--drop-prefix", action="append", default=[], help="drop train-queries ids with this prefix")
    ap.add_argument("--init", choices=("base", "artifact"), default=d.init,
                    help="base: the pinned base weights + a least-squares projection; artifact: continue from the "
                         "committed release (its dose is where this run starts)")
    ap.add_argument("--freeze-layers", type=count, default=d.freeze_layers,
                    help="freeze the embeddings and this many lower layers and cache their outputs once (0: none)")
    ap.add_argument("--dev-documents", default=d.dev_documents,
                    help="score dev queries against this bundle's cached document vectors (same space as the "
                         "teacher; default: the teacher's own)")
    ap.add_argument("--eval-points", type=positive, default=d.eval_points,
                    help="dose-curve points (held-out cosine, dev nDCG@10) over the run")
    ap.add_argument("--lstsq-texts", type=positive, default=d.lstsq_texts,
                    help="training texts the least-squares projection is fitted on")
    ap.add_argument("--artifacts", type=Path, default=ARTIFACTS_DIR, help="where the artifact is written")
    ap.add_argument("--checkpoint-dir", type=Path, default=None,
                    help="checkpoints (default .cache/training/checkpoints/<name>-<key>); the same command resumes")
    ap.add_argument("--checkpoint-every", type=parse_duration, default=600.0)
    ap.add_argument("--log", type=Path, default=None,
                    help="dose-curve JSONL (default docs/figures/distill-<name>.r<release>.jsonl)")
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
                        drop_prefixes=tuple(a.drop_prefix), budget=a.budget or 0.0, eval_points=a.eval_points,
                        lstsq_texts=a.lstsq_texts, init=a.init, freeze_layers=a.freeze_layers,
                        dev_documents=a.dev_documents)
    log_path = a.log or REPO_ROOT / "docs" / "figures" / \
        f"distill-{a.name}.r{run_release(a.name, a.artifacts)}.jsonl"
    distill(cfg, a.models, int8=not a.no_int8, force=a.force, device=a.device, threads=a.threads,
            artifacts=a.artifacts, checkpoint_dir=a.checkpoint_dir, checkpoint_every=a.checkpoint_every,
            log_path=log_path)


if __name__ == "__main__":
    main(sys.argv[1:])
