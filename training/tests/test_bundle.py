"""An exported bundle equals its PyTorch source, obeys the manifest contract, and int8 stays close to fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from tandem_training.bundle import torch_runner
from tandem_training.encode import Encoder
from tandem_training.export import OPSET, TokenGraph, load_encoder
from tandem_training.fetch import fetch
from tandem_training.files import read_json, sha256_file
from tandem_training.manifest import validate
from tandem_training.sources import ALL_MINILM_L6_V2
from tandem_training.verify import MIN_INT8_VS_FP32, MIN_ONNX_VS_TORCH, min_cosine, triple_check, verification_texts


def test_manifest_contract(student_bundles: tuple[Path, Path]) -> None:
    for bundle, precision in zip(student_bundles, ("fp32", "int8")):
        m = read_json(bundle / "manifest.json")
        assert validate(m) == []
        assert m["precision"] == precision
        assert (m["role"], m["space"], m["dims"], m["pooling"], m["max_tokens"]) == (
            "student", "all-minilm-l6-v2/384", 384, "mean", 256)
        prov = m["provenance"]
        assert prov["onnx_sha256"] == sha256_file(bundle / "model.onnx")
        assert prov["tokenizer_sha256"] == sha256_file(bundle / "tokenizer.json")
        assert prov["weights_sha256"]["model.safetensors"].startswith("53aa5117")  # published all-MiniLM-L6-v2
        assert prov["checks"]["onnx_vs_torch_min_cos"] >= (MIN_ONNX_VS_TORCH if precision == "fp32" else 0.99)


def test_graph_signature(student_bundles: tuple[Path, Path]) -> None:
    model = onnx.load(str(student_bundles[0] / "model.onnx"), load_external_data=False)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    sess = ort.InferenceSession(str(student_bundles[0] / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = {i.name: (i.type, i.shape) for i in sess.get_inputs()}
    assert inputs == {"input_ids": ("tensor(int64)", ["batch", "sequence"]),
                      "attention_mask": ("tensor(int64)", ["batch", "sequence"])}
    (out,) = sess.get_outputs()
    assert (out.name, out.shape) == ("last_hidden_state", ["batch", "sequence", 384])


def test_onnx_matches_torch_and_int8_matches_fp32(student_bundles: tuple[Path, Path]) -> None:
    fp32_dir, int8_dir = student_bundles
    texts = verification_texts(8, 8)
    graph = TokenGraph(load_encoder(fetch(ALL_MINILM_L6_V2).hf_dir))
    ref = Encoder(fp32_dir, run=torch_runner(graph)).encode(texts, "document")
    fp32 = Encoder(fp32_dir).encode(texts, "document")
    int8 = Encoder(int8_dir).encode(texts, "document")
    assert min_cosine(ref, fp32) >= MIN_ONNX_VS_TORCH
    assert min_cosine(fp32, int8) >= MIN_INT8_VS_FP32
    # batch composition must not change a vector (padding is masked)
    alone = Encoder(fp32_dir).encode(texts[:1], "document")
    assert float((alone[0] * fp32[0]).sum()) > 0.99999


def test_similar_beats_dissimilar(student_bundles: tuple[Path, Path]) -> None:
    for bundle in student_bundles:
        assert triple_check(Encoder(bundle))["similar_gt_dissimilar"] == "8/8"


def test_truncation_keeps_closing_token(student_bundles: tuple[Path, Path]) -> None:
    enc = Encoder(student_bundles[0])
    (ids,) = enc.tokenizer.ids(["word " * 1000])
    assert len(ids) == 256 and ids[0] == 101 and ids[-1] == 102
    tok = read_json(student_bundles[0] / "tokenizer.json")
    assert tok["padding"] is None and tok["truncation"]["max_length"] == 256
    v = enc.encode(["word " * 1000])
    assert np.isfinite(v).all() and abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
