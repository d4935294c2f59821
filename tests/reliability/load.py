"""A steady, reproducible load for the fault tests.

The events are synthetic predictions "made elsewhere" (``POST /v1/events``): random embeddings
of the model's width and plausible acquisition metadata, drawn from the same distributions as
the reference profile, so an unshifted site has no drift. From ``shift_from_batch`` on, one site
switches scanner vendor (new ``manufacturer``, brighter images, moved embeddings), which the
drift monitor must alert on.

Every batch is generated and encoded up front from one seed. One producer thread sends them in
order, so the order of event ids, and with it every window and every drift decision, is the same
on every run whatever fault is injected: a retry re-sends the *same bytes*, which is what makes it
idempotent (the event ids are the idempotency keys).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx
import numpy as np
import orjson
import pandas as pd

from pipelines.contract import EMBEDDING_DIM, FINDINGS
from pipelines.profile import ReferenceProfile

SITES = ("north", "south", "east")
VENDOR = {"north": "Acme", "south": "Borealis", "east": "Cygnus"}
SHIFTED_SITE = "east"
SHIFT_VENDOR = "Zenith"
#: How far the shifted site's embeddings move (in units of their standard deviation).
EMBEDDING_SHIFT = 0.8


def study_row(rng: np.random.Generator, site: str, vendor: str, shift: float) -> dict[str, object]:
    """Acquisition metadata and image statistics of one study (the profile's columns)."""
    return {
        "site": site,
        "manufacturer": vendor,
        "manufacturer_model": f"{vendor}-1",
        "view_position": "PA" if rng.random() < 0.7 else "AP",
        "sex": "F" if rng.random() < 0.5 else "M",
        "race_ethnicity": "unknown",
        "kvp": round(float(rng.normal(110, 5)), 2),
        "age": float(rng.integers(20, 90)),
        "img_mean": round(float(rng.normal(0.45 + shift, 0.03)), 5),
        "img_std": round(float(rng.normal(0.2, 0.02)), 5),
        "img_p01": round(float(rng.normal(0.05, 0.01)), 5),
        "img_p99": round(float(rng.normal(0.9, 0.02)), 5),
        "img_height": 256.0,
        "img_width": 256.0,
    }


def reference_profile(n_per_site: int = 200, seed: int = 0) -> ReferenceProfile:
    """The no-shift reference: ``n_per_site`` studies of every site, enough (>= 50) for a
    site-specific comparison."""
    rng = np.random.default_rng(seed)
    rows = [study_row(rng, s, VENDOR[s], 0.0) for s in SITES for _ in range(n_per_site)]
    n = len(rows)
    return ReferenceProfile(
        embeddings=rng.standard_normal((n, EMBEDDING_DIM)).astype(np.float32),
        scores=rng.uniform(size=(n, len(FINDINGS))).astype(np.float32),
        labels=rng.integers(0, 2, size=(n, len(FINDINGS))).astype(np.int8),
        metadata=pd.DataFrame(rows),
    )


@dataclass(frozen=True)
class Batch:
    index: int
    event_ids: tuple[str, ...]
    sites: tuple[str, ...]
    body: bytes


def make_batches(
    *,
    model: str,
    version: int,
    n_batches: int,
    batch_size: int,
    shift_from_batch: int,
    seed: int = 7,
    prefix: str = "ev",
) -> list[Batch]:
    rng = np.random.default_rng(seed)
    batches = []
    for b in range(n_batches):
        events, ids, sites = [], [], []
        for i in range(batch_size):
            site = SITES[int(rng.integers(len(SITES)))]
            shifted = site == SHIFTED_SITE and b >= shift_from_batch
            vendor = SHIFT_VENDOR if shifted else VENDOR[site]
            row = study_row(rng, site, vendor, 0.15 if shifted else 0.0)
            embedding = rng.standard_normal(EMBEDDING_DIM) + (EMBEDDING_SHIFT if shifted else 0.0)
            event_id = f"{prefix}-{b:04d}-{i:04d}"
            events.append(
                {
                    "event_id": event_id,
                    "model": model,
                    "model_version": version,
                    "metadata": {
                        "study_id": f"study-{event_id}",
                        "patient_id": f"patient-{int(rng.integers(10_000))}",
                        **{k: v for k, v in row.items() if not k.startswith("img_")},
                    },
                    "scores": {f: round(float(rng.uniform()), 4) for f in FINDINGS},
                    "embedding": np.round(embedding, 4).tolist(),
                    "image_stats": {k[4:]: v for k, v in row.items() if k.startswith("img_")},
                }
            )
            ids.append(event_id)
            sites.append(site)
        body = orjson.dumps({"events": events})
        batches.append(Batch(b, tuple(ids), tuple(sites), body))
    return batches


@dataclass
class Outcome:
    """What happened to one batch: every failed attempt (an exception name or ``HTTP 5xx``)
    and the answer that finally came back."""

    index: int
    size: int
    failures: list[str] = field(default_factory=list)
    status: int | None = None
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0

    @property
    def attempts(self) -> int:
        return len(self.failures) + (1 if self.status is not None else 0)


class Producer(threading.Thread):
    """Sends the batches in order, starting one at most every ``pace_s`` seconds. A batch
    delayed by an outage does not make the next ones follow in a burst: the load stays steady,
    and a test can count on batches still coming after it has waited for some.

    A connection error, a dropped connection or a 5xx is retried with the same batch until
    ``retry_for_s`` has passed; the ids of a batch count as *accepted* once a 200 answers it.
    A 4xx is not retried (the test fails on it).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        batches: list[Batch],
        *,
        pace_s: float,
        retry_for_s: float = 90.0,
    ) -> None:
        super().__init__(name="load-producer", daemon=True)
        self.base_url = base_url
        self.api_key = api_key
        self.batches = batches
        self.pace_s = pace_s
        self.retry_for_s = retry_for_s
        self.outcomes: list[Outcome] = []
        self.accepted: set[str] = set()
        self.errors: list[str] = []
        #: Set while a request is on the wire (for faults timed to land mid-request).
        self.sending = threading.Event()
        self._lock = threading.Lock()

    @property
    def done(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0) as client:
            for batch in self.batches:
                started = time.monotonic()
                outcome = self._send(client, batch)
                with self._lock:
                    self.outcomes.append(outcome)
                    if outcome.status == 200:
                        self.accepted.update(batch.event_ids)
                time.sleep(max(0.0, started + self.pace_s - time.monotonic()))

    def _send(self, client: httpx.Client, batch: Batch) -> Outcome:
        outcome = Outcome(batch.index, len(batch.event_ids))
        deadline = time.monotonic() + self.retry_for_s
        while True:
            self.sending.set()
            try:
                response = client.post("/v1/events", content=batch.body)
            except httpx.TransportError as exc:
                outcome.failures.append(type(exc).__name__)
            else:
                if response.status_code < 500:
                    outcome.status = response.status_code
                    if response.status_code == 200:
                        answer = response.json()
                        outcome.stored = answer["stored"]
                        outcome.duplicates = len(answer["duplicates"])
                        outcome.rejected = len(answer["rejected"])
                    else:
                        text = response.text[:300]
                        self.errors.append(f"batch {batch.index}: {response.status_code} {text}")
                    return outcome
                outcome.failures.append(f"HTTP {response.status_code}")
            finally:
                self.sending.clear()
            if time.monotonic() > deadline:
                self.errors.append(f"batch {batch.index}: gave up after {outcome.failures}")
                return outcome
            time.sleep(0.2)
