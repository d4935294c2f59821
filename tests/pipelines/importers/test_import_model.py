"""Dispatch by what the source is, and the pieces every importer shares."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.errors import PipelineError
from pipelines.importers import ImportRefusedError, import_model, source_format_of
from pipelines.importers.common import tree_sha256

Refused = Callable[..., str]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("m.onnx", "onnx"), ("M.ONNX", "onnx"), ("m.pt2", "torch-export"), ("b.zip", "monai-bundle")],
)
def test_format_by_suffix(tmp_path: Path, name: str, expected: str) -> None:
    (tmp_path / name).write_bytes(b"x")
    assert source_format_of(tmp_path / name) == expected


def test_a_folder_is_a_bundle(tmp_path: Path) -> None:
    assert source_format_of(tmp_path) == "monai-bundle"


def test_refuses_an_unknown_format(tmp_path: Path, refused: Refused) -> None:
    path = tmp_path / "model.h5"
    path.write_bytes(b"keras")
    work = tmp_path / "work"
    refused(lambda: import_model(path, None, work), work, "model.h5", ".onnx", ".pt2", "MONAI")


def test_refuses_a_missing_source(tmp_path: Path, refused: Refused) -> None:
    work = tmp_path / "work"
    refused(lambda: import_model(tmp_path / "nope.onnx", None, work), work, "does not exist")


def test_refuses_a_zip_that_is_not_a_zip(tmp_path: Path, refused: Refused) -> None:
    path = tmp_path / "bundle.zip"
    path.write_bytes(b"not a zip")
    work = tmp_path / "work"
    refused(lambda: import_model(path, None, work), work, "not a readable zip")


def test_refusals_are_pipeline_errors_on_one_line() -> None:
    error = ImportRefusedError("onnxruntime says:\n  line two\n\tline three")
    assert isinstance(error, PipelineError)
    assert str(error) == "onnxruntime says: line two line three"


def test_tree_hash_follows_content_and_relative_paths(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "configs").mkdir(parents=True)
        (root / "configs" / "metadata.json").write_text("{}")
    assert tree_sha256(a) == tree_sha256(b)
    (b / "configs" / "metadata.json").write_text("{ }")
    assert tree_sha256(a) != tree_sha256(b)
    (b / "configs" / "metadata.json").write_text("{}")
    (b / "configs" / "metadata.json").rename(b / "configs" / "meta.json")
    assert tree_sha256(a) != tree_sha256(b)
