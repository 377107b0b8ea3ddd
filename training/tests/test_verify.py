"""The texts a bundle build verifies on come with the package: no dataset directory is read."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from tandem_training import verify
from tandem_training.verify import VERIFICATION_TEXTS, verification_texts


def test_verification_texts_need_no_datasets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TANDEM_DATASETS_DIR", str(tmp_path))  # empty: nothing to read there
    texts = verification_texts()
    assert len(texts) == 40 and len(set(texts)) == 40
    queries, passages = texts[:20], texts[20:]
    assert all(0 < len(q.split()) <= 15 for q in queries), "queries are query-length"
    assert max(len(p.split()) for p in passages) > 400, "some passages run far past any model's max_tokens"
    assert min(len(p.split()) for p in passages) >= 40
    # A small n keeps the mix: the first passages hold long ones (test_bundle verifies on 8 + 8).
    small = verification_texts(8, 8)
    assert small == texts[:8] + texts[20:28]
    assert max(len(p.split()) for p in small[8:]) > 400
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="holds 20 queries and 20 passages"):
        verification_texts(21, 20)


def test_the_file_is_package_data() -> None:
    """Found through the package (editable or installed), and declared as package data in pyproject.toml."""
    path = Path(str(files("tandem_training").joinpath(VERIFICATION_TEXTS)))
    assert path == Path(verify.__file__).with_name(VERIFICATION_TEXTS)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert sorted(data) == ["about", "passages", "queries"]
    pyproject = (Path(verify.__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert f'tandem_training = ["{VERIFICATION_TEXTS}"]' in pyproject


def test_passages_exercise_truncation(student_bundles: tuple[Path, Path]) -> None:
    """Token counts with the bundle's WordPiece tokenizer, untruncated: past MiniLM's 256 and MPNet's 384."""
    tok = Tokenizer.from_file(str(student_bundles[0] / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    lengths = [len(e.ids) for e in tok.encode_batch(verification_texts()[20:])]
    assert sum(n > 384 for n in lengths) >= 5, lengths
    assert sum(256 < n <= 384 for n in lengths) >= 3, lengths
    assert sum(n <= 256 for n in lengths) >= 5, lengths
    first8 = lengths[:8]
    assert any(n > 384 for n in first8) and any(256 < n <= 384 for n in first8), first8
