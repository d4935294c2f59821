"""Evidently 0.7 side of the drift benchmarks. Runs ONLY in the benchmark venv (.venv-bench);
radwatch never imports Evidently. Reads the data files the orchestrator wrote and prints one
JSON object on stdout.

    .venv-bench/bin/python benchmarks/drift/peer_evidently.py tabular REF.npz CUR.npz
    .venv-bench/bin/python benchmarks/drift/peer_evidently.py embeddings REF.npy CUR.npy
    .venv-bench/bin/python benchmarks/drift/peer_evidently.py power TRIALS.npz
"""

from __future__ import annotations

import json
import resource
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _drift_preset(
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    embeddings: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=numeric, categorical_columns=categorical, embeddings=embeddings
    )
    ref_ds = Dataset.from_pandas(ref, data_definition=definition)
    cur_ds = Dataset.from_pandas(cur, data_definition=definition)
    preset = DataDriftPreset(embeddings=list(embeddings)) if embeddings else DataDriftPreset()
    snapshot = Report([preset]).run(cur_ds, ref_ds)
    out: dict[str, Any] = {"columns": {}, "dataset_drift": None, "embeddings": {}}
    for metric in snapshot.dict()["metrics"]:
        name = str(metric.get("metric_name", ""))
        config = metric.get("config", {})
        value = metric.get("value")
        if name.startswith("DriftedColumnsCount"):
            share = float(value["share"])
            out["dataset_drift"] = share >= float(config.get("drift_share", 0.5))
            out["drifted_share"] = share
        elif name.startswith("ValueDrift"):
            column = config.get("column")
            threshold = config.get("threshold")
            method = str(config.get("method", ""))
            out["columns"][column] = {"score": value, "threshold": threshold, "method": method}
        elif name.startswith("EmbeddingsDrift"):
            out["embeddings"][config.get("embeddings_name")] = value
    return out


def _frame(path: str) -> pd.DataFrame:
    with np.load(path, allow_pickle=True) as data:
        return pd.DataFrame({name: data[name] for name in data.files})


def tabular(ref_path: str, cur_path: str) -> dict[str, Any]:
    ref, cur = _frame(ref_path), _frame(cur_path)
    numeric = [c for c in ref.columns if ref[c].dtype.kind in "iuf"]
    categorical = [c for c in ref.columns if c not in numeric]
    before = _rss_mb()
    start = time.perf_counter()
    result = _drift_preset(ref, cur, numeric, categorical)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_rss_mb": _rss_mb(),
        "peak_rss_before_work_mb": before,
        "dataset_drift": result["dataset_drift"],
        "n_columns": len(result["columns"]),
        "methods": sorted({v["method"] for v in result["columns"].values()}),
    }


def _embedding_methods() -> dict[str, Any]:
    from evidently.legacy.metrics.data_drift.embedding_drift_methods import (
        distance,
        mmd,
        model,
        ratio,
    )

    return {"model": model(), "distance": distance(), "ratio": ratio(), "mmd": mmd()}


def embeddings(ref_path: str, cur_path: str) -> dict[str, Any]:
    ref, cur = pd.DataFrame(np.load(ref_path)), pd.DataFrame(np.load(cur_path))
    ref.columns = cur.columns = [f"emb_{i}" for i in range(ref.shape[1])]
    out: dict[str, Any] = {}
    for name, method in _embedding_methods().items():
        before = _rss_mb()
        start = time.perf_counter()
        score, drifted, _ = method(cur.copy(), ref.copy())
        out[name] = {
            "seconds": time.perf_counter() - start,
            "score": float(score),
            "drift": bool(drifted),
            "peak_rss_mb": _rss_mb(),
            "peak_rss_before_work_mb": before,
        }
    return out


def power(trials_path: str) -> dict[str, Any]:
    """Detection decisions for stacked trials. The npz holds ``cells`` (key prefixes), the
    metadata column names, and per prefix P arrays ``P_{ref|cur}_{emb|scores|meta_num|meta_cat}``.
    Embeddings are tested with every embedding method at its defaults; metadata and output
    scores with DataDriftPreset at its defaults (dataset drift = drifted share >= 0.5)."""
    data = np.load(trials_path, allow_pickle=False)
    num_names = [str(x) for x in data["meta_num_names"]]
    cat_names = [str(x) for x in data["meta_cat_names"]]
    methods = _embedding_methods()
    out: dict[str, dict[str, bool]] = {}
    for prefix in (str(c) for c in data["cells"]):
        decisions: dict[str, bool] = {}
        ref_e = pd.DataFrame(data[f"{prefix}_ref_emb"])
        cur_e = pd.DataFrame(data[f"{prefix}_cur_emb"])
        ref_e.columns = cur_e.columns = [f"emb_{i}" for i in range(ref_e.shape[1])]
        for name, method in methods.items():
            decisions[f"evidently_emb_{name}"] = bool(method(cur_e.copy(), ref_e.copy())[1])
        frames = []
        for side in ("ref", "cur"):
            frame = pd.DataFrame(data[f"{prefix}_{side}_meta_num"], columns=num_names)
            cats = data[f"{prefix}_{side}_meta_cat"]
            for j, name in enumerate(cat_names):
                frame[name] = cats[:, j].astype(str)
            frames.append(frame)
        res = _drift_preset(frames[0], frames[1], num_names, cat_names)
        decisions["evidently_preset_metadata"] = bool(res["dataset_drift"])
        score_names = [f"score_{j}" for j in range(data[f"{prefix}_ref_scores"].shape[1])]
        ref_s = pd.DataFrame(data[f"{prefix}_ref_scores"], columns=score_names)
        cur_s = pd.DataFrame(data[f"{prefix}_cur_scores"], columns=score_names)
        res = _drift_preset(ref_s, cur_s, score_names, [])
        decisions["evidently_preset_scores"] = bool(res["dataset_drift"])
        out[prefix] = decisions
    return {"decisions": out}


def main() -> None:
    import evidently

    command, *args = sys.argv[1:]
    commands: dict[str, Callable[..., dict[str, Any]]] = {
        "tabular": tabular,
        "embeddings": embeddings,
        "power": power,
    }
    result = commands[command](*args)
    result["evidently_version"] = evidently.__version__
    print(json.dumps(result))


if __name__ == "__main__":
    main()
