from __future__ import annotations

import copy
from typing import Any

from tandem_training.manifest import make_manifest, validate
from tandem_training.sources import ALL_MINILM_L6_V2


def good() -> dict[str, Any]:
    return make_manifest(ALL_MINILM_L6_V2.spec, "all-minilm-l6-v2", "fp32", 384, "model.onnx", {
        "source": "pypi:x==1", "weights_sha256": {}, "onnx_sha256": "0" * 64, "tokenizer_sha256": "1" * 64,
        "checks": {}, "training": None})


def test_made_manifest_is_valid() -> None:
    assert validate(good()) == []


def test_rejects_contract_violations() -> None:
    cases: list[tuple[str, Any]] = [("role", "query"), ("pooling", "max"), ("precision", "int4"), ("dims", 768),
                                    ("format", "tandem-bundle/2"), ("max_tokens", 1), ("normalize", "yes")]
    for key, value in cases:
        m = good()
        m[key] = value
        assert validate(m), f"{key}={value!r} should be rejected"
    m = good()
    del m["space"]
    assert validate(m) == ["missing key space"]
    m = good()
    m["dense"] = {"file": "dense.f32", "in": 384, "out": 768, "bias": False}
    assert validate(m), "dense.out must equal dims"
    m["dims"] = 768
    assert validate(m) == []
    m2 = copy.deepcopy(good())
    del m2["provenance"]["onnx_sha256"]
    assert validate(m2)


def test_matryoshka_dims_are_optional_smaller_distinct_and_need_normalisation() -> None:
    m = good()
    assert m["matryoshka_dims"] == []
    del m["matryoshka_dims"]
    assert validate(m) == [], "bundles built before the field existed stay valid"
    made = make_manifest(ALL_MINILM_L6_V2.spec, "x", "fp32", 384, "model.onnx", good()["provenance"], (128, 256))
    assert made["matryoshka_dims"] == [256, 128] and validate(made) == []
    for bad in ([384], [64, 64], [0], ["256"]):
        m = good()
        m["matryoshka_dims"] = bad
        assert validate(m) == ["matryoshka_dims must be distinct positive integers below dims"], bad
    m = good()
    m["matryoshka_dims"], m["normalize"] = [64], False
    assert validate(m) == ["matryoshka_dims needs normalize: truncated vectors are re-normalised"]


def test_field_rules_come_from_the_runtimes_schema() -> None:
    m = good()
    m["onnx"] = {"file": "model.onnx"}
    assert validate(m) == ["missing key onnx.output", "missing key onnx.output_kind"]
    m = good()
    m["dense"] = {"file": "dense.f32", "in": 384, "out": "384", "bias": False}
    assert validate(m) == ["dense.out: '384' is not of type 'integer'"]
    m = good()
    m["name"] = ""
    assert validate(m) == ["name: '' should be non-empty"]
    m = good()
    del m["dense"]
    assert validate(m) == [], "the runtime reads a missing dense as null"
