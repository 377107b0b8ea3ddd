"""Dense modules after pooling fold into the token graph, and the bundle tokenizer only names ids the graph has."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from tandem_training.bundle import BuildError, dense_dirs, load_graph, st_reference
from tandem_training.export import IDENTITY, TokenGraph, fold_dense
from tandem_training.fetch import fetch
from tandem_training.sources import ALL_MINILM_L6_V2
from tandem_training.tokens import bundle_tokenizer_json

ST = "sentence_transformers.models."


def write_dense(d: Path, weight: torch.Tensor, bias: torch.Tensor | None = None, act: str = IDENTITY) -> None:
    d.mkdir(parents=True)
    out, inp = weight.shape
    (d / "config.json").write_text(json.dumps({"in_features": inp, "out_features": out, "bias": bias is not None,
                                               "activation_function": act}))
    save_file({"linear.weight": weight.contiguous(), **({"linear.bias": bias} if bias is not None else {})},
              str(d / "model.safetensors"))


def test_folded_dense_pair_equals_the_two_steps_after_mean_pooling(tmp_path: Path) -> None:
    """EmbeddingGemma's shape, scaled down: 8 -> 32 -> 8, then a biased 8 -> 4 to show biases fold too."""
    g = torch.Generator().manual_seed(0)
    w2, w3 = torch.randn(32, 8, generator=g), torch.randn(8, 32, generator=g)
    w4, b4 = torch.randn(4, 8, generator=g), torch.randn(4, generator=g)
    dirs = [tmp_path / "2_Dense", tmp_path / "3_Dense", tmp_path / "4_Dense"]
    write_dense(dirs[0], w2)
    write_dense(dirs[1], w3)
    write_dense(dirs[2], w4, b4)
    folded = fold_dense(dirs, 8)
    tokens = torch.randn(3, 11, 8, generator=g)
    mask = (torch.arange(11)[None, :] < torch.tensor([[11], [5], [1]])).float()
    with torch.no_grad():
        pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        two_step = (pooled @ w2.T @ w3.T) @ w4.T + b4  # what sentence-transformers computes
        per_token = folded(tokens)  # what the exported graph computes, pooled by the runtime after it
        folded_then_pooled = (per_token * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(folded_then_pooled, two_step, rtol=1e-4, atol=1e-4)
    assert (folded.in_features, folded.out_features, folded.bias is not None) == (8, 4, True)


def test_non_linear_or_mismatched_dense_is_refused(tmp_path: Path) -> None:
    write_dense(tmp_path / "tanh", torch.ones(4, 8), act="torch.nn.modules.activation.Tanh")
    with pytest.raises(ValueError, match="activation torch.nn.modules.activation.Tanh is not linear"):
        fold_dense([tmp_path / "tanh"], 8)
    write_dense(tmp_path / "wide", torch.ones(4, 16))
    with pytest.raises(ValueError, match="in_features 16 does not follow the previous width 8"):
        fold_dense([tmp_path / "wide"], 8)


def test_a_real_encoder_with_a_dense_module_becomes_one_projected_graph(tmp_path: Path) -> None:
    """load_graph on a sentence-transformers folder: MiniLM's weights plus a generated Dense 384 -> 16; the
    reference check (sentence-transformers itself) is required for it, and refused with the install line
    when sentence-transformers is missing."""
    src = fetch(ALL_MINILM_L6_V2).hf_dir
    folder = tmp_path / "st"
    folder.mkdir()
    for f in src.iterdir():
        if f.is_file():
            (folder / f.name).symlink_to(f)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text((src / "1_Pooling" / "config.json").read_text())
    write_dense(folder / "2_Dense", torch.randn(16, 384, generator=torch.Generator().manual_seed(1)))
    (folder / "modules.json").unlink()
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": ST + "Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": ST + "Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": ST + "Dense"},
        {"idx": 3, "name": "3", "path": "3_Normalize", "type": ST + "Normalize"}]))
    assert dense_dirs(folder) == [folder / "2_Dense"]
    graph = load_graph(folder)
    assert isinstance(graph, TokenGraph) and isinstance(graph.projection, nn.Linear) and graph.hidden_size == 16
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        with pytest.raises(BuildError, match="pip install -r training/requirements-reference.txt"):
            st_reference(folder)
    else:
        assert st_reference(folder) is not None
    (folder / "modules.json").unlink()
    (folder / "modules.json").write_text("[]")
    assert st_reference(folder) is None and load_graph(folder).projection is None


def test_bundle_tokenizer_drops_added_tokens_past_the_embedding_table(tmp_path: Path) -> None:
    """EmbeddingGemma declares <image_soft_token> as id 262144 for a 262144-row table."""
    src = tmp_path / "tokenizer.json"
    src.write_text(json.dumps({
        "added_tokens": [{"id": 0, "content": "<pad>", "special": True},
                         {"id": 9, "content": "<image_soft_token>", "special": True}],
        "truncation": None, "padding": {"strategy": "BatchLongest"}, "model": {"type": "BPE"}}))
    kept = json.loads(bundle_tokenizer_json(src, 64, vocab_rows=9))
    assert [t["content"] for t in kept["added_tokens"]] == ["<pad>"]
    assert kept["truncation"]["max_length"] == 64 and kept["padding"] is None
    unchanged = json.loads(bundle_tokenizer_json(src, 64, vocab_rows=10))
    assert len(unchanged["added_tokens"]) == 2
    assert bundle_tokenizer_json(src, 64) == bundle_tokenizer_json(src, 64, vocab_rows=10)
