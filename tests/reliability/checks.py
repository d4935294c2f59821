"""What must hold after recovery, checked against the database (the system of record):

* every accepted event is stored exactly once, and nothing else is;
* every complete window of every (monitor, scope key) is stored exactly once: indexes 0..k-1
  with k = floor(events of the scope / window size), covering the scope's events in id order in
  disjoint, consecutive, gapless chunks of exactly ``size`` events;
* each alert is where the monitor's own policy says it must be: one per (monitor, site) whose
  windows fire the policy, opened by the first window that fires it, still unresolved; none for
  any other (monitor, site); and each was announced to the webhook receiver.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from monitors.policy import WindowOutcome
from services.core.db import session_scope
from services.core.models import Alert, MonitorResult, PredictionEvent, WebhookDelivery
from services.monitoring.service import parse_spec
from tests.reliability.harness import MODEL, MONITORS, Stack, WebhookSink, wait_for
from tests.reliability.load import Producer

Key = tuple[str, str]


@dataclass
class Tally:
    accepted: int = 0
    stored: int = 0
    distinct: int = 0
    windows: int = 0
    expected_windows: int = 0
    alerts: int = 0
    expected_alerts: int = 0
    retried_batches: int = 0
    failed_attempts: int = 0
    retry_duplicates: int = 0
    webhook_posts: int = 0

    def line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in vars(self).items())


def expected_bounds(session: Session) -> dict[Key, list[tuple[int, int]]]:
    """(first, last) event id of every complete window, per (monitor, scope key)."""
    rows = session.execute(
        select(PredictionEvent.id, PredictionEvent.site)
        .where(PredictionEvent.model_name == MODEL)
        .order_by(PredictionEvent.id)
    ).all()
    ids: dict[str, list[int]] = defaultdict(list)
    for event_id, site in rows:
        ids[site].append(event_id)
        ids["*"].append(event_id)
    out: dict[Key, list[tuple[int, int]]] = {}
    for name, spec in MONITORS.items():
        size = int(spec["window"]["size"])
        keys = ["*"] if spec["scope"] == "global" else [k for k in ids if k != "*"]
        for key in keys:
            chunk = ids[key]
            out[(name, key)] = [
                (chunk[i * size], chunk[(i + 1) * size - 1]) for i in range(len(chunk) // size)
            ]
    return out


def stored_windows(session: Session) -> list[MonitorResult]:
    rows = session.scalars(
        select(MonitorResult)
        .where(MonitorResult.model_name == MODEL)
        .order_by(MonitorResult.monitor, MonitorResult.site, MonitorResult.window_index)
    ).all()
    session.expunge_all()
    return list(rows)


def count_windows(sessions: sessionmaker[Session]) -> int:
    with session_scope(sessions) as s:
        return int(s.scalar(select(func.count(MonitorResult.id))) or 0)


def wait_caught_up(
    stack: Stack, sessions: sessionmaker[Session], producer: Producer, *, timeout_s: float = 120
) -> None:
    """After the load: wait until the worker has stored as many windows as are complete, then
    for two more finished ticks, so a window computed twice or too early would show up too."""
    producer.join(timeout=timeout_s)
    assert not producer.is_alive(), "the load did not finish"
    with session_scope(sessions) as s:
        expected = sum(len(b) for b in expected_bounds(s).values())

    def caught_up() -> bool:
        assert stack.worker is not None
        assert stack.worker.alive(), stack.log_tails()
        return count_windows(sessions) >= expected

    wait_for(
        caught_up,
        timeout_s=timeout_s,
        what=lambda: f"{expected} windows (have {count_windows(sessions)})",
        every_s=0.5,
        why=stack.log_tails,
    )
    ticks = stack.worker_ticks()
    wait_for(
        lambda: stack.worker_ticks() >= ticks + 2,
        timeout_s=30,
        what="two more monitor ticks",
        why=stack.log_tails,
    )


def check_events(sessions: sessionmaker[Session], producer: Producer, tally: Tally) -> None:
    assert not producer.errors, producer.errors
    assert len(producer.outcomes) == len(producer.batches)
    with session_scope(sessions) as s:
        stored_ids = list(s.scalars(select(PredictionEvent.event_id)))
    tally.accepted = len(producer.accepted)
    tally.stored = len(stored_ids)
    tally.distinct = len(set(stored_ids))
    assert tally.stored == tally.distinct == tally.accepted
    assert set(stored_ids) == producer.accepted
    assert tally.accepted == sum(len(b.event_ids) for b in producer.batches)

    # What the API answered adds up: a batch commits in one transaction, so a retried batch
    # reports either none or all of its events as duplicates (all when an earlier attempt
    # committed but its answer was lost), and a batch sent once reports none.
    for o in producer.outcomes:
        assert o.status == 200, o
        assert o.rejected == 0, o
        assert o.stored + o.duplicates == o.size, o
        if o.failures:
            assert o.duplicates in (0, o.size), o
        else:
            assert o.duplicates == 0, o
    tally.retried_batches = sum(1 for o in producer.outcomes if o.failures)
    tally.failed_attempts = sum(len(o.failures) for o in producer.outcomes)
    tally.retry_duplicates = sum(o.duplicates for o in producer.outcomes)
    assert sum(o.stored for o in producer.outcomes) + tally.retry_duplicates == tally.stored


def check_windows(sessions: sessionmaker[Session], tally: Tally) -> None:
    with session_scope(sessions) as s:
        bounds = expected_bounds(s)
        windows = stored_windows(s)
    tally.windows = len(windows)
    tally.expected_windows = sum(len(b) for b in bounds.values())
    got: dict[Key, list[MonitorResult]] = defaultdict(list)
    for w in windows:
        got[(w.monitor, w.site)].append(w)
    assert set(got) <= set(bounds), f"windows of unknown series: {set(got) - set(bounds)}"
    for key, expected in bounds.items():
        series = got.get(key, [])
        size = int(MONITORS[key[0]]["window"]["size"])
        assert [w.window_index for w in series] == list(range(len(expected))), key
        assert [(w.first_event_id, w.last_event_id) for w in series] == expected, key
        assert all(w.n_current == size for w in series), key
    assert tally.windows == tally.expected_windows


def expected_alerts(windows: list[MonitorResult]) -> dict[Key, int]:
    """(monitor, site) -> id of the window that must have opened its alert: the first one on
    which the monitor's own policy fires (nothing resolves alerts in these tests)."""
    series: dict[Key, list[MonitorResult]] = defaultdict(list)
    for w in windows:
        series[(w.monitor, w.site)].append(w)
    out: dict[Key, int] = {}
    for key, rows in series.items():
        policy = parse_spec(MONITORS[key[0]]).policy.policy()
        history: list[WindowOutcome] = []
        for w in sorted(rows, key=lambda r: r.window_index):
            history.append(WindowOutcome(p_value=0.0 if w.drift else 1.0))
            if w.drift and policy.evaluate(history[-policy.persistence_m :]).fire:
                out[key] = w.id
                break
    return out


def check_alerts(
    sessions: sessionmaker[Session], sink: WebhookSink, tally: Tally, *, shifted_site: str
) -> None:
    with session_scope(sessions) as s:
        windows = stored_windows(s)
        alerts = list(s.scalars(select(Alert).where(Alert.model_name == MODEL)))
        s.expunge_all()
    want = expected_alerts(windows)
    tally.alerts = len(alerts)
    tally.expected_alerts = len(want)
    got: dict[Key, list[int]] = defaultdict(list)
    for a in alerts:
        got[(a.monitor, a.site)].append(a.result_id)
        assert a.state == "open", (a.monitor, a.site, a.state)
    assert dict(got) == {k: [v] for k, v in want.items()}
    # The vendor switch is what fired them: the switched site's series and the global one.
    assert set(want) == {("site_drift", shifted_site), ("global_drift", "*")}

    ids = {a.id for a in alerts}
    wait_for(
        lambda: set(sink.opened()) >= ids,
        timeout_s=60,
        what=lambda: f"webhooks for alerts {sorted(ids)} (got {sorted(sink.opened())})",
    )
    opened = sink.opened()
    assert set(opened) == ids
    assert all(len(d) == 1 for d in opened.values()), opened
    with session_scope(sessions) as s:
        rows = s.scalar(select(func.count(WebhookDelivery.id)))
    assert rows == len(alerts)
    tally.webhook_posts = len(sink.received)
