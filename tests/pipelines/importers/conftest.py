"""Shared foreign models (built once per session: exports cost seconds) and the refusal check."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pipelines.importers import ImportedModel, ImportRefusedError, reference_runtime
from tests.fixtures import foreign_models as fm

Refused = Callable[..., str]


@pytest.fixture(scope="session")
def foreign_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("foreign")


@pytest.fixture(scope="session")
def onnx_classifier(foreign_dir: Path) -> fm.ForeignModel:
    return fm.build_onnx_classifier(foreign_dir / "onnx")


@pytest.fixture(scope="session")
def pt2_classifier(foreign_dir: Path) -> fm.ForeignModel:
    return fm.build_pt2_classifier(foreign_dir / "pt2")


@pytest.fixture(scope="session")
def bundle(foreign_dir: Path) -> fm.ForeignModel:
    return fm.build_monai_bundle(foreign_dir / "bundle")


@pytest.fixture
def refused() -> Refused:
    """``refused(call, workdir, *needles)``: the call is refused with one line naming the fix
    (every needle appears in it) and ``workdir`` holds nothing afterwards. Returns the message."""

    def check(call: Callable[[], Any], workdir: Path, *needles: str) -> str:
        with pytest.raises(ImportRefusedError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message, repr(message)
        assert message.strip() == message, repr(message)
        for needle in needles:
            assert needle in message, f"{needle!r} not in {message!r}"
        assert not workdir.exists() or not any(workdir.iterdir()), list(workdir.iterdir())
        return message

    return check


@pytest.fixture
def reproduces() -> Callable[..., None]:
    """``reproduces(imported, shape=None)``: the published artifact, run as Triton will run it,
    equals the model's own runtime (:func:`reference_runtime`) to 1e-5 on random batches of 3
    and 1 of per-sample ``shape`` (default: the spec's input shape, which must be fixed)."""
    return _reproduces


def _reproduces(
    imported: ImportedModel,
    shape: Sequence[int] | None = None,
    batch_sizes: tuple[int, ...] = (3, 1),
) -> None:
    reference = reference_runtime(imported)
    spec = imported.spec.model_dump(mode="json")
    assert imported.spec.input is not None
    shape = shape or [int(d) for d in imported.spec.input.shape]
    for i, batch in enumerate(batch_sizes):
        x = fm.random_batch(shape, batch, seed=i)
        want = reference(x)
        got = fm.run_artifact(imported.artifact, spec, x)
        assert set(got) == set(want) == {o.tensor for o in imported.spec.outputs}
        for name in want:
            assert got[name].shape == want[name].shape
            assert float(abs(got[name] - want[name]).max()) <= 1e-5, name
