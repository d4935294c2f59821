"""MONAI transforms onto radwatch's declared preprocessing (part of the bundle importer).

The gateway prepares pixels one fixed way for every model (:class:`pipelines.spec.Preprocessing`:
rescale, window to [0, 1], resize, normalise, replicate channels), so a bundle's inference
transforms are *mapped* onto those parameters, never run. Only transforms whose effect the gateway
reproduces are accepted; anything else is refused by name, because a silently dropped transform
would feed the network pixels it never saw in training. Arguments are read through MONAI's
:class:`~monai.bundle.config_parser.ConfigParser`, so references (``@image_key``) and expressions
resolve as ``monai.bundle.run`` would resolve them, without instantiating the transforms (which
would need their readers and files).

Known approximation: ``ScaleIntensity(d)`` rescales each image by its own min and max; the
gateway scales by the stored bit depth (or a window). For radiographs that use most of their
range the two agree closely, but not exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monai.bundle.config_parser import ConfigParser

from pipelines.importers.common import ImportRefusedError

METADATA = "configs/metadata.json"
IMAGE_KEY = "image"
PRED_KEY = "pred"

Step = tuple[str, str, dict[str, Any]]

#: Transforms that load, reorder or retype data without changing what the network sees.
_IGNORED = frozenset({
    "LoadImage", "LoadImaged", "EnsureChannelFirst", "EnsureChannelFirstd", "EnsureType",
    "EnsureTyped", "ToTensor", "ToTensord", "CastToType", "CastToTyped", "Identity", "Identityd",
})  # fmt: skip
#: Postprocessing that thresholds or saves; radwatch thresholds with the spec's thresholds.
_IGNORED_POST = _IGNORED | {
    "AsDiscrete", "AsDiscreted", "SaveImage", "SaveImaged", "CopyItemsd", "DeleteItemsd",
    "ToNumpy", "ToNumpyd",
}  # fmt: skip
_RESIZE_MODES = {"bilinear": "bilinear", "area": "area", "nearest": "nearest",
                 "nearest-exact": "nearest"}  # fmt: skip


def _steps(parser: ConfigParser, section: str) -> list[Step]:
    """``(config id, transform name, raw item)`` of a Compose (or list) in the config."""
    if section not in parser:
        return []
    raw = parser.get(section)
    if isinstance(raw, dict) and isinstance(raw.get("transforms"), list):
        base, items = f"{section}#transforms", raw["transforms"]
    elif isinstance(raw, list):
        base, items = section, raw
    elif isinstance(raw, dict) and "_target_" in raw:
        return [(section, str(raw["_target_"]).rsplit(".", 1)[-1], raw)]
    else:
        raise ImportRefusedError(
            f"{section} in the inference config is not a Compose of transforms; give --spec"
        )
    steps = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("_target_"), str):
            raise ImportRefusedError(
                f"{section} transform #{i} is not a '_target_' component (it is {item!r:.60}); "
                "give --spec with the preprocessing"
            )
        steps.append((f"{base}#{i}", item["_target_"].rsplit(".", 1)[-1], item))
    return steps


def _arg(parser: ConfigParser, step: Step, name: str, default: Any = None) -> Any:
    """A transform argument with references and expressions resolved by ConfigParser."""
    cid, _, item = step
    return parser.get_parsed_content(f"{cid}#{name}") if name in item else default


def _touches(parser: ConfigParser, step: Step, key: str) -> bool:
    if _arg(parser, step, "_disabled_", False) is True:
        return False
    keys = _arg(parser, step, "keys", key)
    return key in ([keys] if isinstance(keys, str) else list(keys))


def _unknown(section: str, name: str) -> ImportRefusedError:
    return ImportRefusedError(
        f"the bundle's {section} uses {name}, which radwatch cannot reproduce in its gateway; "
        "give --spec with equivalent preprocessing, or remove the transform"
    )


def _affine(lo: float, hi: float) -> dict[str, Any]:
    """``normalize`` that maps the gateway's [0, 1] pixels onto [lo, hi]."""
    if hi <= lo:
        raise ImportRefusedError(f"an intensity range [{lo}, {hi}] is empty; give --spec")
    if (lo, hi) == (0.0, 1.0):
        return {"kind": "none"}
    return {"kind": "fixed", "mean": -lo / (hi - lo), "std": 1.0 / (hi - lo)}


def preprocessing_of(parser: ConfigParser, image: Mapping[str, Any]) -> dict[str, Any]:
    """Map the inference preprocessing onto the gateway's fixed order (see ``Preprocessing``).

    ScaleIntensity(d) and ScaleIntensityRange(d) become a [0, 1] scaling (plus a window for
    ranges in modality units) and an affine ``normalize`` onto their output range; Resized
    gives the resize mode (its size must be the metadata's); NormalizeIntensity(d) is a
    z-score, or fixed with explicit subtrahend/divisor; RepeatChannel(d) is channel replication.
    Without any intensity transform, the metadata's ``value_range`` is taken as the target.
    """
    out: dict[str, Any] = {"replicate_channels": True, "normalize": None}
    for step in _steps(parser, "preprocessing"):
        if step[1] in _IGNORED or not _touches(parser, step, IMAGE_KEY):
            continue
        normalize = _map_step(parser, step, image, out)
        if normalize is not None:
            if out["normalize"] not in (None, {"kind": "none"}):
                raise _unknown("preprocessing", f"a second intensity normalisation ({step[1]})")
            out["normalize"] = normalize
    if out["normalize"] is None:
        lo, hi = (float(v) for v in image["value_range"][:2])
        out["normalize"] = _affine(lo, hi)
    return out


def _map_step(
    parser: ConfigParser,
    step: Step,
    image: Mapping[str, Any],
    out: dict[str, Any],
) -> dict[str, Any] | None:
    """One preprocessing transform: updates ``out``, returns its ``normalize`` if it has one."""
    name, section = step[1], "preprocessing"

    def arg(key: str, default: Any = None) -> Any:
        return _arg(parser, step, key, default)

    if name in ("ScaleIntensity", "ScaleIntensityd"):
        if arg("factor") is not None:
            raise _unknown(section, f"{name}(factor=...)")
        return _affine(float(arg("minv", 0.0)), float(arg("maxv", 1.0)))
    if name in ("ScaleIntensityRange", "ScaleIntensityRanged"):
        a_min, a_max = float(arg("a_min")), float(arg("a_max"))
        if arg("b_min") is None or a_max <= a_min:
            raise _unknown(section, f"{name} without a_min < a_max and b_min/b_max")
        out["window"] = {"center": (a_min + a_max) / 2, "width": a_max - a_min}
        return _affine(float(arg("b_min")), float(arg("b_max")))
    if name in ("NormalizeIntensity", "NormalizeIntensityd"):
        sub, div = arg("subtrahend"), arg("divisor")
        if arg("nonzero", False) or arg("channel_wise", False):
            raise _unknown(section, f"{name}(nonzero/channel_wise)")
        if sub is None and div is None:
            return {"kind": "zscore"}
        if isinstance(sub, int | float) and isinstance(div, int | float):
            return {"kind": "fixed", "mean": float(sub), "std": float(div)}
        raise _unknown(section, f"{name} with only one of subtrahend/divisor")
    if name in ("Resize", "Resized"):
        size = [int(d) for d in arg("spatial_size")]
        if size != list(image["spatial_shape"]):
            raise ImportRefusedError(
                f"the bundle's {name} resizes to {size} but {METADATA} declares "
                f"spatial_shape {image['spatial_shape']}; make them agree"
            )
        mode = str(arg("mode", "area"))
        if mode not in _RESIZE_MODES:
            raise _unknown(section, f"{name}(mode={mode!r})")
        out["resize_mode"] = _RESIZE_MODES[mode]
        out["antialias"] = bool(arg("anti_aliasing", False))
        return None
    if name in ("RepeatChannel", "RepeatChanneld"):
        if int(arg("repeats")) != int(image["num_channels"]):
            raise ImportRefusedError(
                f"the bundle's {name} repeats {arg('repeats')} channels but {METADATA} "
                f"declares {image['num_channels']} input channels; make them agree"
            )
        return None
    raise _unknown(section, name)


def activation_of(parser: ConfigParser, pred: Mapping[str, Any]) -> str:
    """``logit`` when the bundle applies a sigmoid after the network (radwatch will)."""
    sigmoid = False
    section = "postprocessing"
    for step in _steps(parser, section):
        name = step[1]
        if name in _IGNORED_POST or not _touches(parser, step, PRED_KEY):
            continue
        if name not in ("Activations", "Activationsd"):
            raise _unknown(section, name)
        if _arg(parser, step, "softmax", False) or _arg(parser, step, "other") is not None:
            raise ImportRefusedError(
                f"the bundle's {section} applies softmax or a custom activation to 'pred'; "
                "radwatch applies an independent sigmoid per finding: give --spec with "
                "activation 'probability' and a network that returns probabilities"
            )
        sigmoid = sigmoid or bool(_arg(parser, step, "sigmoid", False))
    return "logit" if sigmoid or str(pred.get("type")).lower() == "logits" else "probability"
