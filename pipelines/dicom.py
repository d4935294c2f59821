"""DICOM Part-10 writing of synthetic studies and defensive reading of uploaded radiographs.

Writing produces a Digital X-Ray (DX, "for presentation") file: 16-bit unsigned MONOCHROME2
pixels with ``BitsStored = 16`` (so a [0, 1] float image round-trips within 1/65535), and UIDs
derived deterministically from the synthetic study id, so the same study always produces the same
file. Patient names are pseudonymous tokens, never realistic names.

Reading is the gateway's first line of defence: anything radwatch cannot interpret the way the
model was trained (colour, multi-frame, exotic compression, truncated pixel data, absurd sizes)
is rejected with :class:`InvalidDicomError`, whose message says what to send instead. Messages
never contain identifiers from the file.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError as PydicomInvalidDicomError
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

from pipelines.errors import InvalidDicomError
from pipelines.spec import Preprocessing
from pipelines.synth import Study

#: Digital X-Ray Image Storage - For Presentation.
DX_PRESENTATION_SOP_CLASS = UID("1.2.840.10008.5.1.4.1.1.1.1")
#: Transfer syntaxes pydicom decodes with numpy alone (no optional codec packages).
SUPPORTED_TRANSFER_SYNTAXES = frozenset(
    {
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        RLELossless,
    }
)
MIN_SIDE_PX = 32
MAX_SIDE_PX = 8192
#: Physical detector width the synthetic images cover, in mm (a 43 cm x 43 cm DR panel).
DETECTOR_MM = 430.0

_SEND_INSTEAD = (
    "send a single-frame greyscale (MONOCHROME1/2) DX or CR image, uncompressed or RLE lossless"
)
_AGE_RE = re.compile(r"^(\d{1,3})([DWMY])$")


@dataclass
class DicomImage:
    """A decoded radiograph: ``image`` is 2-D float32 in [0, 1] (bright = dense), ``metadata``
    has the keys of :data:`METADATA_KEYS` (value None where the tag is missing)."""

    image: npt.NDArray[np.float32]
    metadata: dict[str, object] = field(default_factory=dict)


METADATA_KEYS: tuple[str, ...] = (
    "study_id",
    "patient_id",
    "manufacturer",
    "manufacturer_model",
    "institution_name",
    "kvp",
    "sex",
    "age",
    "race_ethnicity",
    "view_position",
    "modality",
)


def _uid(study_id: str, kind: str) -> UID:
    return generate_uid(entropy_srcs=["radwatch-synth", study_id, kind])


def _study_date(study_id: str) -> str:
    """A deterministic date in 2025 so the same study always writes the same bytes."""
    day = int.from_bytes(hashlib.blake2b(study_id.encode(), digest_size=2).digest(), "big") % 365
    return date.fromordinal(date(2025, 1, 1).toordinal() + day).strftime("%Y%m%d")


def study_to_dataset(study: Study) -> Dataset:
    """A complete DX Part-10 dataset (file meta included) for ``study``."""
    img = np.asarray(study.image, dtype=np.float32)
    if img.ndim != 2 or not np.isfinite(img).all() or img.min() < 0 or img.max() > 1:
        raise ValueError("Study.image must be a finite 2-D array in [0, 1] to write DICOM")
    pixels = np.round(img * 65535.0).astype("<u2")
    sop_uid = _uid(study.study_id, "sop")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_PRESENTATION_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID("1.2.826.0.1.3680043.8.498.1")
    meta.ImplementationVersionName = "RADWATCH_SYN"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = DX_PRESENTATION_SOP_CLASS
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = _uid(study.study_id, "study")
    ds.SeriesInstanceUID = _uid(study.study_id, "series")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = _study_date(study.study_id)
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.StudyID = study.study_id[:16]
    ds.AccessionNumber = study.study_id[:16]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = study.view_position
    ds.PatientOrientation = ["L", "F"]
    ds.Manufacturer = study.manufacturer
    ds.ManufacturerModelName = study.manufacturer_model
    ds.InstitutionName = study.institution_name
    ds.KVP = f"{study.kvp:g}"
    ds.PatientName = f"SYNTHETIC^{study.patient_id[-8:]}"
    ds.PatientID = study.patient_id
    ds.PatientSex = study.sex
    ds.PatientAge = f"{min(max(int(study.age), 0), 999):03d}Y"
    ds.EthnicGroup = study.race_ethnicity[:16]
    ds.PatientIdentityRemoved = "YES"
    spacing = f"{DETECTOR_MM / img.shape[0]:.4f}"
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(img.shape[0]), int(img.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    return ds


def study_to_bytes(study: Study) -> bytes:
    """The Part-10 file (128-byte preamble + "DICM" + file meta + dataset) as bytes."""
    buf = io.BytesIO()
    study_to_dataset(study).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_dicom(study: Study, path: Path) -> None:
    """Write the study as a Part-10 file at ``path`` (parent directories are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(study_to_bytes(study))


def _parse(data: bytes) -> Dataset:
    if not data:
        raise InvalidDicomError(f"the upload is empty; {_SEND_INSTEAD}")
    try:
        return pydicom.dcmread(io.BytesIO(data))
    except PydicomInvalidDicomError:
        pass
    except Exception as exc:
        raise InvalidDicomError(
            f"the file could not be parsed as DICOM ({type(exc).__name__}); the file may be "
            f"truncated or corrupt: {_SEND_INSTEAD}"
        ) from None
    # No preamble: some PACS exports omit it. Accept only if it parses as a real image dataset.
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        if "SOPClassUID" in ds and "Rows" in ds:
            return ds
    except Exception:  # noqa: S110  (any failure here means "not DICOM", reported below)
        pass
    raise InvalidDicomError(
        "the upload is not a DICOM Part-10 file (no 'DICM' marker and no readable image "
        f"dataset); {_SEND_INSTEAD}. PNG/JPEG files go to the image-array endpoint instead"
    )


def _check_image_module(ds: Dataset) -> tuple[int, int]:
    if "PixelData" not in ds:
        raise InvalidDicomError(
            "the DICOM file has no PixelData element (it may be a structured report or "
            f"presentation state); {_SEND_INSTEAD}"
        )
    file_meta = getattr(ds, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if syntax is not None and syntax not in SUPPORTED_TRANSFER_SYNTAXES:
        raise InvalidDicomError(
            f"transfer syntax {syntax.name or syntax} is not supported; re-export the image "
            "uncompressed (Explicit VR Little Endian) or RLE lossless"
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise InvalidDicomError(f"the file has {frames} frames; {_SEND_INSTEAD}")
    samples = int(ds.get("SamplesPerPixel", 1))
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InvalidDicomError(
            f"the image is colour or not greyscale (SamplesPerPixel={samples}, "
            f"PhotometricInterpretation={photometric or 'missing'}); {_SEND_INSTEAD}"
        )
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits_alloc, bits_stored = int(ds.BitsAllocated), int(ds.get("BitsStored", ds.BitsAllocated))
    except (AttributeError, TypeError, ValueError):
        raise InvalidDicomError(
            f"Rows, Columns or BitsAllocated is missing or not a number; {_SEND_INSTEAD}"
        ) from None
    for name, size in (("Rows", rows), ("Columns", cols)):
        if not MIN_SIDE_PX <= size <= MAX_SIDE_PX:
            raise InvalidDicomError(
                f"{name} = {size} px is outside the supported {MIN_SIDE_PX}-{MAX_SIDE_PX} px; "
                "send the original full-resolution radiograph, not a thumbnail or a mosaic"
            )
    if bits_alloc not in (8, 16) or not 1 <= bits_stored <= bits_alloc:
        raise InvalidDicomError(
            f"BitsAllocated={bits_alloc}, BitsStored={bits_stored} is not supported; send 8- or "
            "16-bit integer pixels"
        )
    if syntax is None or not syntax.is_compressed:
        expected = rows * cols * bits_alloc // 8
        actual = len(ds.PixelData)
        if actual not in (expected, expected + 1):
            raise InvalidDicomError(
                f"PixelData has {actual} bytes but Rows x Columns x BitsAllocated needs "
                f"{expected}; the file is truncated or its header is wrong: re-export it"
            )
    return bits_stored, int(ds.get("PixelRepresentation", 0))


@dataclass(frozen=True)
class PixelOptions:
    """How stored pixels become [0, 1] values (a model spec's ``preprocessing`` declares them).

    ``window`` (center, width in modality units) replaces the file's own VOI window, e.g. a
    lung or mediastinal window for CT; ``rescale`` applies RescaleSlope/Intercept before it;
    ``invert_monochrome1`` makes bright mean dense for MONOCHROME1 files.
    """

    window: tuple[float, float] | None = None
    rescale: bool = True
    invert_monochrome1: bool = True


def pixel_options(preprocessing: Preprocessing) -> PixelOptions:
    """The pixel decoding a spec's preprocessing declares."""
    w = preprocessing.window
    return PixelOptions(
        window=None if w is None else (w.center, w.width),
        rescale=preprocessing.rescale,
        invert_monochrome1=preprocessing.invert_monochrome1,
    )


def _to_unit_range(
    ds: Dataset,
    raw: npt.NDArray[np.generic],
    bits: int,
    signed: int,
    options: PixelOptions = PixelOptions(),
) -> npt.NDArray[np.float32]:
    """Map stored values to [0, 1] display units.

    The modality LUT (RescaleSlope/Intercept) is applied first. With a window (the options', else
    the file's VOI WindowCenter/WindowWidth, first value), the DICOM linear window maps it to
    [0, 1], as a viewer would show it; otherwise the full BitsStored range is used. MONOCHROME1
    is inverted so bright always means dense, as in training.
    """
    x = raw.astype(np.float64)
    slope = float(ds.get("RescaleSlope", 1) or 1) if options.rescale else 1.0
    intercept = float(ds.get("RescaleIntercept", 0) or 0) if options.rescale else 0.0
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if options.window is not None:
        center, width = options.window
    if center is not None and width is not None:
        c = float(center[0] if isinstance(center, pydicom.multival.MultiValue) else center)
        w = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
        x = x * slope + intercept
        y = (x - (c - 0.5)) / max(w - 1.0, 1.0) + 0.5
    else:
        lo = -(2.0 ** (bits - 1)) if signed else 0.0
        y = (x - lo) / (2.0**bits - 1.0)
    y = np.clip(y, 0.0, 1.0)
    if options.invert_monochrome1 and str(ds.PhotometricInterpretation).upper() == "MONOCHROME1":
        y = 1.0 - y
    return y.astype(np.float32)


def _parse_age(ds: Dataset) -> int | None:
    """Age in whole years from PatientAge ("045Y", "006M", "010W", "003D")."""
    text = str(ds.get("PatientAge", "") or "").strip().upper()
    match = _AGE_RE.match(text)
    if not match:
        return None
    value, unit = int(match.group(1)), match.group(2)
    days_per_unit = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}[unit]
    return value if unit == "Y" else int(value * days_per_unit // 365.25)


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None


def _metadata(ds: Dataset) -> dict[str, object]:
    kvp_text = _text(ds, "KVP")
    try:
        kvp = float(kvp_text) if kvp_text is not None else None
    except ValueError:
        kvp = None
    return {
        "study_id": _text(ds, "AccessionNumber") or _text(ds, "StudyID"),
        "patient_id": _text(ds, "PatientID"),
        "manufacturer": _text(ds, "Manufacturer"),
        "manufacturer_model": _text(ds, "ManufacturerModelName"),
        "institution_name": _text(ds, "InstitutionName"),
        "kvp": kvp,
        "sex": _text(ds, "PatientSex"),
        "age": _parse_age(ds),
        "race_ethnicity": _text(ds, "EthnicGroup"),
        "view_position": _text(ds, "ViewPosition"),
        "modality": _text(ds, "Modality"),
    }


def site_slug(institution_name: str) -> str:
    """The site key radwatch groups by, from a DICOM InstitutionName: lower case, characters
    other than letters, digits and ``-_.`` replaced, at most 64 characters."""
    slug = "".join(
        c if c.isalnum() or c in "-_." else "_" for c in institution_name.strip().lower()
    )
    return slug[:64] or "unknown"


def read_dicom(data: bytes, options: PixelOptions | None = None) -> DicomImage:
    """Decode an uploaded DICOM file into a [0, 1] image and the metadata radwatch records.

    ``study_id`` is the AccessionNumber (what radiology reports, hence late labels, refer to),
    falling back to StudyID. Raises :class:`InvalidDicomError` for anything unsupported.
    """
    ds = _parse(data)
    bits, signed = _check_image_module(ds)
    try:
        raw = ds.pixel_array
    except Exception as exc:
        raise InvalidDicomError(
            f"the pixel data could not be decoded ({type(exc).__name__}); {_SEND_INSTEAD}"
        ) from None
    if raw.ndim != 2:
        raise InvalidDicomError(f"decoded pixel array has shape {raw.shape}; {_SEND_INSTEAD}")
    image = _to_unit_range(ds, raw, bits, signed, options or PixelOptions())
    return DicomImage(image=image, metadata=_metadata(ds))
