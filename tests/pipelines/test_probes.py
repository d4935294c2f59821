"""Linear probes: a fit recovers a known linear boundary, is deterministic, round-trips its file
bit for bit, refuses findings it cannot fit, and gets a spec that serves through its encoder."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.metrics import roc_auc_score

from pipelines import retrain
from pipelines.probes import (
    NO_LABEL,
    PROBE_TENSOR,
    Probe,
    ProbeError,
    ProbeFitError,
    apply,
    fit_probes,
    load,
    probe_spec,
    save,
)
from pipelines.spec import EncoderRef, SpecError, parse_spec
from tests.fixtures.foreign_models import encoder_spec

ENCODER = EncoderRef(name="enc", version=2, sha256="ab" * 32)
FINDINGS = ("effusion", "nodule")


def _synthetic(
    n: int = 1200, d: int = 64, seed: int = 1
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8], npt.NDArray[np.float64]]:
    """Embeddings of an arbitrary scale and offset whose labels follow known linear boundaries
    (logistic noise), so a correct fit ranks held-out rows almost as well as the truth does."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * rng.uniform(0.01, 3.0, d) + rng.uniform(-5, 5, d)
    true_w = rng.standard_normal((len(FINDINGS), d)) / rng.uniform(0.01, 3.0, d)
    logits = (x - x.mean(axis=0)) @ true_w.T
    logits = 4.0 * logits / logits.std(axis=0)
    labels = (rng.random(logits.shape) < 1 / (1 + np.exp(-logits))).astype(np.int8)
    return x.astype(np.float32), labels, logits


def test_the_fit_recovers_a_known_linear_boundary() -> None:
    x, y, truth = _synthetic()
    train, test = slice(0, 800), slice(800, None)
    start = time.perf_counter()
    probe = fit_probes(x[train], y[train], FINDINGS, encoder=ENCODER)
    seconds = time.perf_counter() - start
    probs = apply(probe, x[test])
    assert probs.dtype == np.float32
    assert probs.shape == (400, 2)
    for j in range(len(FINDINGS)):
        auroc = roc_auc_score(y[test, j], probs[:, j])
        best = roc_auc_score(y[test, j], truth[test, j])
        assert auroc > 0.9, (FINDINGS[j], auroc, best)
        assert auroc > best - 0.03
        # The direction it learned is the true one: its logits track the true logits.
        p = probs[:, j].astype(np.float64)
        assert np.corrcoef(np.log(p / (1 - p)), truth[test, j])[0, 1] > 0.9
    assert seconds < 5.0


def test_missing_labels_are_left_out_of_their_finding_only() -> None:
    x, y, _ = _synthetic(n=600)
    masked = y.copy()
    masked[:300, 1] = NO_LABEL
    probe = fit_probes(x, masked, FINDINGS, encoder=ENCODER)
    only_labelled = fit_probes(x[300:], y[300:], FINDINGS, encoder=ENCODER)
    np.testing.assert_allclose(probe.weights[1], only_labelled.weights[1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(probe.weights[0], only_labelled.weights[0])
    assert NO_LABEL == retrain.NO_LABEL


def test_the_fit_is_deterministic() -> None:
    x, y, _ = _synthetic(n=500)
    a = fit_probes(x, y, FINDINGS, encoder=ENCODER, seed=0)
    b = fit_probes(x, y, FINDINGS, encoder=ENCODER, seed=0)
    assert a.weights.tobytes() == b.weights.tobytes()
    assert a.bias.tobytes() == b.bias.tobytes()


def test_separable_labels_give_finite_weights() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.int8)
    probe = fit_probes(x, y, ("nodule",), encoder=ENCODER)
    assert np.all(np.isfinite(probe.weights))
    p = apply(probe, x)[:, 0]
    assert roc_auc_score(y[:, 0], p) == 1.0


def test_save_and_load_round_trip_bit_exactly(tmp_path: Path) -> None:
    x, y, _ = _synthetic(n=400)
    probe = fit_probes(x, y, FINDINGS, encoder=ENCODER)
    path = save(probe, tmp_path / "probe.npz")
    back = load(path)
    assert back.weights.tobytes() == probe.weights.tobytes()
    assert back.bias.tobytes() == probe.bias.tobytes()
    assert back.weights.dtype == np.float32
    assert back.findings == probe.findings
    assert back.encoder == probe.encoder
    # Nothing in the file needs pickle to read.
    with np.load(path, allow_pickle=False) as data:
        assert {data[k].dtype.kind for k in data.files} <= {"f", "i", "U"}


def test_unreadable_probe_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "probe.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ProbeError, match="not a probe file"):
        load(bad)
    np.savez(tmp_path / "partial.npz", weights=np.zeros((1, 2), np.float32))
    with pytest.raises(ProbeError, match="lacks"):
        load(tmp_path / "partial.npz")
    # A pickled object array is refused instead of executed.
    np.savez(tmp_path / "pickled.npz", weights=np.array([object()], dtype=object))
    with pytest.raises(ProbeError):
        load(tmp_path / "pickled.npz")


def test_a_finding_with_too_few_positives_or_negatives_is_refused_by_name() -> None:
    x, y, _ = _synthetic(n=300)
    few = y.copy()
    few[:, 1] = 0
    few[:9, 1] = 1
    with pytest.raises(ProbeFitError, match="'nodule' has 9 labelled positive"):
        fit_probes(x, few, FINDINGS, encoder=ENCODER)
    unlabelled = y.copy()
    unlabelled[:, 0] = NO_LABEL
    with pytest.raises(ProbeFitError, match="'effusion' has 0 labelled positive and 0"):
        fit_probes(x, unlabelled, FINDINGS, encoder=ENCODER)


@pytest.mark.parametrize(
    ("embeddings", "labels", "match"),
    [
        (np.zeros((5, 3, 2)), np.zeros((5, 2)), "2-D array"),
        (np.full((5, 3), np.nan), np.zeros((5, 2)), "finite"),
        (np.zeros((5, 3)), np.zeros((4, 2)), "expected \\(5, 2\\)"),
        (np.zeros((5, 3)), np.full((5, 2), 2), "0, 1 or -1"),
    ],
)
def test_bad_inputs_say_what_to_fix(
    embeddings: npt.NDArray[np.float64], labels: npt.NDArray[np.float64], match: str
) -> None:
    with pytest.raises(ProbeError, match=match):
        fit_probes(embeddings, labels, FINDINGS, encoder=ENCODER)


def test_apply_refuses_embeddings_of_another_width() -> None:
    probe = Probe(np.zeros((2, 4), np.float32), np.zeros(2, np.float32), FINDINGS, ENCODER)
    with pytest.raises(ProbeError, match=r"\[N, 4\]"):
        apply(probe, np.zeros((3, 5), np.float32))
    np.testing.assert_array_equal(apply(probe, np.ones((3, 4))), np.full((3, 2), 0.5, np.float32))


def test_the_probe_spec_serves_through_its_encoder() -> None:
    encoder = parse_spec(encoder_spec("onnx"))
    spec = probe_spec(encoder, ENCODER, FINDINGS, thresholds={"nodule": 0.3})
    assert spec.runtime == "probe"
    assert spec.encoder == ENCODER
    assert spec.encoder_runtime == "onnx"
    assert spec.input == encoder.input
    assert spec.preprocessing == encoder.preprocessing
    assert spec.embedding == encoder.embedding
    assert spec.findings is not None
    assert spec.findings.tensor == PROBE_TENSOR
    assert spec.findings.activation == "probability"
    assert [(f.name, f.threshold) for f in spec.findings.findings] == [
        ("effusion", 0.5),
        ("nodule", 0.3),
    ]
    assert spec.retraining.kind == "probe"
    assert "labels" in spec.reference.holds
    assert parse_spec(spec.to_json()) == spec
    served = spec.encoder_view()
    assert served.runtime == "onnx"
    assert served.outputs == encoder.outputs


def test_probe_specs_refuse_what_cannot_be_served() -> None:
    encoder = parse_spec(encoder_spec("onnx"))
    probe = probe_spec(encoder, ENCODER, FINDINGS)
    with pytest.raises(SpecError, match="served by Triton"):
        probe_spec(probe, ENCODER, FINDINGS)
    with pytest.raises(SpecError, match="does not have"):
        probe_spec(encoder, ENCODER, FINDINGS, thresholds={"edema": 0.2})
    with pytest.raises(SpecError, match="findings"):
        probe_spec(encoder, ENCODER, ("Not A Name",))
