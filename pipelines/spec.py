"""The model spec: what radwatch needs to know to serve, monitor and gate any model.

A spec is data (JSON or YAML), validated by the pydantic models below and stored with every
MLflow model version (``radwatch/spec.json``). Everything downstream reads the spec, never a
constant: the exporter writes the Triton config from ``input`` and ``outputs``, the gateway
prepares pixels by ``preprocessing``, the monitors read ``outputs`` and ``monitors``, and the
retraining queue dispatches on ``retraining.kind``. The built-in demo model is one spec like any
other (:func:`builtin_spec`).

Shapes are per sample, without the batch axis (Triton's ``max_batch_size`` adds it). Channels
come first: ``[C, H, W]`` for a 2-D image, ``[C, D, H, W]`` for a volume. A dimension is an int or
the name of a dynamic dimension, which must be declared in ``input.dynamic`` with its range.
Invalid specs raise :class:`SpecError` with one line per problem, each naming the field to fix.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines.errors import PipelineError

#: Version of the spec schema written into every spec. Readers refuse versions they do not know.
SCHEMA_VERSION = 1

Dim = int | str
_NAME = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$"
_FINDING = r"^[a-z][a-z0-9_]{0,47}$"


class SpecError(PipelineError):
    """A spec that cannot be used; the message names every field to fix, one per line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DynamicDim(_Strict):
    """Range of a dynamic dimension (inclusive)."""

    min: int = Field(ge=1)
    max: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> DynamicDim:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is larger than max {self.max}")
        return self


class InputSpec(_Strict):
    """The model's single image input tensor."""

    name: str = Field(pattern=_NAME)
    dtype: Literal["float32"] = "float32"
    shape: tuple[Dim, ...] = Field(min_length=3, max_length=4)
    dynamic: dict[str, DynamicDim] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _dims_declared(self) -> InputSpec:
        named = {d for d in self.shape if isinstance(d, str)}
        for d in self.shape:
            if isinstance(d, int) and d < 1:
                raise ValueError(f"shape {list(self.shape)} has a dimension < 1")
        if undeclared := named - set(self.dynamic):
            raise ValueError(
                f"dynamic dimension(s) {sorted(undeclared)} in shape are not declared in "
                "input.dynamic; give each a {min, max} range"
            )
        if unused := set(self.dynamic) - named:
            raise ValueError(f"input.dynamic declares {sorted(unused)}, which shape does not use")
        if isinstance(self.shape[0], str):
            raise ValueError("the channel dimension (shape[0]) must be a fixed number")
        return self

    @property
    def channels(self) -> int:
        c = self.shape[0]
        assert isinstance(c, int)
        return c

    @property
    def spatial(self) -> tuple[Dim, ...]:
        """``(H, W)`` or ``(D, H, W)``."""
        return self.shape[1:]


class Window(_Strict):
    """Intensity window in modality units (after rescale slope/intercept), e.g. HU for CT."""

    center: float
    width: float = Field(gt=0)


class Normalize(_Strict):
    """After resizing: ``fixed`` computes ``(x - mean) / std`` on [0, 1] pixels; ``zscore``
    standardises each image by its own mean and std; ``none`` leaves [0, 1] pixels."""

    kind: Literal["fixed", "zscore", "none"] = "fixed"
    mean: float = 0.5
    std: float = Field(default=0.25, gt=0)


class Preprocessing(_Strict):
    """Declared pixel preparation, applied by the gateway the same way for every model.

    Order: DICOM rescale slope/intercept (``rescale``), MONOCHROME1 inversion, window (or the
    stored bit depth) to [0, 1], resize to the input's spatial shape, normalise, then replicate
    a grey channel to ``input.shape[0]`` channels when ``replicate_channels``.
    """

    rescale: bool = True
    invert_monochrome1: bool = True
    window: Window | None = None
    resize_mode: Literal["bilinear", "nearest", "area"] = "bilinear"
    antialias: bool = True
    normalize: Normalize = Normalize()
    replicate_channels: bool = True

    @property
    def reads_pixels_by_default(self) -> bool:
        """Whether DICOM pixels decode as radwatch decodes them without a spec (no window of
        its own, slope/intercept applied, MONOCHROME1 inverted)."""
        return self.window is None and self.rescale and self.invert_monochrome1


class Finding(_Strict):
    name: str = Field(pattern=_FINDING)
    threshold: float = Field(default=0.5, gt=0, lt=1)


class FindingsOutput(_Strict):
    """Per-finding probabilities, ``[len(findings)]``. ``activation`` says what the tensor holds:
    ``probability`` (already in [0, 1]) or ``logit`` (the gateway applies the sigmoid, so
    every export flavour answers alike)."""

    kind: Literal["findings"] = "findings"
    tensor: str = Field(pattern=_NAME)
    findings: tuple[Finding, ...] = Field(min_length=1, max_length=64)
    activation: Literal["probability", "logit"] = "probability"

    @model_validator(mode="after")
    def _unique(self) -> FindingsOutput:
        names = [f.name for f in self.findings]
        if len(set(names)) != len(names):
            raise ValueError(f"finding names must be unique; got {names}")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.findings)


class EmbeddingOutput(_Strict):
    """An embedding vector ``[width]``: monitored for drift and the input of probes."""

    kind: Literal["embedding"] = "embedding"
    tensor: str = Field(pattern=_NAME)
    width: int = Field(ge=1, le=65536)


class ReportOutput(_Strict):
    """Generated report text (room for report generators; not served yet)."""

    kind: Literal["report"] = "report"
    tensor: str = Field(pattern=_NAME)
    max_tokens: int = Field(default=512, ge=1)


class MaskOutput(_Strict):
    """A segmentation mask with one channel per label (room for segmenters; not served yet)."""

    kind: Literal["mask"] = "mask"
    tensor: str = Field(pattern=_NAME)
    labels: tuple[str, ...] = Field(min_length=1)


Output = Annotated[
    FindingsOutput | EmbeddingOutput | ReportOutput | MaskOutput, Field(discriminator="kind")
]

MonitorKind = Literal[
    "embedding_drift", "metadata_drift", "image_stats", "score_drift", "performance", "fairness"
]
#: Monitors each output kind makes possible.
_MONITORS_OF: Mapping[str, tuple[MonitorKind, ...]] = {
    "findings": ("score_drift", "performance", "fairness"),
    "embedding": ("embedding_drift",),
}
_ALWAYS: tuple[MonitorKind, ...] = ("metadata_drift", "image_stats")

ReferencePart = Literal["embeddings", "scores", "metadata", "image_stats", "labels"]


class ReferenceSpec(_Strict):
    """What the reference profile of a version holds and how many studies build it."""

    holds: tuple[ReferencePart, ...] = ("embeddings", "scores", "metadata", "image_stats")
    min_studies: int = Field(default=200, ge=20)


class EncoderRef(_Strict):
    """The encoder a probe reads embeddings from, pinned by the hash of its serving artifact.

    A probe's spec repeats the encoder's ``input``, ``preprocessing`` and ``embedding`` output
    (the gateway prepares pixels for the encoder, Triton serves the encoder, and the gateway
    applies the probe's heads to the embedding). ``runtime`` is the encoder's runtime."""

    name: str = Field(pattern=_NAME)
    version: int = Field(ge=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Retraining(_Strict):
    """``probe``: radwatch refits the findings heads on stored embeddings. ``external``: the
    training queue runs ``entry_point`` (an MLflow Project URI) with a data-snapshot URI and
    registers its result as the candidate. ``none``: candidates are registered by hand."""

    kind: Literal["probe", "external", "none"] = "none"
    entry_point: str | None = None
    #: The sequestered evaluation set an ``external`` run's candidate is judged on.
    evaluation_set: str | None = Field(default=None, min_length=1, max_length=128)

    @model_validator(mode="after")
    def _entry_point(self) -> Retraining:
        if self.kind == "external" and not self.entry_point:
            raise ValueError("retraining.kind 'external' needs retraining.entry_point")
        if self.kind == "external" and not self.evaluation_set:
            raise ValueError(
                "retraining.kind 'external' needs retraining.evaluation_set (the registered "
                "evaluation set its candidates are judged on)"
            )
        if self.kind != "external" and self.entry_point:
            raise ValueError(
                f"retraining.entry_point is only for kind 'external', not {self.kind!r}"
            )
        return self


class ModelSpec(_Strict):
    """One model version's contract with radwatch."""

    schema_version: Literal[1] = 1
    modality: Literal["radiograph", "ct", "mr", "mammography", "ultrasound"] = "radiograph"
    dimensionality: Literal[2, 3] = 2
    runtime: Literal["torch-export", "onnx", "probe"]
    input: InputSpec | None
    preprocessing: Preprocessing = Preprocessing()
    outputs: tuple[Output, ...] = Field(min_length=1)
    monitors: tuple[MonitorKind, ...] | None = None
    reference: ReferenceSpec = ReferenceSpec()
    retraining: Retraining = Retraining()
    encoder: EncoderRef | None = None
    #: For a probe: the encoder's runtime on Triton ("torch-export" or "onnx").
    encoder_runtime: Literal["torch-export", "onnx"] | None = None
    max_batch_size: int = Field(default=64, ge=1, le=4096)
    description: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        kinds = [o.kind for o in self.outputs]
        tensors = [o.tensor for o in self.outputs]
        if len(set(tensors)) != len(tensors):
            raise ValueError(f"output tensor names must be unique; got {tensors}")
        for kind in ("findings", "embedding"):
            if kinds.count(kind) > 1:
                raise ValueError(f"at most one '{kind}' output; got {kinds.count(kind)}")
        if self.runtime == "probe" and (
            self.encoder is None or sorted(kinds) != ["embedding", "findings"]
        ):
            raise ValueError(
                "a probe (runtime 'probe') names its encoder and has a 'findings' output (its "
                "heads) and an 'embedding' output (the encoder's, which the heads read)"
            )
        if self.runtime == "probe" and self.encoder_runtime is None:
            raise ValueError("a probe names its encoder's runtime in encoder_runtime")
        if self.runtime != "probe" and (self.encoder is not None or self.encoder_runtime):
            raise ValueError("only a probe (runtime 'probe') names an encoder")
        if self.input is None:
            raise ValueError(
                f"runtime {self.runtime!r} needs an input (a probe: its encoder's input)"
            )
        if self.input.name in tensors:
            raise ValueError(f"input name {self.input.name!r} is also an output name")
        rank = len(self.input.shape) - 1
        if rank != self.dimensionality:
            raise ValueError(
                f"input.shape {list(self.input.shape)} has {rank} spatial dimension(s) but "
                f"dimensionality is {self.dimensionality}; use [C, H, W] for 2-D and "
                "[C, D, H, W] for 3-D"
            )
        if self.retraining.kind == "probe" and "embedding" not in kinds:
            raise ValueError("retraining.kind 'probe' needs an 'embedding' output to refit on")
        unavailable = set(self.monitors or ()) - set(self.available_monitors())
        if unavailable:
            raise ValueError(
                f"monitors {sorted(unavailable)} need outputs this model does not have "
                f"(outputs: {kinds})"
            )
        return self

    def available_monitors(self) -> tuple[MonitorKind, ...]:
        out: list[MonitorKind] = list(_ALWAYS)
        for o in self.outputs:
            out.extend(_MONITORS_OF.get(o.kind, ()))
        return tuple(out)

    def enabled_monitors(self) -> tuple[MonitorKind, ...]:
        return self.monitors if self.monitors is not None else self.available_monitors()

    def output(self, kind: str) -> FindingsOutput | EmbeddingOutput | ReportOutput | MaskOutput:
        for o in self.outputs:
            if o.kind == kind:
                return o
        raise SpecError(f"the spec has no '{kind}' output")

    @property
    def findings(self) -> FindingsOutput | None:
        o = next((o for o in self.outputs if isinstance(o, FindingsOutput)), None)
        return o

    @property
    def embedding(self) -> EmbeddingOutput | None:
        return next((o for o in self.outputs if isinstance(o, EmbeddingOutput)), None)

    def interface(self) -> dict[str, Any]:
        """What every version of one registered model must share: the runtime and tensors
        Triton serves (one config per model name), the finding names and the embedding width
        the monitors compare across versions. Thresholds, preprocessing and the description
        may change."""
        return {
            "runtime": self.runtime,
            "max_batch_size": self.max_batch_size,
            "modality": self.modality,
            "dimensionality": self.dimensionality,
            "input": None if self.input is None else self.input.model_dump(mode="json"),
            "outputs": [
                {"kind": o.kind, "tensor": o.tensor}
                | ({"findings": list(o.names)} if isinstance(o, FindingsOutput) else {})
                | ({"width": o.width} if isinstance(o, EmbeddingOutput) else {})
                for o in self.outputs
            ],
        }

    def encoder_view(self) -> ModelSpec:
        """For a probe: the spec Triton serves, its encoder (the input, preprocessing and
        embedding output of this spec, with the encoder's runtime). Any other spec: itself."""
        if self.runtime != "probe":
            return self
        assert self.embedding is not None
        assert self.encoder_runtime is not None
        return self.model_copy(
            update={
                "runtime": self.encoder_runtime,
                "outputs": (self.embedding,),
                "encoder": None,
                "encoder_runtime": None,
                "monitors": None,
                "retraining": Retraining(),
            }
        )

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace variance): equal specs, equal text."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()


def _describe(error: ValidationError) -> str:
    lines = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{where or 'spec'}: {msg}")
    return "invalid model spec:\n" + "\n".join(f"  - {line}" for line in lines)


def parse_spec(data: Mapping[str, Any] | str | bytes) -> ModelSpec:
    """Validate a spec given as a mapping or as JSON/YAML text. Raises :class:`SpecError`."""
    if isinstance(data, str | bytes):
        try:
            loaded = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise SpecError(f"the spec is not valid YAML or JSON: {exc}") from None
        if not isinstance(loaded, Mapping):
            raise SpecError("the spec must be a mapping (a JSON object or YAML mapping)")
        data = loaded
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise SpecError(
            f"spec schema_version {version!r} is not supported; this radwatch reads "
            f"version {SCHEMA_VERSION}"
        )
    try:
        return ModelSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise SpecError(_describe(exc)) from None


def load_spec_file(path: Path) -> ModelSpec:
    """Read and validate a spec file (``.json``, ``.yaml`` or ``.yml``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read spec file {path}: {exc.strerror}") from None
    return parse_spec(text)
