"""fp32 ONNX -> dynamically quantised int8 (QInt8 weights, activations quantised per tensor at run time).

Which MatMuls can take int8 depends on the model and on the CPU: without AVX-512 VNNI (this machine) ONNX
Runtime's u8s8 kernels saturate int16 pair sums, and dynamic per-tensor activation scales are ruined by the
outlier channels some models (MPNet) carry into their FFN. So quantisation walks a ladder of recipes, smallest
model first, and keeps the first whose vectors stay within the cosine threshold of fp32 on real texts.

Measured here (min cosine to fp32, real texts):
  all-MiniLM-L6-v2  all MatMuls per-tensor 0.904, per-channel 0.986, per-channel with FFN-down fp32 0.9925 (33 MB).
  all-mpnet-base-v2 per-channel anything with FFN or QKV < 0.84 (FFN-up alone: -0.06); per-tensor FFN-down fp32
                    0.982; QUInt8 weights <= 0.83; per-tensor attention projections only (FFN fp32) 0.995.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic


@dataclass(frozen=True)
class Recipe:
    name: str
    per_channel: bool
    groups: tuple[str, ...]  # MatMul groups quantised: qkv, attn_out, ffn_up, ffn_down
    gather: bool  # quantise embedding tables too


LADDER: tuple[Recipe, ...] = (
    Recipe("per-channel, FFN-down kept fp32", True, ("qkv", "attn_out", "ffn_up"), True),
    Recipe("per-tensor, FFN-down kept fp32", False, ("qkv", "attn_out", "ffn_up"), True),
    Recipe("per-tensor, attention projections + embeddings only", False, ("qkv", "attn_out"), True),
    Recipe("per-tensor, attention projections only", False, ("qkv", "attn_out"), False),
)


def matmul_groups(model_path: Path) -> dict[str, list[str]]:
    """Classify MatMuls with a constant weight by their role in a BERT-like encoder layer."""
    model = onnx.load(str(model_path), load_external_data=False)
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    mms = [n for n in model.graph.node if n.op_type == "MatMul" and len(n.input) == 2 and n.input[1] in shapes]
    fan_out = Counter(n.input[0] for n in mms)
    groups: dict[str, list[str]] = {"qkv": [], "attn_out": [], "ffn_up": [], "ffn_down": []}
    for n in mms:
        dims = shapes[n.input[1]]
        if len(dims) != 2:
            continue
        if fan_out[n.input[0]] >= 3:
            groups["qkv"].append(n.name)  # query, key, value read the same input
        elif dims[0] == dims[1]:
            groups["attn_out"].append(n.name)
        elif dims[0] < dims[1]:
            groups["ffn_up"].append(n.name)
        else:
            groups["ffn_down"].append(n.name)
    return groups


def _quantize(fp32: Path, out: Path, recipe: Recipe, groups: dict[str, list[str]]) -> None:
    nodes = [n for g in recipe.groups for n in groups[g]]
    model = onnx.load(str(fp32), load_external_data=False)
    if recipe.gather:
        nodes += [n.name for n in model.graph.node if n.op_type == "Gather"]
    quantize_dynamic(
        model_input=str(fp32),
        model_output=str(out),
        weight_type=QuantType.QInt8,
        per_channel=recipe.per_channel,
        op_types_to_quantize=["MatMul", "Gather"],
        nodes_to_quantize=nodes,
    )


def quantize_int8(fp32: Path, out: Path, score: Callable[[Path], float], threshold: float,
                  log: Callable[[str], None] = print) -> dict[str, object]:
    """Quantise with the first recipe whose score (min cosine to fp32) reaches threshold.

    Returns the provenance record: the recipe used and the scores of the ones rejected on the way.
    """
    logging.getLogger().setLevel(logging.ERROR)
    groups = matmul_groups(fp32)
    tried: list[dict[str, object]] = []
    for recipe in LADDER:
        _quantize(fp32, out, recipe, groups)
        cos = score(out)
        tried.append({"recipe": recipe.name, "min_cos": round(cos, 5), "bytes": out.stat().st_size})
        log(f"int8 recipe '{recipe.name}': min cosine to fp32 {cos:.5f}, {out.stat().st_size / 1e6:.0f} MB")
        if cos >= threshold:
            return {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8",
                    "per_channel": recipe.per_channel, "recipe": recipe.name,
                    "quantized": {g: len(groups[g]) for g in recipe.groups} | ({"Gather": "all"} if recipe.gather else {}),
                    "kept_fp32": {g: len(v) for g, v in groups.items() if g not in recipe.groups},
                    "tried": tried}
    raise RuntimeError(f"no int8 recipe reached min cosine {threshold}: {tried}")
