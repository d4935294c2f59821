"""Turning dossier JSON and timestamps into what the templates show.

The dossier generator owns the document's layout and may add or reshape sections, so sections are
rendered generically: any JSON becomes a tree of :class:`Node` (text, key/value list, table, list)
that one recursive template macro draws. Shapes that read best as a table are recognised: a list
of objects (one row each) and an object of objects (one row per key, e.g. per site or subgroup).
Nothing here trusts the document: text is escaped by the templates, images must be data-URI
rasters or SVG, and deep or huge values are cut with a visible note instead of hanging the page.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from services.core.models import as_utc

MAX_DEPTH = 6
MAX_ITEMS = 200

NodeKind = Literal["text", "pairs", "table", "list", "verdict"]


@dataclass(frozen=True)
class Node:
    kind: NodeKind
    text: str = ""
    #: ``pairs``: (label, node) per key.
    pairs: list[tuple[str, Node]] = field(default_factory=list)
    #: ``table``: column labels, then rows of cells (each cell a node). When ``row_headers``, the
    #: first cell of each row names the row (an object-of-objects table).
    columns: list[str] = field(default_factory=list)
    rows: list[list[Node]] = field(default_factory=list)
    row_headers: bool = False
    #: ``list``: the items.
    items: list[Node] = field(default_factory=list)
    #: ``verdict``: a pass/fail flag, shown as text and colour.
    passed: bool = False
    #: A note when the value was cut (too deep, too many items).
    note: str = ""


_ACRONYMS = {
    "auroc": "AUROC",
    "auc": "AUC",
    "roc": "ROC",
    "ci": "CI",
    "ece": "ECE",
    "tpr": "TPR",
    "fpr": "FPR",
    "ppv": "PPV",
    "npv": "NPV",
    "mmd": "MMD",
    "kvp": "kVp",
    "id": "ID",
    "ids": "IDs",
    "sha256": "SHA-256",
    "url": "URL",
    "n": "n",
    "p": "p",
}

_VERDICT_KEYS = {"passed", "pass", "ok", "non_inferior", "meets_threshold"}


def humanize(key: object) -> str:
    """``drift_evidence`` -> ``Drift evidence``; known acronyms keep their case."""
    text = str(key)
    words = [w for w in re.split(r"[_\s]+", text) if w]
    if not words:
        return text
    out = [_ACRONYMS.get(w.lower(), w) for w in words]
    first = out[0]
    if words[0].lower() not in _ACRONYMS and first.islower():
        out[0] = first[:1].upper() + first[1:]
    return " ".join(out)


def fmt_number(value: float | int) -> str:
    """Integers as they are; other numbers to four significant digits (the dossier's metrics are
    estimates with confidence intervals, so more digits would be noise)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "not available"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


#: Keys whose two-number lists are intervals (``auroc_ci: [0.89, 0.93]`` reads "0.89 to 0.93").
_INTERVAL_KEY = re.compile(r"(^|_)(ci|interval|range|bounds?|limits)($|_)", re.IGNORECASE)


def fmt_value(value: object, key: object = "") -> str:
    """One scalar (or a short list of scalars) as text; None is 'not reported'."""
    if value is None:
        return "not reported"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return fmt_number(value)
    if isinstance(value, list | tuple) and all(_is_scalar(v) for v in value):
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        if len(value) == 2 and numbers and _INTERVAL_KEY.search(str(key)):
            return f"{fmt_value(value[0])} to {fmt_value(value[1])}"
        return ", ".join(fmt_value(v) for v in value)
    return str(value)


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _is_short_scalar_list(value: object) -> bool:
    return (
        isinstance(value, list | tuple) and len(value) <= 12 and all(_is_scalar(v) for v in value)
    )


def _cellable(value: object) -> bool:
    return _is_scalar(value) or _is_short_scalar_list(value)


def _leaf(key: object, value: object) -> Node:
    if isinstance(value, bool) and str(key).lower() in _VERDICT_KEYS:
        return Node(kind="verdict", passed=value, text="PASS" if value else "FAIL")
    return Node(kind="text", text=fmt_value(value, key))


def _table_columns(rows: Sequence[Mapping[str, Any]]) -> list[str] | None:
    """The union of the rows' keys in first-seen order, if every value fits in a cell."""
    columns: list[str] = []
    for row in rows:
        for key, value in row.items():
            if not _cellable(value):
                return None
            if key not in columns:
                columns.append(str(key))
    return columns if 0 < len(columns) <= 16 else None


def _row_label(key: object) -> str:
    """The first column's heading of an object-of-objects table: ``sites`` -> ``Site``."""
    text = str(key)
    if not text:
        return "Name"
    if text.endswith("ies"):
        text = text[:-3] + "y"
    elif text.endswith("s") and not text.endswith("ss"):
        text = text[:-1]
    return humanize(text)


def node_size(node: Node) -> int:
    """How many values a node displays (its leaves)."""
    if node.kind == "pairs":
        return sum(node_size(n) for _, n in node.pairs)
    if node.kind == "table":
        return sum(node_size(n) for row in node.rows for n in row)
    if node.kind == "list":
        return sum(node_size(n) for n in node.items)
    return 1


def to_node(value: object, *, key: object = "", depth: int = 0) -> Node:
    """The display tree of one JSON value."""
    if _cellable(value):
        return _leaf(key, value)
    if depth >= MAX_DEPTH:
        return Node(kind="text", text="", note="(nested too deeply to show here)")
    if isinstance(value, Mapping):
        items = list(value.items())
        note = f"(first {MAX_ITEMS} of {len(items)} entries)" if len(items) > MAX_ITEMS else ""
        items = items[:MAX_ITEMS]
        inner = [v for _, v in items]
        if len(items) >= 2 and all(isinstance(v, Mapping) for v in inner):
            columns = _table_columns(inner)
            if columns is not None:
                return Node(
                    kind="table",
                    columns=[_row_label(key), *(humanize(c) for c in columns)],
                    rows=[
                        [
                            # Row keys are data (site, subgroup), shown as written.
                            Node(kind="text", text=str(k)),
                            *(_leaf(c, v.get(c)) for c in columns),
                        ]
                        for k, v in items
                    ],
                    row_headers=True,
                    note=note,
                )
        return Node(
            kind="pairs",
            pairs=[(humanize(k), to_node(v, key=k, depth=depth + 1)) for k, v in items],
            note=note,
        )
    if isinstance(value, list | tuple) and all(_is_scalar(v) for v in value):
        # A long series (ROC points, per-window p-values) is what the plots draw; listing it
        # would make the page thousands of lines long. The JSON download keeps every value.
        numbers = [v for v in value if isinstance(v, int | float) and not isinstance(v, bool)]
        span = f" from {fmt_number(min(numbers))} to {fmt_number(max(numbers))}" if numbers else ""
        return Node(
            kind="text",
            text=f"{len(value)} values{span}",
            note="(a series: see the plots, or download the dossier JSON)",
        )
    if isinstance(value, list | tuple):
        note = f"(first {MAX_ITEMS} of {len(value)} items)" if len(value) > MAX_ITEMS else ""
        items_list = list(value)[:MAX_ITEMS]
        if items_list and all(isinstance(v, Mapping) for v in items_list):
            columns = _table_columns(items_list)
            if columns is not None:
                return Node(
                    kind="table",
                    columns=[humanize(c) for c in columns],
                    rows=[[_leaf(c, row.get(c)) for c in columns] for row in items_list],
                    note=note,
                )
        return Node(
            kind="list",
            items=[to_node(v, key=key, depth=depth + 1) for v in items_list],
            note=note,
        )
    return Node(kind="text", text=str(value))


# --- plots -------------------------------------------------------------------------------------

_DATA_URI = re.compile(r"^data:image/(png|jpeg|gif|webp|svg\+xml);base64,[A-Za-z0-9+/=\s]+$")
_BARE_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")

PLOT_ALT = {
    "roc": "ROC curves of the candidate and the champion on the evaluation set.",
    "calibration": "Calibration (reliability) curves of the candidate and the champion: "
    "predicted probability against observed frequency.",
    "forest": "Forest plot of the candidate-minus-champion difference per subgroup, with "
    "confidence intervals and the non-inferiority margin.",
    "drift_timeline": "Drift statistic per monitoring window over time, with the threshold "
    "at which an alert opens.",
}


@dataclass(frozen=True)
class Plot:
    key: str
    title: str
    src: str
    alt: str


def plot(key: str, value: object) -> Plot | None:
    """A plot from the dossier's ``plots``: a data-URI string, bare base64 PNG, or an object with
    ``src``/``data``/``png`` and optionally ``alt``/``title``. Anything else is skipped, never
    put into an ``src`` attribute (only data-URI images can be shown, nothing is fetched)."""
    alt = PLOT_ALT.get(key, f"{humanize(key)} plot from the evaluation dossier.")
    title = humanize(key)
    src: object = value
    if isinstance(value, Mapping):
        src = value.get("src") or value.get("data") or value.get("png") or value.get("uri")
        alt = str(value.get("alt") or value.get("description") or alt)
        title = str(value.get("title") or title)
    if not isinstance(src, str) or not src:
        return None
    src = src.strip()
    if not src.startswith("data:") and _BARE_BASE64.match(src[:4096]):
        src = "data:image/png;base64," + src
    if not _DATA_URI.match(src[:4096]):
        return None
    return Plot(key=key, title=title, src=src, alt=alt)


# --- time --------------------------------------------------------------------------------------


def utc(at: datetime) -> datetime:
    return as_utc(at)


def fmt_time(at: datetime | None) -> str:
    return "" if at is None else utc(at).strftime("%Y-%m-%d %H:%M UTC")


def iso(at: datetime | None) -> str:
    """For ``<time datetime=...>``: machine-readable, to the second, in UTC."""
    return "" if at is None else utc(at).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: float) -> str:
    """``2 d 3 h``, ``5 h 12 min``, ``4 min``, ``under a minute``: two units at most."""
    s = int(abs(seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return "under a minute"


def ago(at: datetime, now: datetime) -> str:
    return f"{duration((utc(now) - utc(at)).total_seconds())} ago"


def until(at: datetime, now: datetime) -> str:
    seconds = (utc(at) - utc(now)).total_seconds()
    if seconds <= 0:
        return f"expired {duration(seconds)} ago"
    return f"in {duration(seconds)}"
