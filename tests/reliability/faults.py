"""Fault injection timed by what the database shows: a worker killed while it computes a
window, an API killed right after a batch's transaction commits."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
import pytest

from tests.reliability.harness import Stack, wait_for
from tests.reliability.load import SITES, Producer


@dataclass(frozen=True)
class HeldLock:
    pid: int
    monitor_id: int
    site: str | None
    held_s: float


#: Advisory locks on (monitor, scope key) held by a transaction computing a window (see
#: ``scheduler._try_lock``: the two-key form, so objsubid = 2), with the key's site.
_WINDOW_LOCKS = """
SELECT l.pid, l.classid::bigint, s.site
FROM pg_locks l
LEFT JOIN unnest(%s::text[]) AS s(site)
  ON (hashtext(s.site)::bigint & 4294967295) = l.objid::bigint
WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


#: Committed events of a scope after its last stored window.
_BEHIND = """
SELECT count(*) FROM prediction_events e
WHERE (%(site)s = '*' OR e.site = %(site)s)
  AND e.id > coalesce(
    (SELECT max(last_event_id) FROM monitor_results WHERE monitor_id = %(m)s AND site = %(site)s),
    0)
"""


def wait_window_lock(
    dsn: str, sizes: dict[int, int], *, min_held_s: float, timeout_s: float
) -> HeldLock:
    """Wait until one transaction has held the lock of a (monitor, site) for ``min_held_s``
    while a full window of it is due: that transaction is computing the window. (A tick that
    finds nothing due holds the lock only as long as reading the watermark takes.)"""
    sites = [*SITES, "*"]
    first_seen: dict[tuple[int, int, str | None], float] = {}
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            rows = conn.execute(_WINDOW_LOCKS, (sites,)).fetchall()
            now = time.monotonic()
            first_seen = {(r[0], r[1], r[2]): first_seen.get((r[0], r[1], r[2]), now) for r in rows}
            for (pid, monitor_id, site), since in first_seen.items():
                if site is None or now - since < min_held_s:
                    continue
                row = conn.execute(_BEHIND, {"site": site, "m": monitor_id}).fetchone()
                if row is not None and row[0] >= sizes[monitor_id]:
                    return HeldLock(pid, monitor_id, site, time.monotonic() - since)
            time.sleep(0.005)
    pytest.fail(f"no window computation held its lock for {min_held_s} s within {timeout_s} s")


def backend_alive(dsn: str, pid: int) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
        return bool(row and row[0])


def kill_api_after_commit(
    stack: Stack, producer: Producer, *, within_s: float = 1.0
) -> tuple[int, bool]:
    """SIGKILL the API while a batch is on the wire, as soon as that batch's events are
    committed (polled on an open connection, well under a millisecond per poll) or after
    ``within_s``. Returns the batch index and whether it had committed."""
    with psycopg.connect(stack.pg_dsn, autocommit=True) as conn:
        wait_for(producer.sending.is_set, timeout_s=10, what="a batch in flight", every_s=0.001)
        batch = producer.batches[producer.done]
        committed = False
        deadline = time.monotonic() + within_s
        while not committed and time.monotonic() < deadline:
            row = conn.execute(
                "SELECT 1 FROM prediction_events WHERE event_id = %s", (batch.event_ids[-1],)
            ).fetchone()
            committed = row is not None
        assert stack.api is not None
        stack.api.kill()
    return batch.index, committed
