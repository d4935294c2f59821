"""Faults during a steady load (issue 4, acceptance 2): SIGKILL the worker mid-window, restart
Redis, restart the API (SIGTERM mid-request, then SIGKILL right after a batch commits). After
recovery every accepted event is stored exactly once, every window is computed exactly once, and
no alert is lost or duplicated (see :mod:`tests.reliability.checks`). Each test prints its counts.

The load is 3,000 events in 20 batches of 150, one batch every 0.5 s at most, from 3 sites; one
site switches scanner vendor from batch 10 on. Windows: 100 events per site, and 300 across sites.
"""

from __future__ import annotations

import functools
import signal
import time
from collections import Counter

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.reliability.checks import (
    Tally,
    check_alerts,
    check_events,
    check_windows,
    count_windows,
    wait_caught_up,
)
from tests.reliability.faults import backend_alive, kill_api_after_commit, wait_window_lock
from tests.reliability.harness import (
    MODEL,
    MONITORS,
    RegisteredModel,
    Stack,
    WebhookSink,
    wait_for,
)
from tests.reliability.load import SHIFTED_SITE, Batch, Outcome, Producer, make_batches

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(300)]

N_BATCHES = 20
BATCH_SIZE = 150
SHIFT_FROM_BATCH = 10
PACE_S = 0.5


@functools.cache
def batches(version: int) -> list[Batch]:
    return make_batches(
        model=MODEL,
        version=version,
        n_batches=N_BATCHES,
        batch_size=BATCH_SIZE,
        shift_from_batch=SHIFT_FROM_BATCH,
    )


def start_load(stack: Stack, model: RegisteredModel) -> Producer:
    producer = Producer(stack.base_url, stack.api_key, batches(model.version), pace_s=PACE_S)
    producer.start()
    return producer


def failures(outcome: Outcome) -> str:
    return " + ".join(f"{n}x {what}" for what, n in Counter(outcome.failures).items())


def recover_and_check(
    stack: Stack, sessions: sessionmaker[Session], producer: Producer, sink: WebhookSink
) -> Tally:
    wait_caught_up(stack, sessions, producer)
    tally = Tally()
    check_events(sessions, producer, tally)
    check_windows(sessions, tally)
    check_alerts(sessions, sink, tally, shifted_site=SHIFTED_SITE)
    return tally


def test_worker_sigkill_mid_window(
    stack: Stack,
    sessions: sessionmaker[Session],
    webhook_sink: WebhookSink,
    registered_model: RegisteredModel,
) -> None:
    t0 = time.monotonic()
    producer = start_load(stack, registered_model)
    wait_for(
        lambda: count_windows(sessions) >= 1,
        timeout_s=60,
        what="the first window",
        why=stack.log_tails,
    )
    sizes = {i: int(MONITORS[name]["window"]["size"]) for name, i in stack.monitor_ids.items()}
    held = wait_window_lock(stack.pg_dsn, sizes, min_held_s=0.05, timeout_s=60)
    killed = stack.worker
    assert killed is not None
    killed.kill()
    windows_at_kill, batches_at_kill = count_windows(sessions), producer.done
    assert not killed.alive()
    # The killed transaction rolls back when PostgreSQL sees its connection gone, which frees
    # the window for the next worker.
    wait_for(
        lambda: not backend_alive(stack.pg_dsn, held.pid),
        timeout_s=30,
        what=f"backend {held.pid} of the killed worker to end",
    )
    stack.start_worker()
    stack.wait_worker()
    tally = recover_and_check(stack, sessions, producer, webhook_sink)
    print(
        f"\n[worker SIGKILL] killed while computing monitor {held.monitor_id} site {held.site} "
        f"(window lock held {held.held_s * 1000:.0f} ms); windows stored at kill "
        f"{windows_at_kill}, batches done {batches_at_kill}/{N_BATCHES}; "
        f"{time.monotonic() - t0:.1f} s\n{tally.line()}"
    )
    assert batches_at_kill < N_BATCHES, "the kill landed after the load had ended"
    assert windows_at_kill < tally.expected_windows


def test_redis_restart(
    stack: Stack,
    sessions: sessionmaker[Session],
    webhook_sink: WebhookSink,
    registered_model: RegisteredModel,
) -> None:
    t0 = time.monotonic()
    producer = start_load(stack, registered_model)
    wait_for(
        lambda: count_windows(sessions) >= 1 and producer.done >= 4,
        timeout_s=60,
        what="the first window and 4 batches",
        why=stack.log_tails,
    )
    worker = stack.worker
    assert worker is not None
    stack.redis.stop(signal.SIGKILL)
    down_at, batches_before = time.monotonic(), producer.done
    # Ingestion does not go through Redis: the API keeps accepting batches while it is down.
    wait_for(
        lambda: producer.done >= batches_before + 4,
        timeout_s=30,
        what="4 batches accepted while Redis is down",
    )
    time.sleep(max(0.0, 3.0 - (time.monotonic() - down_at)))  # keep it down at least 3 s
    batches_during = producer.done - batches_before
    stack.redis.start()
    down_s = time.monotonic() - down_at
    windows_at_restart = count_windows(sessions)
    tally = recover_and_check(stack, sessions, producer, webhook_sink)
    log = worker.log_path.read_text(errors="replace")
    print(
        f"\n[Redis SIGKILL + restart] down {down_s:.1f} s, {batches_during} batches accepted "
        f"meanwhile; windows at restart {windows_at_restart}; same worker pid {worker.pid}; "
        f"{time.monotonic() - t0:.1f} s\n{tally.line()}"
    )
    # Not one failed request: no 5xx, no connection error, nothing retried.
    assert tally.failed_attempts == 0
    # The same worker noticed the outage and reconnected; beat went on ticking afterwards.
    assert stack.worker is worker
    assert worker.alive()
    assert "Connection to broker lost" in log or "Cannot connect to redis" in log, log[-3000:]
    assert windows_at_restart < tally.windows


def test_api_restart(
    stack: Stack,
    sessions: sessionmaker[Session],
    webhook_sink: WebhookSink,
    registered_model: RegisteredModel,
) -> None:
    t0 = time.monotonic()
    producer = start_load(stack, registered_model)

    # 1. SIGTERM while a batch is on the wire: uvicorn finishes the requests it is handling,
    #    then refuses connections until the new process is up; the producer retries.
    wait_for(lambda: producer.done >= 4, timeout_s=60, what="4 batches", why=stack.log_tails)
    wait_for(producer.sending.is_set, timeout_s=10, what="a batch in flight", every_s=0.002)
    assert stack.api is not None
    term_at_batch = producer.done
    stack.api.stop(sig=signal.SIGTERM)
    stack.start_api()
    stack.wait_api()

    # 2. SIGKILL right after a batch's transaction commits, before (most likely) its answer is
    #    read: the retry must report exactly that batch's events as duplicates. If the commit
    #    does not come within the limit, the kill lands mid-request and nothing was stored.
    wait_for(lambda: producer.done >= 11, timeout_s=90, what="11 batches", why=stack.log_tails)
    kill_at_batch, committed = kill_api_after_commit(stack, producer)
    stack.start_api()
    stack.wait_api()

    tally = recover_and_check(stack, sessions, producer, webhook_sink)
    retried = [o for o in producer.outcomes if o.failures]
    killed = producer.outcomes[kill_at_batch]
    print(
        f"\n[API SIGTERM at batch {term_at_batch}, SIGKILL at batch {kill_at_batch} "
        f"(committed before the kill: {committed})] retried "
        + ", ".join(f"#{o.index} {failures(o)} -> duplicates {o.duplicates}" for o in retried)
        + f"; {time.monotonic() - t0:.1f} s\n{tally.line()}"
    )
    # Both outages hit the load: a batch from each one on was retried.
    assert {o.index for o in retried} & set(range(term_at_batch, kill_at_batch))
    assert {o.index for o in retried} & set(range(kill_at_batch, N_BATCHES))
    if committed and killed.failures:
        assert killed.duplicates == killed.size  # its answer was lost; the retry stored nothing
