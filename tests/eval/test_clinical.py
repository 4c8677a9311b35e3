"""Clinical efficacy: averaging modes and uncertainty policies on a table checked by hand, bootstrap."""

from __future__ import annotations

import sys
import types
import warnings

import numpy as np
import pytest
from reportgen.eval.clinical import (
    CEMetric,
    binarize,
    bootstrap_ci,
    bootstrap_weights,
    ce_keys,
    ce_scores,
    per_observation,
)

from reportgen.constants import OBSERVATIONS

NAN = np.nan
CARD, EDEMA, EFF, NOFIND = (OBSERVATIONS.index(o) for o in ("Cardiomegaly", "Edema", "Pleural Effusion", "No Finding"))


def _rows(*cells: dict[int, float]) -> np.ndarray:
    out = np.full((len(cells), len(OBSERVATIONS)), NAN)
    for i, row in enumerate(cells):
        for j, v in row.items():
            out[i, j] = v
    return out


# ref: r1 cardiomegaly + uncertain edema; r2 effusion; r3 "No Finding".
REF = _rows({CARD: 1, EDEMA: -1}, {EFF: 1}, {NOFIND: 1})
# pred: p1 cardiomegaly + edema; p2 uncertain cardiomegaly; p3 nothing mentioned.
PRED = _rows({CARD: 1, EDEMA: 1}, {CARD: -1}, {})


def test_hand_table_uncertain_as_negative():
    s = ce_scores(PRED, REF)
    # Cells: TP = r1 card; FP = p1 edema; FN = r2 effusion, r3 no finding.
    assert s["ce/precision_micro_14_uneg"] == pytest.approx(1 / 2)
    assert s["ce/recall_micro_14_uneg"] == pytest.approx(1 / 3)
    assert s["ce/f1_micro_14_uneg"] == pytest.approx(2 / 5)
    # Only cardiomegaly scores (P = R = F1 = 1); the 13 others are 0 (incl. 10 never-positive ones).
    for m in ("precision", "recall", "f1"):
        assert s[f"ce/{m}_macro_14_uneg"] == pytest.approx(1 / 14)
        assert s[f"ce/{m}_macro_5_uneg"] == pytest.approx(1 / 5)
    # Per report: r1 P 1/2, R 1, F1 2/3; r2 and r3 have no predicted positive -> 0.
    assert s["ce/precision_example_14_uneg"] == pytest.approx(1 / 6)
    assert s["ce/recall_example_14_uneg"] == pytest.approx(1 / 3)
    assert s["ce/f1_example_14_uneg"] == pytest.approx(2 / 9)
    # Five observations: "No Finding" leaves, so FN = 1.
    assert s["ce/f1_micro_5_uneg"] == pytest.approx(1 / 2)
    assert s["ce/f1_example_5_uneg"] == pytest.approx(2 / 9)  # r3 (empty both sides) counts 0


def test_hand_table_uncertain_as_positive():
    s = ce_scores(PRED, REF)
    # TP = r1 card, r1 edema; FP = p2 card; FN = r2 effusion, r3 no finding.
    assert s["ce/precision_micro_14_upos"] == pytest.approx(2 / 3)
    assert s["ce/recall_micro_14_upos"] == pytest.approx(2 / 4)
    assert s["ce/f1_micro_14_upos"] == pytest.approx(4 / 7)
    # cardiomegaly: P 1/2 R 1 F1 2/3; edema: 1, 1, 1.
    assert s["ce/precision_macro_14_upos"] == pytest.approx(1.5 / 14)
    assert s["ce/recall_macro_14_upos"] == pytest.approx(2 / 14)
    assert s["ce/f1_macro_14_upos"] == pytest.approx((2 / 3 + 1) / 14)
    assert s["ce/f1_example_14_upos"] == pytest.approx(1 / 3)


def test_zero_division_value_changes_example_based_scores():
    s = ce_scores(PRED, REF, zero_division=1.0)
    # r3 has no positive among the five on either side: F1 = 1 instead of 0; r2 still 0 (it misses effusion).
    assert s["ce/f1_example_5_uneg"] == pytest.approx((2 / 3 + 0 + 1) / 3)


def test_matches_scikit_learn_on_random_labels():
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(3)
    pred = rng.choice([1.0, 0.0, -1.0, NAN], size=(200, 14), p=[0.15, 0.1, 0.05, 0.7])
    ref = rng.choice([1.0, 0.0, -1.0, NAN], size=(200, 14), p=[0.15, 0.1, 0.05, 0.7])
    s = ce_scores(pred, ref)
    five = [
        OBSERVATIONS.index(o) for o in ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mode in ("uneg", "upos"):
            for subset, cols in (("14", list(range(14))), ("5", five)):
                y_true, y_pred = binarize(ref, mode)[:, cols], binarize(pred, mode)[:, cols]
                for avg, sk in (("micro", "micro"), ("macro", "macro"), ("example", "samples")):
                    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=sk, zero_division=0)
                    got = [s[f"ce/{m}_{avg}_{subset}_{mode}"] for m in ("precision", "recall", "f1")]
                    assert got == pytest.approx([p, r, f]), (mode, subset, avg)


def test_per_observation_table():
    rows = per_observation(PRED, REF)
    assert len(rows) == 2 * len(OBSERVATIONS)
    card = next(r for r in rows if r["observation"] == "Cardiomegaly" and r["mode"] == "upos")
    assert (card["tp"], card["fp"], card["fn"], card["tn"]) == (1, 1, 0, 1)
    assert card["precision"] == pytest.approx(0.5) and card["f1"] == pytest.approx(2 / 3)


def test_invalid_labels_rejected():
    bad = REF.copy()
    bad[0, 0] = 2
    with pytest.raises(ValueError, match="1, 0, -1"):
        ce_scores(PRED, bad)
    with pytest.raises(ValueError, match="shape"):
        ce_scores(PRED[:, :5], REF[:, :5])
    with pytest.raises(ValueError, match="rows"):
        ce_scores(PRED[:2], REF)


def test_bootstrap_is_deterministic_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    pred = rng.choice([1.0, 0.0, NAN], size=(120, 14), p=[0.3, 0.2, 0.5])
    ref = np.where(rng.random((120, 14)) < 0.8, pred, rng.choice([1.0, NAN], size=(120, 14)))
    a = bootstrap_ci(pred, ref, n_boot=200, seed=7)
    b = bootstrap_ci(pred, ref, n_boot=200, seed=7)
    c = bootstrap_ci(pred, ref, n_boot=200, seed=8)
    assert a == b and a != c
    assert set(a) == set(ce_keys())
    point = ce_scores(pred, ref)
    for key in ("ce/f1_micro_14_uneg", "ce/f1_macro_14_uneg", "ce/f1_example_5_upos"):
        lo, hi = a[key]
        assert lo < point[key] < hi and hi - lo < 0.3
    assert bootstrap_ci(pred, ref, n_boot=0) == {}


def test_bootstrap_weights_are_resamples():
    w = bootstrap_weights(50, 30, seed=1)
    assert w.shape == (30, 50) and (w.sum(1) == 50).all() and (w >= 0).all()
    assert not (w == 1).all()


def test_ce_metric_accumulates_arrays_and_labels_texts(monkeypatch):
    metric = CEMetric(bootstrap=50, seed=1)
    metric.update(PRED[:2], REF[:2])
    metric.update(PRED[2:], REF[2:])
    out = metric.compute()
    assert out["ce/n"] == 3 and out["ce/f1_micro_14_uneg"] == pytest.approx(2 / 5)
    assert out["ce/bootstrap"]["n_boot"] == 50 and "ce/f1_micro_14_uneg" in out["ce/ci95"]
    assert out["ce/conventions"]["zero_division"] == 0.0

    # Texts go through the labeler (a fake one here: the real one is tested by its owner).
    fake = types.ModuleType("reportgen.eval.labeler")
    fake.label_reports = lambda texts: np.stack([REF[0] if "big heart" in t else REF[2] for t in texts])
    monkeypatch.setitem(sys.modules, "reportgen.eval.labeler", fake)
    by_text = CEMetric(bootstrap=0)
    by_text.update(["big heart", "normal"], ["big heart", "big heart"])
    out = by_text.compute()
    assert out["ce/recall_micro_14_uneg"] == pytest.approx(1 / 2) and out["ce/ci95"] == {}
