"""The committed student artifact: what set-up assembles matches what the training run recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from tandem_training.artifact import ARTIFACTS_DIR, assemble, read_provenance, verify
from tandem_training.files import read_json, sha256_file

SHIPPED = "leaf-minilm-mpnet"


@pytest.fixture(scope="module")
def provenance() -> dict[str, object]:
    return read_provenance(SHIPPED)


def test_the_artifact_is_one_compact_file_pinned_by_its_provenance(provenance: dict[str, object]) -> None:
    path = ARTIFACTS_DIR / SHIPPED / str(provenance["file"])
    assert sha256_file(path) == provenance["sha256"]
    assert path.stat().st_size == provenance["bytes"] <= 60 * 2**20
    assert sorted(p.name for p in (ARTIFACTS_DIR / SHIPPED).glob("*.safetensors")) == [path.name]


def test_the_provenance_names_every_input(provenance: dict[str, object]) -> None:
    tr = provenance["training"]
    assert isinstance(tr, dict)
    assert len(tr["teacher"]["onnx_sha256"]) == 64 and tr["teacher"]["space"] == provenance["spec"]["space"]
    assert all(len(v) == 64 for v in provenance["base"]["weights_sha256"].values())
    assert len(tr["data"]["queries"]["sha256"]) == 64
    assert tr["steps"] > 0 and tr["examples_seen"] == tr["steps"] * tr["config"]["batch"]
    assert tr["machine"] and tr["seconds"]["train"] > 0
    assert tr["dose_curve"] and (Path(__file__).resolve().parents[2] / tr["dose_curve"]).exists()
    held = provenance["heldout_cosine_to_teacher"]["final"]
    assert set(held) == {"queries", "passages", "sentences"} and all(0 < v["mean"] <= 1 for v in held.values())


def test_the_served_bundle_is_the_artifact(models: Path, provenance: dict[str, object]) -> None:
    fp32, int8 = assemble(SHIPPED, models)  # what build-all.sh runs; skipped when already assembled
    m = read_json(fp32 / "manifest.json")
    assert m["space"] == provenance["spec"]["space"] and m["role"] == "student"
    assert read_json(int8 / "manifest.json")["provenance"]["checks"]["int8_vs_fp32_min_cos"] >= 0.99
    result = verify(SHIPPED, models)
    # The vectors, not the bytes, are what is promised across CPUs.
    assert result["artifact_sha256_matches"] and result["reference_min_cosine"] >= 0.9999, result
