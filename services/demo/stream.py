"""The demo's study stream: three sites, one of which switches scanner vendor midway.

Studies are generated lazily in chunks (a 256-px float image is 256 KB, so 2,400 of them at once
would cost 600 MB) and sent to the gateway as DICOM uploads from a few threads, so Triton's
dynamic batcher sees concurrent requests as it would in a hospital.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from pipelines.dicom import study_to_bytes
from pipelines.synth import DEFAULT_SITES, DEFAULT_VENDORS, RadiographGenerator, ShiftSpec, Study


@dataclass(frozen=True)
class StreamPlan:
    studies: int
    sites: tuple[str, ...]
    shifted_site: str
    new_vendor: str
    per_site: dict[str, int]
    #: Site-local index from which the shifted site's studies come from the new vendor.
    shift_from_index: int
    #: Global count of predictions sent before the first shifted study.
    shift_after_predictions: int


def plan_stream(studies: int) -> StreamPlan:
    sites = tuple(s.name for s in DEFAULT_SITES)
    used = {v for s in DEFAULT_SITES for v, _ in s.vendor_mix}
    unused = [name for name in DEFAULT_VENDORS if name not in used]
    if not unused:
        raise RuntimeError(
            "Every default vendor is in use; the demo needs a spare vendor to switch to."
        )
    per_site = {
        s: studies // len(sites) + (1 if i < studies % len(sites) else 0)
        for i, s in enumerate(sites)
    }
    shifted = sites[-1]
    shift_from = per_site[shifted] // 2
    # Round-robin order: global position of the shifted site's study number `shift_from`.
    shift_after = shift_from * len(sites) + sites.index(shifted)
    return StreamPlan(studies, sites, shifted, unused[0], per_site, shift_from, shift_after)


def ordered_studies(plan: StreamPlan, seed: int, chunk: int = 32) -> Iterator[Study]:
    """Studies in round-robin site order; chunks are generated per site on demand."""
    gen = RadiographGenerator(seed=seed)
    shift = ShiftSpec(vendor_override=plan.new_vendor)
    buffers: dict[str, list[Study]] = {s: [] for s in plan.sites}
    produced = dict.fromkeys(plan.sites, 0)

    def refill(site: str) -> None:
        start = produced[site]
        n = min(chunk, plan.per_site[site] - start)
        if site == plan.shifted_site and start < plan.shift_from_index:
            n = min(n, plan.shift_from_index - start)
        shifted = site == plan.shifted_site and start >= plan.shift_from_index
        buffers[site].extend(
            gen.generate(n, site=site, shift=shift if shifted else None, start_index=start)
        )
        produced[site] += n

    sent = dict.fromkeys(plan.sites, 0)
    while any(sent[s] < plan.per_site[s] for s in plan.sites):
        for site in plan.sites:
            if sent[site] >= plan.per_site[site]:
                continue
            if not buffers[site]:
                refill(site)
            yield buffers[site].pop(0)
            sent[site] += 1


def send_study(client: httpx.Client, study: Study, *, event_id: str) -> dict[str, object]:
    files = {"file": (f"{event_id}.dcm", study_to_bytes(study), "application/dicom")}
    data = {
        "site": study.site,
        "event_id": event_id,
        "study_id": study.study_id,
        "race_ethnicity": study.race_ethnicity,
    }
    response = client.post("/v1/predictions", files=files, data=data)
    if response.status_code != 200:
        raise RuntimeError(f"prediction failed with {response.status_code}: {response.text[:300]}")
    body: dict[str, object] = response.json()
    return body


def stream(
    plan: StreamPlan,
    *,
    base_url: str,
    api_key: str,
    seed: int,
    concurrency: int = 4,
    on_progress: Callable[[int], None] | None = None,
    truth: list[tuple[str, dict[str, int]]] | None = None,
    event_prefix: str = "demo",
) -> int:
    """Send every planned study; returns how many predictions the gateway accepted. With
    ``truth``, the (study id, labels) of every sent study are appended to it, for the
    radiologists' reports that arrive later."""
    done = 0
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=concurrency)
    with (
        httpx.Client(base_url=base_url, headers=headers, timeout=60, limits=limits) as client,
        ThreadPoolExecutor(max_workers=concurrency) as pool,
    ):
        batch: list[tuple[Study, str]] = []
        counters = dict.fromkeys(plan.sites, 0)

        def flush() -> None:
            nonlocal done
            futures = [pool.submit(send_study, client, s, event_id=e) for s, e in batch]
            for f in futures:
                f.result()
                done += 1
            batch.clear()
            if on_progress:
                on_progress(done)

        for study in ordered_studies(plan, seed):
            batch.append((study, f"{event_prefix}-{seed}-{study.site}-{counters[study.site]:05d}"))
            if truth is not None:
                truth.append((study.study_id, dict(study.labels)))
            counters[study.site] += 1
            if len(batch) >= 4 * concurrency:
                flush()
        if batch:
            flush()
    return done
