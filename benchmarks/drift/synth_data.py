"""Embeddings, output scores and metadata of synthetic radiographs under controlled shifts, for
the power and online-delay benchmarks.

An encoder is trained once on the synthetic generator (``pipelines.train``) and cached with the
generated pools under ``test-artifacts/drift-bench/`` (git-ignored). Every shifted pool shows
the SAME patients as the no-shift pool (the generator's draws do not depend on the shift), so
a detection is caused by the shift alone.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "test-artifacts" / "drift-bench"
SITE = "north"
#: The reference and no-shift pools are large so that no-shift trials at n = 1000 draw mostly
#: different studies (with 1,200 they were nearly identical, which made the measured false-alarm
#: rate swing with a handful of correlated trials).
REFERENCE_POOL = 6000
NO_SHIFT_POOL = 6000
CURRENT_POOL = 1200
CATEGORICAL = ("manufacturer", "manufacturer_model", "view_position", "sex", "race_ethnicity")
NUMERIC = ("kvp", "age", "img_mean", "img_std", "img_p01", "img_p99", "img_height", "img_width")


def shifts() -> dict[str, Any]:
    """The Failing-Loudly-style shifts (issue 3, acceptance 2), at moderate strength."""
    from pipelines.synth import ShiftSpec

    return {
        "none": ShiftSpec(),
        "vendor_change": ShiftSpec(vendor_override="cobalt"),
        "added_noise": ShiftSpec(noise_sigma_add=0.03),
        "gamma": ShiftSpec(gamma=1.25),
        "age_shift": ShiftSpec(age_shift_years=8.0),
        "prevalence": ShiftSpec(prevalence_scale={"effusion": 2.0, "cardiomegaly": 2.0}),
        "subgroup_degradation": ShiftSpec(degrade_subgroup=("sex", "F"), degrade_strength=0.7),
    }


def encoder() -> Any:
    """Train (about 2-4 minutes on 2 cores) or load the cached benchmark encoder."""
    from pipelines.model import load_model, save_model
    from pipelines.train import TrainConfig, train

    path = CACHE / "encoder"
    if (path / "weights.pt").exists():
        return load_model(path)
    start = time.perf_counter()
    result = train(TrainConfig(n_train=2000, n_val=400, epochs=5, pretrain_epochs=1, seed=7))
    path.mkdir(parents=True, exist_ok=True)
    save_model(result.model, path)
    (path / "train_metrics.txt").write_text(
        f"{result.metrics}\nseconds={time.perf_counter() - start:.0f}\n"
    )
    return result.model


def _pool(model: Any, n: int, start_index: int, shift: Any) -> dict[str, npt.NDArray[Any]]:
    from pipelines.profile import build_profile
    from pipelines.synth import RadiographGenerator

    gen = RadiographGenerator(11)
    parts = []
    for start in range(0, n, 200):
        studies = gen.generate(
            min(200, n - start), site=SITE, shift=shift, start_index=start_index + start
        )
        parts.append(build_profile(model, studies))
    meta_num = np.concatenate([p.metadata[list(NUMERIC)].to_numpy(np.float64) for p in parts])
    meta_cat = np.concatenate([p.metadata[list(CATEGORICAL)].to_numpy(str) for p in parts])
    return {
        "emb": np.concatenate([p.embeddings for p in parts]),
        "scores": np.concatenate([p.scores for p in parts]),
        "labels": np.concatenate([p.labels for p in parts]),
        "meta_num": meta_num,
        "meta_cat": meta_cat,
    }


def pools() -> dict[str, dict[str, npt.NDArray[Any]]]:
    """``{"reference": pool, <shift name>: pool, ...}``, generated once and cached as npz."""
    CACHE.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[str, npt.NDArray[Any]]] = {}
    model = None
    wanted = {
        "reference": (REFERENCE_POOL, 0, "none"),
        **{
            name: (NO_SHIFT_POOL if name == "none" else CURRENT_POOL, 50_000, name)
            for name in shifts()
        },
    }
    specs = shifts()
    for name, (n, start_index, shift_name) in wanted.items():
        path = CACHE / f"pool_{name}_{n}.npz"
        if not path.exists():
            model = model or encoder()
            started = time.perf_counter()
            np.savez(path, **_pool(model, n, start_index, specs[shift_name]))
            print(
                f"  pool {name}: {n} studies in {time.perf_counter() - started:.0f} s", flush=True
            )
        with np.load(path) as data:
            out[name] = {k: data[k] for k in data.files}
    return out
