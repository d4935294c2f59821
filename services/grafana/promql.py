"""Just enough PromQL reading to check dashboards and rules against the metrics catalog.

Why not a full parser: the only questions asked here are "which metric names does this
expression select, with which label matchers, and which labels does it group or match on?".
A lexer plus bracket matching answers them exactly for the expressions this package writes, and
needs no dependency. Syntax errors are caught elsewhere: ``promtool check rules`` parses every
rule, and the live check runs every expression through a real Prometheus.

Rules enforced by :func:`check_expr`:

- every selected metric is a catalog name; a histogram may be selected as ``<name>_bucket``
  (which adds the label ``le``), ``<name>_sum`` or ``<name>_count``;
- every label in a selector's matchers is one of that metric's catalog labels;
- every label in ``by (...)``, ``without (...)``, ``on (...)`` and ``ignoring (...)`` is a label
  of *every* metric in the aggregated (or matched) expression, because grouping on a label that a
  series lacks silently merges series instead of failing;
- every label in ``group_left (...)`` / ``group_right (...)`` is a label of at least one metric
  in the matched expression (it is copied from the "one" side).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from services.metrics.catalog import BY_NAME, MetricSpec

#: Identifiers that open a label list rather than name a function or a metric.
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
#: Identifiers that are neither metrics nor functions.
KEYWORDS = frozenset({"bool", "and", "or", "unless", "offset", "inf", "nan", "atan2"})
#: Aggregation operators: ``sum by (l) (x)`` puts a label list between the name and its "(".
AGGREGATIONS = frozenset(
    {
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "limitk",
        "limit_ratio",
    }
)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{[A-Za-z0-9_:.]+\}|\$[A-Za-z0-9_]+)
  | (?P<number>(?:0[xX][0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)(?:[smhdwy]|ms)*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^@<>=])
  | (?P<punct>[{}()\[\],])
    """,
    re.VERBOSE,
)


class PromQLSyntaxError(ValueError):
    """The expression has a character or bracket this reader cannot place."""


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class Selector:
    """A vector selector: ``metric{label op "value", ...}`` at token position ``pos``."""

    metric: str | None
    matchers: tuple[tuple[str, str, str], ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Grouping:
    """A label list after ``by``/``without``/``on``/``ignoring``/``group_left``/``group_right``,
    with the metrics of the expression it applies to."""

    keyword: str
    labels: tuple[str, ...]
    metrics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class References:
    selectors: tuple[Selector, ...]
    groupings: tuple[Grouping, ...]

    @property
    def metrics(self) -> tuple[str, ...]:
        """Selected metric names, in order of first appearance."""
        seen: dict[str, None] = {}
        for s in self.selectors:
            if s.metric is not None:
                seen.setdefault(s.metric, None)
        return tuple(seen)


def tokenize(expr: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise PromQLSyntaxError(f"unexpected character {expr[pos]!r} at {pos} in {expr!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            tokens.append(Token(kind, m.group()))
        pos = m.end()
    return tokens


def _match_brackets(tokens: list[Token], expr: str) -> dict[int, int]:
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack: list[int] = []
    match: dict[int, int] = {}
    for i, t in enumerate(tokens):
        if t.kind != "punct" or t.text == ",":
            continue
        if t.text in pairs:
            stack.append(i)
        else:
            if not stack or pairs[tokens[stack[-1]].text] != t.text:
                raise PromQLSyntaxError(f"unbalanced {t.text!r} in {expr!r}")
            j = stack.pop()
            match[j] = i
            match[i] = j
    if stack:
        raise PromQLSyntaxError(f"unclosed {tokens[stack[-1]].text!r} in {expr!r}")
    return match


def _label_list(tokens: list[Token], start: int, end: int) -> tuple[str, ...]:
    return tuple(t.text for t in tokens[start + 1 : end] if t.kind == "ident")


def references(expr: str) -> References:
    """Selectors and label groupings of ``expr`` (Grafana variables may stand anywhere a
    string or duration may)."""
    tokens = tokenize(expr)
    match = _match_brackets(tokens, expr)
    selectors: list[Selector] = []
    # (keyword, labels, scope start, scope end) with scope as token index range (exclusive).
    pending: list[tuple[str, tuple[str, ...], int, int]] = []
    i = 0
    n = len(tokens)
    while i < n:
        t = tokens[i]
        nxt = tokens[i + 1] if i + 1 < n else None
        if t.kind == "punct" and t.text == "[":
            i = match[i] + 1  # ranges, subqueries and $__rate_interval: no names inside
            continue
        if t.kind == "punct" and t.text == "{":
            end = match[i]
            selectors.append(Selector(None, _matchers(tokens, i, end, expr), i))
            i = end + 1
            continue
        if t.kind != "ident":
            i += 1
            continue
        if t.text in GROUPING:
            if nxt is None or nxt.text != "(":
                raise PromQLSyntaxError(f"{t.text} without a label list in {expr!r}")
            close = match[i + 1]
            labels = _label_list(tokens, i + 1, close)
            pending.append((t.text, labels, *_scope(tokens, match, i, close)))
            i = close + 1
            continue
        if t.text in KEYWORDS or t.text in AGGREGATIONS or (nxt is not None and nxt.text == "("):
            i += 1  # a keyword, or a function / aggregation name
            continue
        if nxt is not None and nxt.text == "{":
            end = match[i + 1]
            selectors.append(Selector(t.text, _matchers(tokens, i + 1, end, expr), i))
            i = end + 1
            continue
        selectors.append(Selector(t.text, (), i))
        i += 1
    groupings = [
        Grouping(
            keyword,
            labels,
            tuple(
                dict.fromkeys(
                    s.metric for s in selectors if s.metric is not None and lo <= s.pos < hi
                )
            ),
        )
        for keyword, labels, lo, hi in pending
    ]
    return References(tuple(selectors), tuple(groupings))


def _matchers(
    tokens: list[Token], start: int, end: int, expr: str
) -> tuple[tuple[str, str, str], ...]:
    body = tokens[start + 1 : end]
    out: list[tuple[str, str, str]] = []
    k = 0
    while k < len(body):
        if body[k].text == ",":
            k += 1
            continue
        if (
            k + 2 >= len(body)
            or body[k].kind != "ident"
            or body[k + 1].kind != "op"
            or body[k + 2].kind != "string"
        ):
            raise PromQLSyntaxError(f"cannot read the label matchers of {expr!r}")
        out.append((body[k].text, body[k + 1].text, body[k + 2].text[1:-1]))
        k += 3
    return tuple(out)


def _scope(tokens: list[Token], match: Mapping[int, int], kw: int, close: int) -> tuple[int, int]:
    """Token range of the expression a label list applies to.

    ``sum by (l) (expr)`` and ``sum (expr) by (l)``: the aggregation's argument. ``on``,
    ``ignoring`` and ``group_*``: the innermost parenthesised expression around the binary
    operator, or the whole expression at top level.
    """
    keyword = tokens[kw].text
    if keyword in ("by", "without"):
        after = close + 1
        if after < len(tokens) and tokens[after].text == "(":
            return after, match[after] + 1
        before = kw - 1
        if before >= 0 and tokens[before].text == ")":
            return match[before], before + 1
        raise PromQLSyntaxError(f"{keyword} is not attached to an aggregation")
    depth_open = -1
    depth = 0
    for j in range(kw - 1, -1, -1):
        if tokens[j].text in (")", "]", "}"):
            depth += 1
        elif tokens[j].text in ("(", "[", "{"):
            if depth == 0:
                depth_open = j
                break
            depth -= 1
    if depth_open < 0:
        return 0, len(tokens)
    return depth_open, match[depth_open] + 1


def resolve(metric: str) -> tuple[MetricSpec, tuple[str, ...]] | None:
    """The catalog entry a series name belongs to, and the labels that series carries."""
    spec = BY_NAME.get(metric)
    if spec is not None and spec.kind != "histogram":  # a histogram's bare name is no series
        return spec, spec.labels
    for suffix in HISTOGRAM_SUFFIXES:
        if metric.endswith(suffix):
            base = BY_NAME.get(metric[: -len(suffix)])
            if base is not None and base.kind == "histogram":
                extra = ("le",) if suffix == "_bucket" else ()
                return base, (*base.labels, *extra)
    return None


@dataclass
class Check:
    """What :func:`check_expr` found: the metrics used and every problem, as a sentence."""

    metrics: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def check_expr(expr: str) -> Check:
    """Check one expression against the catalog (see the module docstring for the rules)."""
    result = Check()
    try:
        refs = references(expr)
    except PromQLSyntaxError as exc:
        result.problems.append(str(exc))
        return result
    labels_of: dict[str, tuple[str, ...]] = {}
    for sel in refs.selectors:
        if sel.metric is None:
            result.problems.append(f"selector without a metric name in {expr!r}")
            continue
        found = resolve(sel.metric)
        if found is None:
            result.problems.append(f"metric {sel.metric!r} is not in the catalog ({expr!r})")
            continue
        result.metrics.append(sel.metric)
        labels_of[sel.metric] = found[1]
        for label, _, _ in sel.matchers:
            if label not in found[1]:
                result.problems.append(
                    f"label {label!r} is not a label of {sel.metric} "
                    f"(it has {', '.join(found[1]) or 'none'}) in {expr!r}"
                )
    for g in refs.groupings:
        known = [m for m in g.metrics if m in labels_of]
        if not g.metrics:
            result.problems.append(f"{g.keyword} ({', '.join(g.labels)}) selects no metric")
            continue
        for label in g.labels:
            if g.keyword in ("group_left", "group_right"):
                if known and not any(label in labels_of[m] for m in known):
                    result.problems.append(
                        f"{g.keyword} label {label!r} is on none of {', '.join(known)}"
                    )
                continue
            missing = [m for m in known if label not in labels_of[m]]
            if missing:
                result.problems.append(
                    f"{g.keyword} label {label!r} is not a label of {', '.join(missing)} "
                    f"in {expr!r}"
                )
    result.metrics = list(dict.fromkeys(result.metrics))
    return result


_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)\s*$")


def parse_label_values(query: str) -> tuple[str, str] | None:
    """``label_values(selector, label)`` -> ``(selector, label)``; None for any other query."""
    m = _LABEL_VALUES.match(query)
    if m is None or m.group("selector") is None:
        return None
    return m.group("selector"), m.group("label")


def check_label_values(query: str) -> Check:
    """Check a Grafana ``label_values(selector, label)`` variable query."""
    parsed = parse_label_values(query)
    if parsed is None:
        return Check(problems=[f"not a label_values(selector, label) query: {query!r}"])
    selector, label = parsed
    result = check_expr(selector)
    for metric in result.metrics:
        found = resolve(metric)
        if found is not None and label not in found[1]:
            result.problems.append(f"label_values label {label!r} is not a label of {metric}")
    return result


_VARIABLE = re.compile(r"\$\{(?P<braced>[A-Za-z0-9_]+)(?::[A-Za-z]+)?\}|\$(?P<plain>[A-Za-z0-9_]+)")


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace Grafana variables (``$model``, ``${model}``, ``$__rate_interval``) by values,
    as Grafana does before it sends a query. An unknown variable is an error, so that a query
    the live check runs is never silently different from the dashboard's."""

    def repl(m: re.Match[str]) -> str:
        name = m.group("braced") or m.group("plain")
        if name not in values:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(repl, expr)


def variables(exprs: Iterable[str]) -> set[str]:
    """Names of the Grafana variables used in ``exprs``."""
    return {m.group("braced") or m.group("plain") for e in exprs for m in _VARIABLE.finditer(e)}
