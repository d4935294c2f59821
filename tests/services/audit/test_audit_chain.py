"""The hash recipe and the offline verifier, with no database: what a regulator re-implements."""

from __future__ import annotations

import enum
import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.audit.chain import (
    GENESIS,
    export_line,
    iso_utc,
    json_safe,
    record_hash,
    verify_lines,
)


def _chain(n: int) -> list[dict[str, Any]]:
    records = []
    prev = GENESIS
    t0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    for i in range(n):
        rec: dict[str, Any] = {
            "id": i + 1,
            "at": iso_utc(t0 + timedelta(seconds=i, microseconds=7)),
            "actor": "alice",
            "action": "alert.acknowledged",
            "entity_type": "alert",
            "entity_id": str(i + 1),
            "reason": None if i % 2 else f"note {i} \u00e9",
            "payload": {"site": "north", "scores": [0.1, i], "nested": {"b": 1, "a": 2}},
            "prev_hash": prev,
        }
        rec["hash"] = record_hash(rec)
        prev = rec["hash"]
        records.append(rec)
    return records


def _lines(records: list[dict[str, Any]]) -> list[str]:
    return [export_line(r) + "\n" for r in records]


def test_the_documented_recipe_reproduces_the_hash() -> None:
    """docs/audit.md: SHA-256 of sorted-key, whitespace-free, ASCII JSON of eight fields."""
    rec = _chain(1)[0]
    body = {k: rec[k] for k in rec if k not in ("id", "hash")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert hashlib.sha256(text.encode()).hexdigest() == rec["hash"]
    assert rec["prev_hash"] == "0" * 64
    assert rec["at"] == "2026-11-30T12:00:00.000007Z"


def test_time_is_utc_with_microseconds_whatever_the_zone() -> None:
    cet = timezone(timedelta(hours=1))
    assert iso_utc(datetime(2026, 1, 1, 13, 0, tzinfo=cet)) == "2026-01-01T12:00:00.000000Z"
    assert iso_utc(datetime(2026, 1, 1, 12, 0)) == "2026-01-01T12:00:00.000000Z"  # naive = UTC


def test_payloads_become_plain_json() -> None:
    class Colour(enum.StrEnum):
        RED = "red"

    value = json_safe(
        {
            1: (1, 2),
            "when": datetime(2026, 1, 1, tzinfo=UTC),
            "colour": Colour.RED,
            "nan": float("nan"),
            "inf": float("-inf"),
            "np": np.float32(0.5),
            "npi": np.int64(3),
            "set": {"b", "a"},
            "flag": True,
        }
    )
    assert value == {
        "1": [1, 2],
        "when": "2026-01-01T00:00:00.000000Z",
        "colour": "red",
        "nan": "nan",
        "inf": "-inf",
        "np": 0.5,
        "npi": 3,
        "set": ["a", "b"],
        "flag": True,
    }
    assert type(value["npi"]) is int
    json.dumps(value, allow_nan=False)  # storable as-is
    with pytest.raises(TypeError, match="JSON-like"):
        json_safe({"image": b"\x00\x01"})


def test_an_intact_export_verifies() -> None:
    records = _chain(5)
    result = verify_lines(_lines(records))
    assert result.ok
    assert result.checked == 5
    assert result.head == records[-1]["hash"]
    assert result.start == GENESIS
    assert verify_lines([]).ok  # an empty log is intact, head is the genesis
    assert verify_lines([]).head == GENESIS


def test_an_edited_line_is_named() -> None:
    lines = _lines(_chain(5))
    edited = json.loads(lines[2])
    edited["actor"] = "mallory"
    lines[2] = json.dumps(edited) + "\n"
    result = verify_lines(lines)
    assert not result.ok
    assert result.broken is not None
    assert (result.broken.record_id, result.broken.reason, result.broken.line) == (
        3,
        "content_edited",
        3,
    )
    assert result.checked == 2


def test_an_edited_record_with_a_recomputed_hash_breaks_the_next_link() -> None:
    records = _chain(5)
    records[2]["reason"] = "rewritten"
    records[2]["hash"] = record_hash(records[2])
    result = verify_lines(_lines(records))
    assert result.broken is not None
    assert (result.broken.record_id, result.broken.reason) == (4, "chain_broken")
    assert "record 3" in result.broken.message


@pytest.mark.parametrize(("drop", "named"), [(0, 2), (2, 4)])
def test_a_deleted_line_is_caught_at_the_next_record(drop: int, named: int) -> None:
    lines = _lines(_chain(5))
    del lines[drop]
    result = verify_lines(lines)
    assert result.broken is not None
    assert (result.broken.record_id, result.broken.reason) == (named, "chain_broken")


def test_reordered_lines_are_caught() -> None:
    lines = _lines(_chain(4))
    lines[1], lines[2] = lines[2], lines[1]
    result = verify_lines(lines)
    assert result.broken is not None
    assert result.broken.reason == "chain_broken"
    assert result.broken.record_id == 3


def test_malformed_lines_are_breaks_with_their_line_number() -> None:
    lines = _lines(_chain(3))
    broken = verify_lines([*lines[:1], "{not json\n", *lines[1:]])
    assert broken.broken is not None
    assert (broken.broken.reason, broken.broken.line) == ("malformed", 2)
    missing = verify_lines([json.dumps({"id": 1, "hash": "x"})])
    assert missing.broken is not None
    assert missing.broken.reason == "malformed"
    assert missing.broken.record_id == 1
    assert verify_lines(["\n", *lines, "  \n"]).ok  # blank lines are not records


def test_a_partial_export_verifies_only_when_declared_partial() -> None:
    records = _chain(6)
    tail = _lines(records[3:])
    strict = verify_lines(tail)
    assert strict.broken is not None
    assert "genesis" in strict.broken.message
    partial = verify_lines(tail, allow_partial=True)
    assert partial.ok
    assert partial.start == records[2]["hash"]
    assert partial.checked == 3


def test_the_anchor_catches_a_cut_tail() -> None:
    records = _chain(5)
    head = records[-1]["hash"]
    assert verify_lines(_lines(records), anchor=head).ok
    cut = verify_lines(_lines(records[:-1]), anchor=head)
    assert cut.broken is not None
    assert cut.broken.reason == "anchor_missing"
    assert cut.checked == 4  # everything left is intact; only the anchor shows the loss


def test_the_checker_in_the_docs_accepts_an_export_and_catches_an_edit(tmp_path: Path) -> None:
    """The stand-alone checker in docs/audit.md, run as written, with no radwatch import."""
    doc = (Path(__file__).resolve().parents[3] / "docs" / "audit.md").read_text()
    checker = doc.split("```python\nimport hashlib", 1)[1].split("```", 1)[0]
    script = tmp_path / "check.py"
    script.write_text("import hashlib" + checker)
    records = _chain(4)
    export = tmp_path / "audit.jsonl"
    export.write_text("".join(_lines(records)))
    ok = subprocess.run(
        [sys.executable, str(script), str(export)], capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"ok, head {records[-1]['hash']}"
    export.write_text("".join(_lines(records)).replace('"note 2 ', '"note 9 '))
    edited = subprocess.run(
        [sys.executable, str(script), str(export)], capture_output=True, text=True, check=False
    )
    assert edited.returncode == 1
    assert "line 3: edited" in edited.stderr
