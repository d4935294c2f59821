"""DICOM writing round trip and every rejection path of read_dicom."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, RLELossless

from pipelines.dicom import (
    PixelOptions,
    pixel_options,
    read_dicom,
    study_to_bytes,
    study_to_dataset,
    write_dicom,
)
from pipelines.errors import InvalidDicomError
from pipelines.spec import Preprocessing, Window
from pipelines.synth import RadiographGenerator, Study


@pytest.fixture(scope="module")
def studies() -> list[Study]:
    return RadiographGenerator(seed=17).generate(4)


def _bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_round_trip_keeps_pixels_and_metadata(studies: list[Study]) -> None:
    for s in studies:
        decoded = read_dicom(study_to_bytes(s))
        assert decoded.image.dtype == np.float32
        assert decoded.image.shape == s.image.shape
        assert float(np.abs(decoded.image - s.image).max()) <= 0.5 / 65535 + 1e-7
        assert decoded.metadata == {
            "study_id": s.study_id,
            "patient_id": s.patient_id,
            "manufacturer": s.manufacturer,
            "manufacturer_model": s.manufacturer_model,
            "institution_name": s.institution_name,
            "kvp": s.kvp,
            "sex": s.sex,
            "age": s.age,
            "race_ethnicity": s.race_ethnicity,
            "view_position": s.view_position,
            "modality": "DX",
        }


def test_dataset_tags_uids_and_determinism(studies: list[Study], tmp_path: Path) -> None:
    s = studies[0]
    path = tmp_path / "a" / "study.dcm"
    write_dicom(s, path)
    assert path.read_bytes() == study_to_bytes(s)
    assert path.read_bytes()[128:132] == b"DICM"
    ds = pydicom.dcmread(path)
    assert ds.Modality == "DX"
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert (ds.BitsAllocated, ds.BitsStored, ds.SamplesPerPixel) == (16, 16, 1)
    assert ds.PatientAge == f"{s.age:03d}Y"
    assert ds.AccessionNumber == s.study_id
    assert str(ds.PatientName).startswith("SYNTHETIC^")
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    uids = {ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID}
    assert len(uids) == 3
    assert all(len(u) <= 64 and u.replace(".", "").isdigit() for u in uids)
    other = study_to_dataset(studies[1])
    assert other.StudyInstanceUID != ds.StudyInstanceUID


def _variant(study: Study, change: Callable[[Dataset], None]) -> bytes:
    ds = study_to_dataset(study)
    change(ds)
    return _bytes(ds)


@pytest.mark.parametrize(
    ("age", "years"), [("045Y", 45), ("006M", 0), ("030M", 2), ("010W", 0), ("003D", 0), ("", None)]
)
def test_age_strings(studies: list[Study], age: str, years: int | None) -> None:
    data = _variant(studies[0], lambda ds: setattr(ds, "PatientAge", age))
    assert read_dicom(data).metadata["age"] == years


def test_missing_tags_become_none(studies: list[Study]) -> None:
    def strip(ds: Dataset) -> None:
        for kw in ("Manufacturer", "KVP", "PatientSex", "ViewPosition", "AccessionNumber"):
            delattr(ds, kw)

    meta = read_dicom(_variant(studies[0], strip)).metadata
    assert meta["manufacturer"] is None
    assert meta["kvp"] is None
    assert meta["sex"] is None
    assert meta["view_position"] is None
    assert meta["study_id"] == studies[0].study_id  # falls back to StudyID


def test_monochrome1_is_inverted_and_window_applied(studies: list[Study]) -> None:
    s = studies[0]
    mono1 = read_dicom(
        _variant(s, lambda ds: setattr(ds, "PhotometricInterpretation", "MONOCHROME1"))
    )
    np.testing.assert_allclose(mono1.image, 1.0 - s.image, atol=1e-5)

    def window(ds: Dataset) -> None:
        ds.WindowCenter, ds.WindowWidth = 32768, 32768

    windowed = read_dicom(_variant(s, window)).image
    stored = np.round(s.image * 65535.0)
    expected = np.clip((stored - 32767.5) / 32767 + 0.5, 0, 1)
    np.testing.assert_allclose(windowed, expected, atol=1e-5)


def test_a_spec_declares_its_own_window_rescale_and_inversion(studies: list[Study]) -> None:
    s = studies[0]
    stored = np.round(s.image * 65535.0)

    def ct_like(ds: Dataset) -> None:
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.WindowCenter, ds.WindowWidth = 32768, 32768  # the file's own VOI, replaced below
        ds.PhotometricInterpretation = "MONOCHROME1"

    data = _variant(s, ct_like)
    spec = Preprocessing(window=Window(center=40.0, width=400.0))
    assert not spec.reads_pixels_by_default
    assert Preprocessing().reads_pixels_by_default
    image = read_dicom(data, pixel_options(spec)).image
    hu = stored - 1024
    expected = 1.0 - np.clip((hu - 39.5) / 399 + 0.5, 0, 1)
    np.testing.assert_allclose(image, expected, atol=1e-5)

    raw = read_dicom(
        data, PixelOptions(window=(40.0, 400.0), rescale=False, invert_monochrome1=False)
    ).image
    np.testing.assert_allclose(raw, np.clip((stored - 39.5) / 399 + 0.5, 0, 1), atol=1e-5)


def test_rle_lossless_is_accepted(studies: list[Study]) -> None:
    ds = study_to_dataset(studies[0])
    ds.compress(RLELossless)
    decoded = read_dicom(_bytes(ds))
    assert float(np.abs(decoded.image - studies[0].image).max()) <= 0.5 / 65535 + 1e-7


def test_file_without_preamble_is_accepted(studies: list[Study]) -> None:
    buf = io.BytesIO()
    study_to_dataset(studies[0]).save_as(buf, enforce_file_format=False)
    data = buf.getvalue()
    assert data[128:132] != b"DICM"
    assert read_dicom(data).image.shape == studies[0].image.shape


def _no_pixels(ds: Dataset) -> None:
    del ds.PixelData


def _multiframe(ds: Dataset) -> None:
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2


def _colour(ds: Dataset) -> None:
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.PixelData = ds.PixelData * 3


def _jpeg(ds: Dataset) -> None:
    # A well-formed encapsulated JPEG frame header is enough: the reader must refuse the syntax
    # before trying to decode (no JPEG codec is installed).
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])


def _truncated(ds: Dataset) -> None:
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]


def _tiny(ds: Dataset) -> None:
    ds.Rows = ds.Columns = 16
    ds.PixelData = np.zeros((16, 16), dtype="<u2").tobytes()


def _huge(ds: Dataset) -> None:
    ds.Rows, ds.Columns = 9000, 32
    ds.PixelData = np.zeros((9000, 32), dtype="<u2").tobytes()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_no_pixels, "no PixelData"),
        (_multiframe, "2 frames"),
        (_colour, "colour"),
        (_jpeg, "not supported; re-export"),
        (_truncated, "truncated"),
        (_tiny, "outside the supported 32-8192"),
        (_huge, "outside the supported 32-8192"),
    ],
)
def test_rejections(studies: list[Study], change: Callable[[Dataset], None], match: str) -> None:
    data = _variant(studies[0], change)
    with pytest.raises(InvalidDicomError, match=match) as info:
        read_dicom(data)
    assert studies[0].patient_id not in str(info.value)
    assert studies[0].study_id not in str(info.value)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 300, "not a DICOM"),
        (b"hello world, this is text", "not a DICOM"),
    ],
)
def test_not_dicom(data: bytes, match: str) -> None:
    with pytest.raises(InvalidDicomError, match=match):
        read_dicom(data)


def test_truncated_file_is_rejected(studies: list[Study]) -> None:
    data = study_to_bytes(studies[0])
    with pytest.raises(InvalidDicomError):
        read_dicom(data[: len(data) - 5000])
