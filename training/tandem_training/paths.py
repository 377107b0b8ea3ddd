"""Where things live. Everything generated goes under <repo>/.cache (gitignored)."""

from __future__ import annotations

import os
from pathlib import Path

# training/tandem_training/paths.py -> repo root is two levels above the package.
REPO_ROOT = Path(__file__).resolve().parents[2]


def force_offline() -> None:
    """Model hubs are never contacted: weights come from PyPI wheels or local directories."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def cache_dir() -> Path:
    return Path(os.environ.get("TANDEM_CACHE", REPO_ROOT / ".cache"))


def models_dir() -> Path:
    """Default output root for bundles; the TypeScript services read from here (same variable as theirs)."""
    return Path(os.environ.get("TANDEM_MODELS_DIR", cache_dir() / "models"))


def work_dir() -> Path:
    """Downloaded wheels, extracted weights, embedding caches."""
    return cache_dir() / "training"


def datasets_dir() -> Path:
    """BEIR-format sets and the training query file, shared by the whole project."""
    return Path(os.environ.get("TANDEM_DATASETS_DIR", REPO_ROOT.parent / "shared" / "datasets"))
