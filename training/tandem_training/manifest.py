"""The bundle manifest, format "tandem-bundle/1": the contract with the TypeScript model runtime.
Its fields are checked against packages/model-runtime/manifest.schema.json, the JSON Schema generated
from the runtime's zod schema (`pnpm schema`), so both sides read one contract."""

from __future__ import annotations

import functools
import json
from datetime import datetime, timezone
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from . import BUILDER
from .paths import REPO_ROOT
from .sources import ModelSpec

FORMAT = "tandem-bundle/1"
# Read from the repository, not package data: the package is installed editable from it (setup.sh),
# and a copy would be one more file to keep in step.
SCHEMA_FILE = REPO_ROOT / "packages" / "model-runtime" / "manifest.schema.json"
MATRYOSHKA_RULE = "matryoshka_dims must be distinct positive integers below dims"
# The builder's own rule, not the runtime's: bundles built here record where every byte came from.
PROVENANCE_KEYS = ("source", "weights_sha256", "onnx_sha256", "tokenizer_sha256", "built_at", "builder", "checks",
                   "training")


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


@functools.cache
def _schema_validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))


def _schema_problems(m: Any) -> list[str]:
    problems: list[str] = []
    # best_match descends into anyOf (dense: an object or null) to the error of the branch that fits best.
    for e in (best_match([err]) for err in _schema_validator().iter_errors(m)):
        where = ".".join(str(p) for p in e.absolute_path)
        if e.validator == "required":
            # One error per missing key, each carrying the whole list: name the keys the instance lacks.
            problems += [f"missing key {where + '.' if where else ''}{k}" for k in e.validator_value
                         if k not in e.instance]
        elif e.absolute_path and e.absolute_path[0] == "matryoshka_dims":
            # Half of the field's rule is here, half in validate(): one message for it either way.
            problems.append(MATRYOSHKA_RULE)
        else:
            problems.append(f"{where or '(manifest)'}: {e.message}")
    return list(dict.fromkeys(problems))


def validate(m: Any) -> list[str]:
    """Problems with a manifest, empty when it satisfies the contract."""
    problems = _schema_problems(m)
    if problems:  # the rules below compare fields, so they need every field well-formed
        return problems

    def check(cond: bool, msg: str) -> None:
        if not cond:
            problems.append(msg)

    # What JSON Schema cannot say, as parseManifest in packages/model-runtime/src/manifest.ts checks it.
    dense = m.get("dense")
    if dense is None:
        check(m["hidden_size"] == m["dims"], "without dense, dims must equal hidden_size")
    else:
        check(dense["in"] == m["hidden_size"], "dense.in must equal hidden_size")
        check(dense["out"] == m["dims"], "dense.out must equal dims")
    # Optional (bundles built before it existed have none): smaller prefix sizes the vectors keep meaning at.
    mrl = m.get("matryoshka_dims", [])
    check(all(d < m["dims"] for d in mrl) and len(set(mrl)) == len(mrl), MATRYOSHKA_RULE)
    check(not mrl or m["normalize"], "matryoshka_dims needs normalize: truncated vectors are re-normalised")
    prov = m.get("provenance", {})
    for k in PROVENANCE_KEYS:
        check(k in prov, f"provenance.{k} missing")
    check(isinstance(prov.get("onnx_sha256"), str) and len(prov.get("onnx_sha256", "")) == 64,
          "provenance.onnx_sha256 must be a sha256 hex digest")
    return problems
