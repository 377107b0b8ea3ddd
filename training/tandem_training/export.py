"""PyTorch (transformers) -> ONNX token graph: inputs input_ids, attention_mask (int64, dynamic [batch, sequence]),
output last_hidden_state [batch, sequence, hidden]. Pooling stays outside the graph (the runtime does it)."""

from __future__ import annotations

import contextlib
import inspect
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .files import read_json
from .paths import force_offline

OPSET = 17
# torch's exporter writes opset 18 and converts down to OPSET. The converter cannot rewrite every graph
# (EmbeddingGemma's ReduceMean takes its axes as a computed input), and such a graph keeps opset 18, which
# every ONNX Runtime the services use (>= 1.14) runs. The opset a bundle got is recorded in its provenance.
EXPORTER_OPSET = 18
OUTPUT = "last_hidden_state"
# Above this the graph cannot be a single protobuf (2 GiB limit): weights go to model.onnx.data.
EXTERNAL_DATA_BYTES = 1_800_000_000


class TokenGraph(nn.Module):
    """The exported computation: encoder tokens, optionally through a linear projection.

    A distilled student's projection (384 -> 768) is folded in here: mean pooling is linear, so
    mean(W h_t) == W mean(h_t), and the bundle stays a plain token graph of the teacher's width.
    """

    def __init__(self, encoder: nn.Module, projection: nn.Linear | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.projection = projection
        # BERT takes token_type_ids; single-segment input always has zeros there, so they are built
        # inside the graph and the runtime only feeds ids + mask.
        self.needs_token_types = "token_type_ids" in inspect.signature(encoder.forward).parameters

    @property
    def hidden_size(self) -> int:
        if self.projection is not None:
            return int(self.projection.out_features)
        return int(self.encoder.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        kwargs = {"token_type_ids": torch.zeros_like(input_ids)} if self.needs_token_types else {}
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return self.projection(h) if self.projection is not None else h


def load_encoder(hf_dir: Path) -> nn.Module:
    """Load a transformers encoder from a local directory only."""
    force_offline()
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # Eager attention: exports to plain MatMul/Softmax that every ONNX Runtime build runs.
    model = AutoModel.from_pretrained(str(hf_dir), attn_implementation="eager", local_files_only=True)
    return model.eval()


def export_onnx(graph: TokenGraph, out: Path) -> tuple[list[Path], int]:
    """torch.export-based exporter (dynamo=True). The legacy TorchScript tracer bakes the export-time
    sequence length into transformers 5's mask construction and gives wrong outputs for other lengths.
    Returns the files written and the graph's opset."""
    graph = graph.eval()
    ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102], [101, 2178, 2028, 102, 0, 0, 0]], dtype=torch.long)
    ids = ids.clamp(max=int(graph.encoder.config.vocab_size) - 1)
    mask = (torch.arange(ids.shape[1])[None, :] < torch.tensor([[7], [4]])).long()
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    n_bytes = sum(p.numel() * p.element_size() for p in graph.parameters())
    external = n_bytes > EXTERNAL_DATA_BYTES
    with warnings.catch_warnings(), open(os.devnull, "w") as devnull:
        warnings.simplefilter("ignore")
        # The exporter prints progress lines to stdout; the builder prints its own.
        with contextlib.redirect_stdout(devnull), torch.no_grad():
            program = torch.onnx.export(
                graph,
                (ids, mask),
                input_names=["input_ids", "attention_mask"],
                output_names=[OUTPUT],
                dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
                opset_version=OPSET,
                dynamo=True,
                external_data=external,
                verbose=False,
            )
            assert program is not None
            program.save(str(out), external_data=external)
    files = [out]
    data = out.with_name(out.name + ".data")
    if external and data.exists():
        files.append(data)
    return files, _rename_dims(out)


def _rename_dims(path: Path) -> int:
    """Name the dynamic axes 'batch' / 'sequence' on inputs and output (the exporter may invent names)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        for i, name in ((0, "batch"), (1, "sequence")):
            if i < len(dims) and not dims[i].HasField("dim_value"):
                dims[i].dim_param = name
    (opset,) = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if opset not in (OPSET, EXPORTER_OPSET):
        raise RuntimeError(f"exported opset {opset} is neither {OPSET} nor the exporter's own {EXPORTER_OPSET}")
    # With external data the initialisers keep pointing at model.onnx.data; only the header is rewritten.
    onnx.save(model, str(path))
    return int(opset)


# sentence-transformers Dense modules whose activation is the identity: linear, so they fold into the graph.
IDENTITY = "torch.nn.modules.linear.Identity"


def fold_dense(dense_dirs: list[Path], hidden: int) -> nn.Linear:
    """Sentence-transformers Dense modules after pooling, composed into one linear map.

    Mean pooling is a weighted average whose weights sum to 1, so a linear map (bias included) commutes with
    it: W mean(h_t) + b == mean(W h_t + b). The composed map is applied per token inside the graph, and the
    bundle stays a plain token graph of the model's output width. A non-identity activation does not commute
    and is refused. The product is formed in float64 and stored as float32.
    """
    from safetensors.torch import load_file

    weight = torch.eye(hidden, dtype=torch.float64)
    bias = torch.zeros(hidden, dtype=torch.float64)
    has_bias = False
    for d in dense_dirs:
        cfg = read_json(d / "config.json")
        act = cfg.get("activation_function", IDENTITY)
        if act != IDENTITY:
            raise ValueError(f"{d.name}: activation {act} is not linear; only identity Dense modules can be folded")
        if int(cfg["in_features"]) != weight.shape[0]:
            raise ValueError(f"{d.name}: in_features {cfg['in_features']} does not follow the previous width "
                             f"{weight.shape[0]}")
        tensors = load_file(str(d / "model.safetensors"))
        w = tensors["linear.weight"].to(torch.float64)
        if tuple(w.shape) != (int(cfg["out_features"]), int(cfg["in_features"])):
            raise ValueError(f"{d.name}: linear.weight is {tuple(w.shape)}, config says "
                             f"[{cfg['out_features']}, {cfg['in_features']}]")
        weight, bias = w @ weight, w @ bias
        if cfg.get("bias", False):
            bias = bias + tensors["linear.bias"].to(torch.float64)
            has_bias = True
    linear = nn.Linear(hidden, weight.shape[0], bias=has_bias)
    with torch.no_grad():
        linear.weight.copy_(weight.to(torch.float32))
        if has_bias:
            assert linear.bias is not None
            linear.bias.copy_(bias.to(torch.float32))
    return linear.eval()
