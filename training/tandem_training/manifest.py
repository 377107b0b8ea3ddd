"""The bundle manifest, format "tandem-bundle/1": the contract with the TypeScript model runtime
(packages/model-runtime/src/manifest.ts validates the same fields)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from . import BUILDER
from .sources import ModelSpec

FORMAT = "tandem-bundle/1"
REQUIRED = ("format", "name", "model_id", "role", "space", "dims", "hidden_size", "pooling", "normalize",
            "max_tokens", "query_prefix", "document_prefix", "precision", "onnx", "dense", "tokenizer", "provenance")


def make_manifest(
    spec: ModelSpec,
    name: str,
    precision: str,
    hidden_size: int,
    onnx_file: str,
    provenance: dict[str, Any],
    matryoshka_dims: tuple[int, ...] = (),
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "name": name,
        "model_id": spec.model_id,
        "role": spec.role,
        "space": spec.space,
        "dims": hidden_size,  # token graph of final width, no dense: dims == hidden_size
        "hidden_size": hidden_size,
        "pooling": spec.pooling,
        "normalize": spec.normalize,
        "max_tokens": spec.max_tokens,
        "query_prefix": spec.query_prefix,
        "document_prefix": spec.document_prefix,
        "precision": precision,
        "onnx": {"file": onnx_file, "output": "last_hidden_state", "output_kind": "token"},
        "dense": None,
        "matryoshka_dims": sorted(matryoshka_dims, reverse=True),
        "tokenizer": {"file": "tokenizer.json"},
        "provenance": {"built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "builder": BUILDER,
                       **provenance},
    }


def validate(m: Any) -> list[str]:
    """Problems with a manifest, empty when it satisfies the contract."""
    if not isinstance(m, dict):
        return ["manifest is not an object"]
    problems = [f"missing key {k}" for k in REQUIRED if k not in m]
    if problems:
        return problems

    def check(cond: bool, msg: str) -> None:
        if not cond:
            problems.append(msg)

    def pos_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    check(m["format"] == FORMAT, f"format must be {FORMAT}")
    for k in ("name", "model_id", "space"):
        check(isinstance(m[k], str) and len(m[k]) > 0, f"{k} must be a non-empty string")
    check(m["role"] in ("student", "teacher"), "role must be student|teacher")
    check(pos_int(m["dims"]), "dims must be a positive integer")
    check(pos_int(m["hidden_size"]), "hidden_size must be a positive integer")
    check(m["pooling"] in ("mean", "cls"), "pooling must be mean|cls")
    check(isinstance(m["normalize"], bool), "normalize must be a boolean")
    check(pos_int(m["max_tokens"]) and m["max_tokens"] >= 2, "max_tokens must be an integer >= 2")
    check(isinstance(m["query_prefix"], str) and isinstance(m["document_prefix"], str), "prefixes must be strings")
    check(m["precision"] in ("fp32", "int8", "fp16"), "precision must be fp32|int8|fp16")
    onnx = m["onnx"]
    check(isinstance(onnx, dict) and isinstance(onnx.get("file"), str) and isinstance(onnx.get("output"), str)
          and onnx.get("output_kind") in ("token", "pooled"), "onnx must be {file, output, output_kind token|pooled}")
    dense = m["dense"]
    if dense is None:
        check(m["hidden_size"] == m["dims"], "without dense, dims must equal hidden_size")
    else:
        check(isinstance(dense, dict) and isinstance(dense.get("file"), str) and pos_int(dense.get("in"))
              and pos_int(dense.get("out")) and isinstance(dense.get("bias"), bool), "dense must be {file,in,out,bias}")
        if isinstance(dense, dict):
            check(dense.get("in") == m["hidden_size"], "dense.in must equal hidden_size")
            check(dense.get("out") == m["dims"], "dense.out must equal dims")
    # Optional (bundles built before it existed have none): smaller prefix sizes the vectors keep meaning at.
    mrl = m.get("matryoshka_dims", [])
    check(isinstance(mrl, list) and all(pos_int(d) and pos_int(m["dims"]) and d < m["dims"] for d in mrl) and len(set(mrl)) == len(mrl),
          "matryoshka_dims must be distinct positive integers below dims")
    check(not mrl or m["normalize"] is True, "matryoshka_dims needs normalize: truncated vectors are re-normalised")
    check(isinstance(m["tokenizer"], dict) and isinstance(m["tokenizer"].get("file"), str), "tokenizer.file required")
    prov = m["provenance"]
    if not isinstance(prov, dict):
        problems.append("provenance must be an object")
    else:
        for k in ("source", "weights_sha256", "onnx_sha256", "tokenizer_sha256", "built_at", "builder", "checks",
                  "training"):
            check(k in prov, f"provenance.{k} missing")
        check(isinstance(prov.get("onnx_sha256"), str) and len(prov.get("onnx_sha256", "")) == 64,
              "provenance.onnx_sha256 must be a sha256 hex digest")
    return problems
