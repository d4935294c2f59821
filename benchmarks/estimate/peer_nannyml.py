"""NannyML CBPE on the chunks written by ``benchmarks.estimate.run`` (benchmark venv only).

.venv-bench/bin/python benchmarks/estimate/peer_nannyml.py DATA.csv OUT.json

DATA holds the reference rows (``period == "reference"``) and the analysis rows with a
``chunk`` column. NannyML gets the same chunks through fixed-size chunking: ``chunk_size`` is
the chunk length and the rows are ordered by chunk. Labels of the analysis rows are dropped
before NannyML sees them.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import nannyml as nml
import pandas as pd


def main(data_path: str, out_path: str) -> None:
    warnings.filterwarnings("ignore")
    df = pd.read_csv(data_path)
    ref = df[df["period"] == "reference"].drop(columns=["period", "chunk"])
    ana = df[df["period"] == "analysis"].sort_values("chunk", kind="stable")
    chunk_size = int(ana.groupby("chunk").size().iloc[0])
    estimator = nml.CBPE(
        y_pred_proba="p",
        y_pred="pred",
        y_true="y",
        problem_type="classification_binary",
        metrics=["roc_auc", "recall", "specificity"],
        chunk_size=chunk_size,
    )
    start = time.perf_counter()
    estimator.fit(ref)
    result = estimator.estimate(ana.drop(columns=["period", "chunk", "y"]))
    seconds = time.perf_counter() - start
    table = result.filter(period="analysis").to_df()
    out = {"version": nml.__version__, "seconds": seconds, "chunks": []}
    for _, row in table.iterrows():
        out["chunks"].append(
            {
                name: {
                    "value": float(row[(metric, "value")]),
                    "lower": float(row[(metric, "lower_confidence_boundary")]),
                    "upper": float(row[(metric, "upper_confidence_boundary")]),
                }
                for name, metric in (
                    ("roc_auc", "roc_auc"),
                    ("sensitivity", "recall"),
                    ("specificity", "specificity"),
                )
            }
        )
    with open(out_path, "w") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
