"""MONAI Bundle import: a bundle made with MONAI's tooling gives the spec it describes and a
``.pt2`` equal to its eager network; bundles that disagree with themselves are refused."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from monai.bundle.config_parser import ConfigParser

from pipelines.export_triton import file_digest
from pipelines.importers import import_model
from pipelines.spec import parse_spec
from tests.fixtures import foreign_models as fm

Refused = Callable[..., str]
Reproduces = Callable[..., None]


def _transforms(*extra: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """The default preprocessing with ``extra`` transforms before EnsureTyped."""
    return (*fm.BUNDLE_PREPROCESSING[:-1], *extra, fm.BUNDLE_PREPROCESSING[-1])


def test_bundle_gives_its_spec_and_serves_its_network(
    bundle: fm.ForeignModel, tmp_path: Path, reproduces: Reproduces
) -> None:
    imported = import_model(bundle.path, None, tmp_path)

    assert imported.spec == parse_spec(bundle.spec)
    assert imported.spec.runtime == "torch-export"
    assert imported.artifact == tmp_path / "model.pt2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt2"]
    assert imported.source_format == "monai-bundle"
    card = imported.card
    assert card["name"] == "Chest X-ray triage (DenseNet)"
    assert (card["version"], card["authors"]) == ("0.3.1", "Foreign Lab")
    assert card["license"] == "Apache License, Version 2.0"
    assert card["intended_use"].startswith("Research triage")
    assert card["findings"] == list(fm.BUNDLE_FINDINGS)
    assert card["input"]["shape"] == [1, fm.BUNDLE_SIZE, fm.BUNDLE_SIZE]
    reproduces(imported)


def test_reference_is_the_network_monai_builds(bundle: fm.ForeignModel, tmp_path: Path) -> None:
    """reference_runtime is MONAI's own instantiation: compare with ConfigParser directly."""
    from pipelines.importers import reference_runtime

    imported = import_model(bundle.path, None, tmp_path)
    parser = ConfigParser()
    parser.read_config(str(bundle.path / "configs/inference.json"))
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(bundle.path / "models/model.pt", weights_only=True))
    x = fm.random_batch([1, fm.BUNDLE_SIZE, fm.BUNDLE_SIZE], 2)
    with torch.no_grad():
        want = net.eval()(torch.from_numpy(x)).numpy()
    assert abs(reference_runtime(imported)(x)["pred"] - want).max() <= 1e-6


def test_zipped_bundle_and_tree_hash(tmp_path: Path, reproduces: Reproduces) -> None:
    zipped = fm.build_monai_bundle(tmp_path / "src", as_zip=True)
    imported = import_model(zipped.path, None, tmp_path / "work")

    assert imported.source_sha256 == file_digest(zipped.path)
    reproduces(imported)
    # a folder hashes by content and relative paths, not by where it lives
    folder = tmp_path / "src" / "cxr_densenet"
    moved = shutil.copytree(folder, tmp_path / "elsewhere" / "renamed")
    first = import_model(folder, None, tmp_path / "w1").source_sha256
    assert import_model(moved, None, tmp_path / "w2").source_sha256 == first


def test_a_given_spec_overrides_what_the_bundle_says(tmp_path: Path) -> None:
    """An unmappable transform is fine once the user vouches for the preprocessing."""
    model = fm.build_monai_bundle(
        tmp_path / "src",
        preprocessing=_transforms({"_target_": "HistogramNormalized", "keys": "image"}),
    )
    spec = dict(model.spec, preprocessing={"normalize": {"kind": "zscore"}})
    imported = import_model(model.path, parse_spec(spec), tmp_path / "work")

    assert imported.spec.preprocessing.normalize.kind == "zscore"


@pytest.mark.parametrize(
    ("transform", "expected"),
    [
        ({"_target_": "NormalizeIntensityd", "keys": "image"}, {"kind": "zscore"}),
        (
            {"_target_": "monai.transforms.ScaleIntensityd", "keys": "image", "minv": -1.0},
            {"kind": "fixed", "mean": 0.5, "std": 0.5},
        ),
    ],
)
def test_intensity_transforms_map_onto_normalize(
    tmp_path: Path, transform: dict[str, Any], expected: dict[str, Any]
) -> None:
    steps = [t for t in fm.BUNDLE_PREPROCESSING if t["_target_"] != "ScaleIntensityd"]
    model = fm.build_monai_bundle(tmp_path / "src", preprocessing=[*steps[:-1], transform])
    imported = import_model(model.path, None, tmp_path / "work")

    normalize = imported.spec.preprocessing.normalize.model_dump()
    assert {k: normalize[k] for k in expected} == expected


def test_ct_window_maps_from_scale_intensity_range(tmp_path: Path) -> None:
    window = {
        "_target_": "ScaleIntensityRanged",
        "keys": "image",
        "a_min": -1000.0,
        "a_max": 400.0,
        "b_min": 0.0,
        "b_max": 1.0,
        "clip": True,
    }
    steps = [t for t in fm.BUNDLE_PREPROCESSING if t["_target_"] != "ScaleIntensityd"]
    model = fm.build_monai_bundle(tmp_path / "src", preprocessing=[*steps[:-1], window])
    imported = import_model(model.path, None, tmp_path / "work")

    assert imported.spec.preprocessing.window is not None
    assert imported.spec.preprocessing.window.model_dump() == {"center": -300.0, "width": 1400.0}


def test_refuses_metadata_that_breaks_the_schema(tmp_path: Path, refused: Refused) -> None:
    metadata = fm.bundle_metadata()
    del metadata["numpy_version"]
    model = fm.build_monai_bundle(tmp_path / "src", metadata=metadata)
    work = tmp_path / "work"
    refused(
        lambda: import_model(model.path, None, work),
        work,
        "meta_schema_20240725.json",
        "'numpy_version' is a required property",
    )


def test_refuses_a_transform_it_cannot_reproduce(tmp_path: Path, refused: Refused) -> None:
    model = fm.build_monai_bundle(
        tmp_path / "src",
        preprocessing=_transforms({"_target_": "HistogramNormalized", "keys": "image"}),
    )
    work = tmp_path / "work"
    refused(lambda: import_model(model.path, None, work), work, "HistogramNormalized", "--spec")


def test_refuses_softmax_postprocessing(tmp_path: Path, refused: Refused) -> None:
    softmax = ({"_target_": "Activationsd", "keys": "pred", "softmax": True},)
    model = fm.build_monai_bundle(tmp_path / "src", postprocessing=softmax)
    work = tmp_path / "work"
    refused(lambda: import_model(model.path, None, work), work, "softmax", "sigmoid per finding")


def test_refuses_a_resize_the_metadata_disagrees_with(tmp_path: Path, refused: Refused) -> None:
    steps = [
        {**t, "spatial_size": [128, 128]} if t["_target_"] == "Resized" else t
        for t in fm.BUNDLE_PREPROCESSING
    ]
    model = fm.build_monai_bundle(tmp_path / "src", preprocessing=steps)
    work = tmp_path / "work"
    refused(lambda: import_model(model.path, None, work), work, "[128, 128]", "[96, 96]")


def test_refuses_output_channels_the_network_does_not_have(
    tmp_path: Path, refused: Refused
) -> None:
    model = fm.build_monai_bundle(tmp_path / "src", network_out=4)
    work = tmp_path / "work"
    refused(
        lambda: import_model(model.path, None, work),
        work,
        "returns 4 channels for 'pred'",
        "outputs.pred.num_channels 3",
    )


def test_refuses_input_channels_the_network_does_not_take(tmp_path: Path, refused: Refused) -> None:
    model = fm.build_monai_bundle(tmp_path / "src", network_in=3)
    work = tmp_path / "work"
    refused(
        lambda: import_model(model.path, None, work),
        work,
        "does not take the input",
        "[2, 1, 96, 96]",
        "num_channels",
    )


def test_refuses_a_bundle_without_weights(tmp_path: Path, refused: Refused) -> None:
    model = fm.build_monai_bundle(tmp_path / "src")
    (model.path / "models/model.pt").unlink()
    work = tmp_path / "work"
    refused(lambda: import_model(model.path, None, work), work, "no models/model.pt")


def test_refuses_weights_of_another_network(tmp_path: Path, refused: Refused) -> None:
    model = fm.build_monai_bundle(tmp_path / "src")
    torch.save(fm.TinyEncoder().state_dict(), model.path / "models/model.pt")
    work = tmp_path / "work"
    refused(lambda: import_model(model.path, None, work), work, "does not fit network_def")


def test_refuses_a_given_spec_for_another_runtime(
    bundle: fm.ForeignModel, tmp_path: Path, refused: Refused
) -> None:
    spec = parse_spec({**bundle.spec, "runtime": "onnx"})
    refused(lambda: import_model(bundle.path, spec, tmp_path), tmp_path, '"torch-export"')


def test_refuses_a_given_spec_the_network_disagrees_with(
    bundle: fm.ForeignModel, tmp_path: Path, refused: Refused
) -> None:
    findings = [{"name": f} for f in ("a", "b")]
    spec = parse_spec(
        {**bundle.spec, "outputs": [{**bundle.spec["outputs"][0], "findings": findings}]}
    )
    refused(lambda: import_model(bundle.path, spec, tmp_path), tmp_path, "2 findings")


def test_refuses_a_folder_that_is_not_a_bundle(tmp_path: Path, refused: Refused) -> None:
    folder = tmp_path / "not_a_bundle"
    (folder / "configs").mkdir(parents=True)
    (folder / "configs" / "inference.json").write_text(json.dumps({}))
    work = tmp_path / "work"
    refused(lambda: import_model(folder, None, work), work, "no configs/metadata.json")
