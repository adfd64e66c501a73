"""Drift between two canonical sequence frames: the label mix, the lengths and each channel's per-sequence mean."""

import json

import numpy as np
import pandas as pd
import pytest

from seqpipe.config import DriftConfig
from seqpipe.data.sequence_drift import detect_sequence_drift

LABELS = ("up", "down", "flat")
CHANNELS = ("x", "y")
SEQUENCES = 200


def _frame(seed: int, n: int = SEQUENCES, mix: tuple[float, ...] = (0.5, 0.3, 0.2), labels=LABELS,
           lengths: tuple[int, int] = (10, 40), shift: dict[str, float] | None = None) -> pd.DataFrame:
    """``n`` canonical sequences: each channel noise around a per-sequence level drawn from N(0, 1)."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(n):
        length = int(rng.integers(lengths[0], lengths[1] + 1))
        label = str(rng.choice(labels, p=mix))
        parts.append(pd.DataFrame({
            "sequence_id": f"s{seed}-{i:04d}", "step": np.arange(length, dtype=np.int64),
            **{c: rng.normal(0, 1) + (shift or {}).get(c, 0.0) + rng.normal(0, 0.5, length) for c in CHANNELS},
            "label": label}))
    return pd.concat(parts, ignore_index=True).sort_values(["sequence_id", "step"], ignore_index=True)


def _drifted(report) -> set[str]:
    return {q.name for q in report.quantities if q.drifted}


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return _frame(seed=0)


def test_the_same_distribution_does_not_drift(reference):
    report = detect_sequence_drift(reference, _frame(seed=1), DriftConfig(), "ref", "cur")
    assert [q.name for q in report.quantities] == ["label", "length", "channel:x", "channel:y"]
    assert (report.tested, report.drifted, report.untested) == (4, 0, 0)
    assert report.unseen_labels == [] and report.vanished_labels == []
    assert report.mean_psi < DriftConfig().psi_threshold
    assert all(q.reference_sequences == q.current_sequences == SEQUENCES for q in report.quantities)
    assert "0 of 4 quantities drifted" in report.summary()


def test_a_shifted_channel_mean_drifts_and_is_named(reference):
    report = detect_sequence_drift(reference, _frame(seed=1, shift={"y": 1.5}), DriftConfig(), "ref", "cur")
    assert _drifted(report) == {"channel:y"}
    assert (report.tested, report.drifted) == (4, 1) and report.drifted_share == pytest.approx(0.25)
    assert "channel:y (PSI" in report.summary() and "channel:x (PSI" not in report.summary()


def test_longer_sequences_drift_the_length(reference):
    report = detect_sequence_drift(reference, _frame(seed=1, lengths=(30, 60)), DriftConfig(), "ref", "cur")
    assert _drifted(report) == {"length"}  # a channel's mean does not depend on how long it is measured


def test_a_changed_label_mix_drifts_the_label(reference):
    report = detect_sequence_drift(reference, _frame(seed=1, mix=(0.1, 0.3, 0.6)), DriftConfig(), "ref", "cur")
    assert _drifted(report) == {"label"}
    label = report.quantities[0]
    assert label.name == "label" and label.p_value < DriftConfig().ks_alpha
    assert report.unseen_labels == []


def _relabelled(frame: pd.DataFrame, counts: dict[str, int]) -> pd.DataFrame:
    """``frame``'s first sequences with exactly ``counts`` of each label (the rest dropped)."""
    labels = [label for label, n in counts.items() for _ in range(n)]
    ids = frame["sequence_id"].drop_duplicates().iloc[:len(labels)]
    kept = frame[frame["sequence_id"].isin(ids)]
    return kept.assign(label=kept["sequence_id"].map(dict(zip(ids, labels))))


def test_a_label_shift_needs_both_the_psi_and_the_chi_square():
    reference = _relabelled(_frame(seed=0), {"up": 100, "down": 60, "flat": 40})
    # Shares .3/.3/.4 against .5/.3/.2: PSI 0.24, over the threshold, on either sample size.
    few = detect_sequence_drift(reference, _relabelled(_frame(seed=1), {"up": 3, "down": 3, "flat": 4}),
                                DriftConfig(), "ref", "cur")
    many = detect_sequence_drift(reference, _relabelled(_frame(seed=1), {"up": 30, "down": 30, "flat": 40}),
                                 DriftConfig(), "ref", "cur")
    for report in (few, many):
        assert report.quantities[0].psi == pytest.approx(0.2 * np.log(2) - 0.2 * np.log(0.6), rel=1e-3)
    assert few.quantities[0].p_value > DriftConfig().ks_alpha and not few.quantities[0].drifted  # could be chance
    assert many.quantities[0].p_value < DriftConfig().ks_alpha and many.quantities[0].drifted


def test_an_unseen_label_is_named_and_drifts_when_it_takes_a_share(reference):
    report = detect_sequence_drift(reference, _frame(seed=1, labels=(*LABELS, "spin"), mix=(0.35, 0.2, 0.15, 0.3)),
                                   DriftConfig(), "ref", "cur")
    assert report.unseen_labels == ["spin"] and report.vanished_labels == []
    assert _drifted(report) == {"label"}
    assert "unseen labels: spin" in report.summary()


def test_a_lone_sequence_with_an_unseen_label_is_named_but_does_not_drift_the_mix():
    reference = _relabelled(_frame(seed=0), {"up": 100, "down": 60, "flat": 40})
    current = _relabelled(_frame(seed=1), {"up": 100, "down": 60, "flat": 39, "spin": 1})
    report = detect_sequence_drift(reference, current, DriftConfig(), "ref", "cur")
    label = report.quantities[0]
    assert report.unseen_labels == ["spin"]
    assert label.p_value < DriftConfig().ks_alpha  # the chi-square alone would call it drift
    assert label.psi < DriftConfig().psi_threshold and not label.drifted


def test_a_vanished_label_is_named(reference):
    report = detect_sequence_drift(reference, _frame(seed=1, labels=LABELS[:2], mix=(0.6, 0.4)),
                                   DriftConfig(), "ref", "cur")
    assert report.vanished_labels == ["flat"] and report.unseen_labels == []
    assert "label" in _drifted(report)


def test_too_few_sequences_are_not_tested(reference):
    settings = DriftConfig(min_points=8)
    # Shifted far enough to drift were it tested.
    report = detect_sequence_drift(reference, _frame(seed=1, n=7, shift={"x": 5.0}), settings, "ref", "cur")
    assert (report.tested, report.untested, report.drifted, report.quantities) == (0, 4, 0, [])
    assert report.drifted_share == 0.0 and report.mean_psi == 0.0
    enough = detect_sequence_drift(reference, _frame(seed=1, n=8, shift={"x": 5.0}), settings, "ref", "cur")
    assert enough.tested == 4 and "channel:x" in _drifted(enough)


def test_channels_on_one_side_only_are_reported_not_compared(reference):
    current = _frame(seed=1).rename(columns={"y": "z"})
    report = detect_sequence_drift(reference, current, DriftConfig(), "ref", "cur")
    assert [q.name for q in report.quantities] == ["label", "length", "channel:x"]
    assert (report.added_channels, report.removed_channels) == (["z"], ["y"])


def test_the_report_is_json_with_per_quantity_rows(reference):
    report = detect_sequence_drift(reference, _frame(seed=1, shift={"x": 1.5}), DriftConfig(), "ref", "cur")
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["drifted_share"] == pytest.approx(report.drifted / report.tested)
    assert {row["name"]: row["drifted"] for row in payload["quantities"]} == {
        "label": False, "length": False, "channel:x": True, "channel:y": False}
    assert set(payload["quantities"][0]) == {"name", "reference_sequences", "current_sequences", "psi", "p_value",
                                             "drifted"}


@pytest.mark.parametrize("task", ["classify", "forecast"])
def test_the_scheduled_step_writes_each_tasks_report_where_forecasting_does(tmp_path, task, reference):
    from conftest import make_series, write_config
    from seqpipe.config import load_config
    from seqpipe.data.drift import detect_drift
    from seqpipe.data.snapshot import write_snapshot
    from seqpipe.layout import Layout
    from seqpipe.steps.scheduled import DRIFT_DIR, check_drift

    # Each task trains only its own architectures, and the shared test config names forecasting's.
    conf = write_config(tmp_path, task=task, **({"models": ["majority"]} if task == "classify" else {}))
    (conf / "models" / "majority.yaml").write_text("arch: majority\nparams: {}\n")
    cfg = load_config(conf)
    raw = Layout.of(cfg).raw
    if task == "classify":
        old, new = reference, _frame(seed=1, shift={"x": 1.5})
        keys = {"ids": "sequence_id", "order": "step"}
    else:
        series = make_series().rename(columns={"store": "series_id", "month": "timestamp", "sales": "value"})
        old, new = series[series["timestamp"] < "2018-01-01"], series
        keys = {}
    reference_md5 = write_snapshot(old, raw, "reference", **keys).md5
    current_md5 = write_snapshot(new, raw, "current", **keys).md5
    assert check_drift(cfg, "0" * 32) is None  # production's snapshot is not here
    report = check_drift(cfg, reference_md5)
    written = json.loads((Layout.of(cfg).reports.parent / DRIFT_DIR / f"{current_md5}.json").read_text())
    assert written == json.loads(json.dumps(report.to_dict(), default=str))
    if task == "classify":
        assert written["drifted"] == 1 and [q["name"] for q in written["quantities"] if q["drifted"]] == ["channel:x"]
    else:
        expected = detect_drift(old, new, cfg.drift, reference_md5, current_md5, season=cfg.data.season)
        assert written == json.loads(json.dumps(expected.to_dict(), default=str)) and "series" in written
