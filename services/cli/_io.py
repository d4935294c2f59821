"""Read the CLI's input tables (Parquet or CSV) into numpy columns, with errors that say what
to fix.

Every failure raises :class:`TableInputError`; ``radwatch monitor`` prints its message on stderr
and exits with code 2. Messages name the file, the column and the fix, and never quote cell
values, so no patient or study identifier can reach a terminal log.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]

#: Suffixes read as Parquet; everything else must be CSV or TSV.
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv", ".tsv", ".txt")


class TableInputError(ValueError):
    """An input table or column cannot be used as given."""


def read_table(path: Path, *, role: str) -> pd.DataFrame:
    """Read ``path`` by its suffix. ``role`` (``"--data"``, ``"--reference"``...) names the
    option in messages."""
    if not path.exists():
        raise TableInputError(f"{role} file {str(path)!r} does not exist.")
    if not path.is_file():
        raise TableInputError(f"{role} path {str(path)!r} is not a file.")
    suffix = path.suffix.lower()
    try:
        if suffix in PARQUET_SUFFIXES:
            df = pd.read_parquet(path)
        elif suffix in CSV_SUFFIXES:
            df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        else:
            raise TableInputError(
                f"{role} file {str(path)!r} has suffix {suffix!r}; use .parquet or .csv."
            )
    except TableInputError:
        raise
    except Exception as exc:  # pyarrow, the CSV parser and the OS all raise their own types.
        kind = "Parquet" if suffix in PARQUET_SUFFIXES else "CSV"
        raise TableInputError(
            f"{role} file {str(path)!r} could not be read as {kind} ({type(exc).__name__}). "
            "Check that the file is complete and in that format."
        ) from exc
    if df.shape[0] == 0:
        raise TableInputError(f"{role} file {str(path)!r} has no rows.")
    df.columns = [str(c) for c in df.columns]
    return df


def require_columns(df: pd.DataFrame, names: list[str], *, role: str) -> None:
    """Refuse the first name that is not a column of ``df``, listing the columns it has."""
    for name in names:
        if name not in df.columns:
            shown = ", ".join(list(df.columns)[:20]) + (" ..." if df.shape[1] > 20 else "")
            raise TableInputError(f"Column {name!r} is not in {role}; its columns are: {shown}.")


def _column(df: pd.DataFrame, name: str, role: str) -> pd.Series:
    require_columns(df, [name], role=role)
    col = df[name]
    if col.isna().all():
        raise TableInputError(f"Column {name!r} in {role} has no values (all missing).")
    return col


def numeric_column(
    df: pd.DataFrame, name: str, *, role: str, allow_missing: bool = False
) -> FloatArray:
    """A numeric (or boolean) column as float64; refuses text, and missing values unless
    ``allow_missing`` (then they are NaN)."""
    col = _column(df, name, role)
    if col.dtype.kind == "b":
        values = col.to_numpy(dtype=np.float64)
    elif col.dtype.kind in "iuf":
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        coerced = pd.to_numeric(col, errors="coerce")
        bad = int((coerced.isna() & col.notna()).sum())
        if bad:
            raise TableInputError(
                f"Column {name!r} in {role} must be numeric, but {bad} values are not numbers "
                f"(dtype {col.dtype}). Fix the export or pick the right column."
            )
        values = coerced.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = int(np.isnan(values).sum())
    if missing and not allow_missing:
        raise TableInputError(
            f"Column {name!r} in {role} has {missing} missing values; drop those rows first."
        )
    return values


def label_column(df: pd.DataFrame, name: str, *, role: str) -> FloatArray:
    """Binary labels as 0.0/1.0: bool, or numbers that are all 0 or 1."""
    values = numeric_column(df, name, role=role)
    if not np.isin(values, (0.0, 1.0)).all():
        raise TableInputError(
            f"Label column {name!r} in {role} must hold only 0 and 1 (or true/false)."
        )
    if np.unique(values).size < 2:
        raise TableInputError(
            f"Label column {name!r} in {role} is constant (one class only); performance needs "
            "positives and negatives. Use a longer window."
        )
    return values


def score_column(df: pd.DataFrame, name: str, *, role: str) -> FloatArray:
    """Model scores: numeric, no missing values, not constant (a constant score means the
    export wrote the wrong column or the model is broken)."""
    values = numeric_column(df, name, role=role)
    if values.size > 1 and np.all(values == values[0]):
        raise TableInputError(
            f"Score column {name!r} in {role} is constant; check that it holds the model's "
            "output probability."
        )
    return values


def category_column(df: pd.DataFrame, name: str, *, role: str) -> ObjectArray:
    """Values as strings (object array) with missing values as ``None``."""
    col = _column(df, name, role)
    out = np.empty(col.size, dtype=object)
    for i, (x, miss) in enumerate(zip(col.tolist(), col.isna().tolist(), strict=True)):
        out[i] = None if miss else str(x)
    return out


def is_numeric(df: pd.DataFrame, name: str) -> bool:
    """True for bool, integer and float columns (text columns are categorical)."""
    return df[name].dtype.kind in "biuf"


def split_names(value: str | None) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; None or empty -> []."""
    if not value:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]
