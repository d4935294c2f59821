"""Import a MONAI Bundle (a directory, or a ``.zip`` of one) as a ``torch.export`` model.

A bundle describes itself, so the spec is *derived* unless one is given: the input and outputs
from ``configs/metadata.json`` (``network_data_format``: ``inputs.image``, ``outputs.pred`` and
its ``channel_def`` names as findings) and the preprocessing from ``configs/inference.json``,
parsed with MONAI's own :class:`monai.bundle.ConfigParser` and mapped by
:mod:`.monai_transforms`, which refuses any transform the gateway cannot reproduce. A ``--spec``
overrides the derived spec entirely (the user vouches for the preprocessing), but the network is
still checked against both the metadata and that spec.

Metadata is validated against MONAI's bundle metadata schema, vendored in
``schemas/meta_schema_20240725.json``: a verbatim copy of the file MONAI publishes (first in the
MONAI-extra-test-data 0.8.1 release, now at https://project-monai.github.io/schema/, repository
Project-MONAI/project-monai.github.io, ``public/schema/``; Apache-2.0). It is vendored because an
import must not depend on the network, and ``monai.bundle.verify_metadata`` downloads it.

The network (``network_def``) is instantiated with the weights of ``models/model.pt``, run on a
zero batch, and exported with :func:`~pipelines.importers.torch_export.export_module`, so it is
served like any ``.pt2``. Trust: ``ConfigParser`` evaluates ``$`` expressions in the configs, so
importing a bundle runs its code, as ``monai.bundle.run`` would. Weights are loaded with
``weights_only=True``, which at least keeps the checkpoint from running code.
"""

from __future__ import annotations

import json
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import numpy.typing as npt
import torch
from monai.bundle.config_parser import ConfigParser
from torch import nn

from pipelines.export_triton import file_digest
from pipelines.importers import torch_export
from pipelines.importers.common import (
    ImportedModel,
    ImportRefusedError,
    brief,
    build_card,
    check_runtime,
    example_shape,
    publish,
    tree_sha256,
)
from pipelines.importers.monai_transforms import (
    IMAGE_KEY,
    METADATA,
    PRED_KEY,
    activation_of,
    preprocessing_of,
)
from pipelines.spec import ModelSpec, SpecError, parse_spec

INFERENCE = ("configs/inference.json", "configs/inference.yaml", "configs/inference.yml")
WEIGHTS = "models/model.pt"
NETWORK_ID = "network_def"
SCHEMA_FILE = Path(__file__).with_name("schemas") / "meta_schema_20240725.json"

#: DICOM-ish modality words in ``inputs.image.modality`` onto the spec's modalities.
_MODALITIES = {
    "xray": "radiograph", "x-ray": "radiograph", "cr": "radiograph", "dx": "radiograph",
    "radiograph": "radiograph", "ct": "ct", "mr": "mr", "mri": "mr", "mg": "mammography",
    "mammography": "mammography", "us": "ultrasound", "ultrasound": "ultrasound",
}  # fmt: skip
_EMBEDDING_TYPES = {"embedding", "embeddings", "feature", "features"}

Runner = Callable[[npt.NDArray[np.float32]], dict[str, npt.NDArray[np.float32]]]


@contextmanager
def open_bundle(source: Path) -> Iterator[Path]:
    """The bundle's root folder (the one holding ``configs/metadata.json``).

    A zip is unpacked into a private temporary folder that disappears afterwards; ``zipfile``
    drops absolute paths and ``..`` parts, so a hostile archive cannot write outside it.
    """
    if source.is_dir():
        yield _root(source, source.name)
        return
    with tempfile.TemporaryDirectory(prefix="radwatch-bundle-") as tmp:
        try:
            with zipfile.ZipFile(source) as archive:
                archive.extractall(tmp)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ImportRefusedError(
                f"{source.name} is not a readable zip: {brief(exc)}; zip the bundle folder"
            ) from None
        yield _root(Path(tmp), source.name)


def _root(base: Path, shown: str) -> Path:
    if (base / METADATA).is_file():
        return base
    nested = [p for p in base.iterdir() if p.is_dir() and (p / METADATA).is_file()]
    if len(nested) == 1:
        return nested[0]
    raise ImportRefusedError(
        f"{shown} is not a MONAI bundle: no {METADATA}; give the bundle folder (with configs/ "
        "and models/) or a zip of it"
    )


def read_metadata(root: Path) -> dict[str, Any]:
    """``configs/metadata.json``, validated against the vendored MONAI schema."""
    try:
        metadata = json.loads((root / METADATA).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ImportRefusedError(f"{METADATA} is not valid JSON: {brief(exc)}") from None
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft201909Validator(schema).iter_errors(metadata)
    )
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ImportRefusedError(
            f"{METADATA} does not follow MONAI's bundle metadata schema ({SCHEMA_FILE.name}) "
            f"at {where}: {error.message}; fix the metadata"
        )
    if not isinstance(metadata, dict):  # the schema requires an object; this is for mypy
        raise ImportRefusedError(f"{METADATA} must be a JSON object")
    return metadata


def read_parser(root: Path, metadata: Mapping[str, Any]) -> ConfigParser:
    """MONAI's parser over the inference config, with the metadata under ``_meta_``."""
    config = next((root / name for name in INFERENCE if (root / name).is_file()), None)
    if config is None:
        raise ImportRefusedError(
            f"the bundle has no {INFERENCE[0]}; radwatch reads network_def and the "
            "preprocessing from it"
        )
    parser = ConfigParser()
    try:
        parser.read_config(str(config))
    except Exception as exc:
        raise ImportRefusedError(f"{config.name} cannot be read: {brief(exc)}") from None
    parser.read_meta(dict(metadata))
    parser["bundle_root"] = str(root)
    return parser


def _tensor(fmt: Mapping[str, Any], group: str, key: str) -> dict[str, Any]:
    value = fmt.get(group, {}).get(key)
    if not isinstance(value, dict):
        raise ImportRefusedError(
            f"{METADATA} network_data_format.{group} has no tensor {key!r}; describe the "
            f"network's {'image input' if group == 'inputs' else 'prediction'} as {key!r}"
        )
    return value


def _finding_names(pred: Mapping[str, Any]) -> list[str]:
    """``channel_def`` names as finding names (lower case, ``_`` for anything else)."""
    count = int(pred["num_channels"])
    channel_def = pred.get("channel_def") or {}
    names = []
    for i in range(count):
        label = channel_def.get(str(i))
        if not isinstance(label, str) or not label.strip():
            raise ImportRefusedError(
                f"{METADATA} outputs.pred.channel_def names no channel {i}; name each of the "
                f"{count} output channels (they become the findings)"
            )
        name = re.sub(r"[^a-z0-9_]+", "_", label.strip().lower()).strip("_")
        names.append(name if name[:1].isalpha() else f"finding_{name}")
    return names


def derive_spec(metadata: Mapping[str, Any], parser: ConfigParser) -> ModelSpec:
    """The spec a bundle describes (see the module docstring for what maps to what)."""
    fmt = metadata["network_data_format"]
    image, pred = _tensor(fmt, "inputs", IMAGE_KEY), _tensor(fmt, "outputs", PRED_KEY)
    if len(fmt["inputs"]) != 1:
        raise ImportRefusedError(
            f"{METADATA} declares inputs {sorted(fmt['inputs'])}; radwatch serves a network "
            "with one image input"
        )
    spatial = image["spatial_shape"]
    if not all(isinstance(d, int) for d in spatial):
        raise ImportRefusedError(
            f"{METADATA} inputs.image.spatial_shape {spatial} is not fixed; give --spec with a "
            "fixed input.shape (or declared dynamic dimensions)"
        )
    if str(image["dtype"]).removeprefix("torch.") not in ("float32", "float"):
        raise ImportRefusedError(
            f"{METADATA} inputs.image.dtype is {image['dtype']!r}; radwatch sends float32"
        )
    raw_modality = str(image.get("modality", "xray")).lower()
    if raw_modality not in _MODALITIES:
        raise ImportRefusedError(
            f"{METADATA} inputs.image.modality {raw_modality!r} is not one radwatch knows "
            f"({sorted(set(_MODALITIES))}); give --spec with its modality"
        )
    outputs: list[dict[str, Any]] = []
    for key, value in fmt["outputs"].items():
        if key == PRED_KEY:
            findings = [{"name": n, "threshold": 0.5} for n in _finding_names(pred)]
            outputs.append(
                {
                    "kind": "findings",
                    "tensor": PRED_KEY,
                    "findings": findings,
                    "activation": activation_of(parser, pred),
                }
            )
        elif isinstance(value, dict) and str(value.get("type")).lower() in _EMBEDDING_TYPES:
            outputs.append(
                {"kind": "embedding", "tensor": key, "width": int(value["num_channels"])}
            )
        else:
            raise ImportRefusedError(
                f"{METADATA} output {key!r} is neither 'pred' nor an embedding; radwatch serves "
                "findings and embeddings: give --spec or remove the output"
            )
    data = {
        "runtime": "torch-export",
        "modality": _MODALITIES[raw_modality],
        "dimensionality": len(spatial),
        "input": {"name": IMAGE_KEY, "shape": [int(image["num_channels"]), *spatial]},
        "preprocessing": preprocessing_of(parser, image),
        "outputs": outputs,
        "retraining": {"kind": "none"},
        "description": str(metadata.get("description", ""))[:2000],
    }
    try:
        return parse_spec(data)
    except SpecError as exc:
        problem = str(exc).splitlines()[-1].strip(" -")
        raise ImportRefusedError(
            f"the spec derived from the bundle is invalid ({problem}); give --spec"
        ) from None


def load_network(root: Path, parser: ConfigParser) -> nn.Module:
    """``network_def`` instantiated by ConfigParser, with ``models/model.pt``, in eval mode."""
    if NETWORK_ID not in parser:
        raise ImportRefusedError(f"the inference config defines no {NETWORK_ID!r}; add it")
    try:
        net = parser.get_parsed_content(NETWORK_ID)
    except Exception as exc:
        raise ImportRefusedError(f"{NETWORK_ID} cannot be instantiated: {brief(exc)}") from None
    if not isinstance(net, nn.Module):
        raise ImportRefusedError(f"{NETWORK_ID} is a {type(net).__name__}, not a torch module")
    if not (root / WEIGHTS).is_file():
        raise ImportRefusedError(f"the bundle has no {WEIGHTS}; save the weights there")
    try:
        state = torch.load(root / WEIGHTS, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ImportRefusedError(
            f"{WEIGHTS} cannot be loaded safely: {brief(exc)}; save a state_dict"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a CheckpointSaver checkpoint {"model": ..., "optimizer": ...}
    try:
        net.load_state_dict(state, strict=True)
    except Exception as exc:
        raise ImportRefusedError(
            f"{WEIGHTS} does not fit {NETWORK_ID}: {brief(exc)}; save the weights of this network"
        ) from None
    return net.eval()


def check_against_metadata(net: nn.Module, metadata: Mapping[str, Any]) -> None:
    """Refuse a bundle whose network disagrees with its own metadata (channels in and out)."""
    fmt = metadata["network_data_format"]
    image = _tensor(fmt, "inputs", IMAGE_KEY)
    spatial = [d if isinstance(d, int) else 32 for d in image["spatial_shape"]]
    shape = [2, int(image["num_channels"]), *spatial]
    try:
        with torch.inference_mode():
            result = net(torch.zeros(shape))
    except Exception as exc:
        raise ImportRefusedError(
            f"{NETWORK_ID} does not take the input {METADATA} declares ({shape}): "
            f"{brief(exc)}; fix inputs.image num_channels/spatial_shape"
        ) from None
    names = list(fmt["outputs"])
    if isinstance(result, torch.Tensor):
        result = (result,)
    mapped = dict(result) if isinstance(result, Mapping) else dict(zip(names, result, strict=False))
    for name in names:
        declared = fmt["outputs"][name]
        value = mapped.get(name)
        channels = int(value.shape[1]) if isinstance(value, torch.Tensor) and value.ndim > 1 else -1
        if isinstance(declared, dict) and channels != int(declared["num_channels"]):
            raise ImportRefusedError(
                f"{NETWORK_ID} returns {channels if channels >= 0 else 'no'} channels for "
                f"{name!r} but {METADATA} declares outputs.{name}.num_channels "
                f"{declared['num_channels']}; make the metadata match the network"
            )


def _license(root: Path, metadata: Mapping[str, Any]) -> str | None:
    if metadata.get("license"):
        return str(metadata["license"])
    path = root / "LICENSE"
    if path.is_file():
        line = next(
            (s.strip() for s in path.read_text(errors="replace").splitlines() if s.strip()), ""
        )
        return line[:200] or None
    return None


def import_bundle(source: Path, spec: ModelSpec | None, workdir: Path) -> ImportedModel:
    """Validate a bundle, derive (or check) its spec, export ``model.pt2`` into ``workdir``."""
    if spec is not None:
        check_runtime(spec, torch_export.RUNTIME, "a MONAI bundle (exported with torch.export)")
    digest = tree_sha256(source) if source.is_dir() else file_digest(source)
    with open_bundle(source) as root, tempfile.TemporaryDirectory(prefix="radwatch-") as tmp:
        metadata = read_metadata(root)
        parser = read_parser(root, metadata)
        spec = spec or derive_spec(metadata, parser)
        net = load_network(root, parser)
        check_against_metadata(net, metadata)
        torch_export.probe(net, spec, NETWORK_ID)
        staged = Path(tmp) / torch_export.ARTIFACT
        torch_export.export_module(net, spec, staged, NETWORK_ID)
        _check_export(net, staged, spec)
        license_text = _license(root, metadata)
        artifact = publish(staged, workdir, torch_export.ARTIFACT)
    image = metadata["network_data_format"]["inputs"][IMAGE_KEY]
    card = build_card(
        spec, source_format="monai-bundle", source_sha256=digest,
        name=str(metadata.get("name") or source.stem), version=metadata.get("version"),
        description=metadata.get("description"), authors=metadata.get("authors"),
        license=license_text, intended_use=metadata.get("intended_use"),
        extra={
            "task": metadata.get("task"), "copyright": metadata.get("copyright"),
            "monai_version": metadata.get("monai_version"),
            "references": metadata.get("references", []),
            "input": {"name": IMAGE_KEY, "shape": [image["num_channels"],
                      *image["spatial_shape"]], "value_range": image["value_range"],
                      "modality": spec.modality},
        },
    )  # fmt: skip
    return ImportedModel(spec, artifact, "monai-bundle", digest, card, source)


def _check_export(net: nn.Module, staged: Path, spec: ModelSpec) -> None:
    """The exported program must compute what the eager network computes (random batch)."""
    shape = example_shape(spec, 2)
    batch = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    eager = torch_export.run_module(net, spec, batch, NETWORK_ID)
    exported = torch_export.torch_export_runtime(staged, spec)(batch)
    for name, want in eager.items():
        if not np.allclose(exported[name], want, atol=1e-4, rtol=1e-4):
            raise ImportRefusedError(
                f"the torch.export of {NETWORK_ID} differs from the network on {name!r}; the "
                "network has data-dependent behaviour torch.export cannot capture"
            )


def bundle_runtime(source: Path, spec: ModelSpec) -> Runner:
    """The bundle's own runtime: eager ``network_def`` from ConfigParser with its weights."""
    with open_bundle(source) as root:
        metadata = json.loads((root / METADATA).read_text(encoding="utf-8"))
        net = load_network(root, read_parser(root, metadata))

    def run(batch: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.float32]]:
        return torch_export.run_module(net, spec, batch, NETWORK_ID)

    return run
