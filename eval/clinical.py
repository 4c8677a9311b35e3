"""Clinical efficacy (CE): precision/recall/F1 of CheXpert labels of generated vs reference reports.

Inputs are label arrays of shape (n_reports, 14) in `reportgen.constants.OBSERVATIONS` order with
1 (positive), 0 (negative), -1 (uncertain) and NaN (not mentioned), one row per report, from the
same labeler for both sides. The conventions below are the field's most common ones (R2Gen's
``compute_ce.py``: fill NaN with 0, map -1 to 0, then scikit-learn ``f1_score(average=...)``) and
every number names them, because papers differ here more than in model quality:

* **Binarization.** Not mentioned (NaN) and negative (0) are negative. Uncertain (-1) is negative
  in ``uneg`` (R2Gen/CheXbert-eval default) and positive in ``upos``. The same rule is applied to
  predictions and references.
* **Label sets.** ``14``: all observations including "No Finding". ``5``: the CheXpert competition
  five (`FIVE_OBSERVATIONS`: atelectasis, cardiomegaly, consolidation, edema, pleural effusion).
* **micro**: TP/FP/FN pooled over every (report, observation) cell, then P = TP/(TP+FP),
  R = TP/(TP+FN), F1 = 2TP/(2TP+FP+FN).
* **macro**: P, R, F1 per observation as above, then the unweighted mean over the observations
  of the set, *including* observations with no positive reference or prediction (they count with
  the zero-division value) -- scikit-learn ``average="macro"``.
* **example** (example-based, per report): for each report, P = |pred AND ref| / |pred|,
  R = |pred AND ref| / |ref|, F1 = 2|pred AND ref| / (|pred| + |ref|) over its positive
  observations, then the mean over reports -- scikit-learn ``average="samples"``.
* **Zero division** (an empty denominator: no predicted positives, no reference positives, or
  both) gives ``zero_division`` (default 0.0, scikit-learn's default behaviour). For ``example``
  this matters: a report where both sides have no positive observation scores F1 = 0, not 1.

95% confidence intervals are percentile bootstrap intervals: reports (rows, keeping each report's
prediction and reference together) are resampled with replacement ``n_boot`` times with
``numpy.random.default_rng(seed)``, and every metric is recomputed on each resample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reportgen.constants import FIVE_OBSERVATIONS, OBSERVATIONS

UNCERTAIN_MODES: tuple[str, ...] = ("uneg", "upos")
AVERAGES: tuple[str, ...] = ("micro", "macro", "example")
LABEL_SETS: dict[str, tuple[int, ...]] = {
    "14": tuple(range(len(OBSERVATIONS))),
    "5": tuple(OBSERVATIONS.index(o) for o in FIVE_OBSERVATIONS),
}
#: The numbers most papers report; `CEMetric` always returns them (and every other combination).
HEADLINE_KEYS: tuple[str, ...] = (
    "ce/f1_micro_14_uneg",
    "ce/f1_macro_14_uneg",
    "ce/f1_micro_5_uneg",
    "ce/f1_macro_5_uneg",
    "ce/precision_micro_14_uneg",
    "ce/recall_micro_14_uneg",
    "ce/f1_example_14_uneg",
)


def ce_keys() -> list[str]:
    """Every scalar CE key: ``ce/{precision|recall|f1}_{micro|macro|example}_{14|5}_{uneg|upos}``."""
    return [
        f"ce/{m}_{avg}_{subset}_{mode}"
        for mode in UNCERTAIN_MODES
        for subset in LABEL_SETS
        for avg in AVERAGES
        for m in ("precision", "recall", "f1")
    ]


def validate_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """Check a (n, 14) label array holds only 1/0/-1/NaN; return it as float64."""
    arr = np.asarray(labels, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != len(OBSERVATIONS):
        raise ValueError(f"{name} must have shape (n, {len(OBSERVATIONS)}), got {arr.shape}")
    finite = arr[~np.isnan(arr)]
    if not np.isin(finite, (1.0, 0.0, -1.0)).all():
        raise ValueError(f"{name} may only contain 1, 0, -1 or NaN")
    return arr


def binarize(labels: np.ndarray, mode: str = "uneg") -> np.ndarray:
    """Positive mask: 1 -> True; 0 and NaN -> False; -1 -> False (``uneg``) or True (``upos``)."""
    if mode not in UNCERTAIN_MODES:
        raise ValueError(f"uncertain mode must be one of {UNCERTAIN_MODES}, got {mode!r}")
    arr = np.asarray(labels, dtype=np.float64)
    positive = arr == 1.0
    return positive | (arr == -1.0) if mode == "upos" else positive


def _safe_div(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, float(zero_division))
    np.divide(num, den, out=out, where=den > 0)
    return out


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, zero_division: float) -> tuple[np.ndarray, ...]:
    return (
        _safe_div(tp, tp + fp, zero_division),
        _safe_div(tp, tp + fn, zero_division),
        _safe_div(2 * tp, 2 * tp + fp + fn, zero_division),
    )


def _scores_weighted(pred: np.ndarray, ref: np.ndarray, weights: np.ndarray, zero_division: float) -> dict:
    """All micro/macro/example P/R/F1 for one binarized label subset, for each row of `weights`.

    Args:
        pred, ref: Boolean (n, L) positive masks.
        weights: (B, n) how many times each report counts (a bootstrap resample, or all ones).

    Returns:
        ``{"precision_micro": (B,), ...}`` for the 3 averages x 3 measures.
    """
    tp, fp, fn = (pred & ref), (pred & ~ref), (~pred & ref)
    w = weights.astype(np.float64)
    tp_l, fp_l, fn_l = w @ tp, w @ fp, w @ fn  # (B, L) counts per observation
    out: dict[str, np.ndarray] = {}
    micro = _prf(tp_l.sum(1), fp_l.sum(1), fn_l.sum(1), zero_division)
    macro = [x.mean(1) for x in _prf(tp_l, fp_l, fn_l, zero_division)]
    # Example-based: score each report once, then a weighted mean over reports.
    ex = _prf(tp.sum(1), fp.sum(1), fn.sum(1), zero_division)  # (n,) each
    example = [(w @ x) / w.sum(1) for x in ex]
    for avg, values in (("micro", micro), ("macro", macro), ("example", example)):
        for measure, v in zip(("precision", "recall", "f1"), values, strict=True):
            out[f"{measure}_{avg}"] = v
    return out


def _all_scores(pred_labels: np.ndarray, ref_labels: np.ndarray, weights: np.ndarray, zero_division: float) -> dict:
    out = {}
    for mode in UNCERTAIN_MODES:
        pred_b, ref_b = binarize(pred_labels, mode), binarize(ref_labels, mode)
        for subset, cols in LABEL_SETS.items():
            part = _scores_weighted(pred_b[:, cols], ref_b[:, cols], weights, zero_division)
            out.update({f"ce/{k}_{subset}_{mode}": v for k, v in part.items()})
    return out


def ce_scores(pred_labels: np.ndarray, ref_labels: np.ndarray, zero_division: float = 0.0) -> dict[str, float]:
    """Every `ce_keys` metric for predictions vs references (see the module docstring for conventions)."""
    pred, ref = _check_pair(pred_labels, ref_labels)
    scores = _all_scores(pred, ref, np.ones((1, len(pred))), zero_division)
    return {k: float(scores[k][0]) for k in ce_keys()}


def per_observation(pred_labels: np.ndarray, ref_labels: np.ndarray, zero_division: float = 0.0) -> list[dict]:
    """One row per (uncertain mode, observation): counts and P/R/F1, for tables and error analysis."""
    pred, ref = _check_pair(pred_labels, ref_labels)
    rows = []
    for mode in UNCERTAIN_MODES:
        p, r = binarize(pred, mode), binarize(ref, mode)
        tp, fp, fn = (p & r).sum(0), (p & ~r).sum(0), (~p & r).sum(0)
        tn = (~p & ~r).sum(0)
        prec, rec, f1 = _prf(tp, fp, fn, zero_division)
        for j, obs in enumerate(OBSERVATIONS):
            rows.append(
                {
                    "observation": obs,
                    "mode": mode,
                    "tp": int(tp[j]),
                    "fp": int(fp[j]),
                    "fn": int(fn[j]),
                    "tn": int(tn[j]),
                    "ref_positive": int(tp[j] + fn[j]),
                    "pred_positive": int(tp[j] + fp[j]),
                    "precision": float(prec[j]),
                    "recall": float(rec[j]),
                    "f1": float(f1[j]),
                }
            )
    return rows


def bootstrap_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) counts of each report in `n_boot` resamples with replacement (seeded, reproducible)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    flat = (idx + n * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n)


def bootstrap_ci(
    pred_labels: np.ndarray,
    ref_labels: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    zero_division: float = 0.0,
    keys: Sequence[str] | None = None,
) -> dict[str, list[float]]:
    """Percentile bootstrap CIs ``{key: [low, high]}`` for `keys` (default: every `ce_keys`).

    Vectorized: all resamples are one (n_boot, n) weight matrix, so 1000 resamples of 3000 reports
    take well under a second.
    """
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    pred, ref = _check_pair(pred_labels, ref_labels)
    if n_boot < 1 or len(pred) == 0:
        return {}
    weights = bootstrap_weights(len(pred), n_boot, seed)
    scores = _all_scores(pred, ref, weights, zero_division)
    alpha = (1 - level) / 2
    return {
        k: [float(np.quantile(scores[k], alpha)), float(np.quantile(scores[k], 1 - alpha))]
        for k in (keys if keys is not None else ce_keys())
    }


def _check_pair(pred_labels: np.ndarray, ref_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = validate_labels(pred_labels, "predicted labels"), validate_labels(ref_labels, "reference labels")
    if pred.shape != ref.shape:
        raise ValueError(f"{pred.shape[0]} predicted label rows but {ref.shape[0]} reference rows")
    return pred, ref


@dataclass
class CEConfig:
    """Settings of `CEMetric`.

    Attributes:
        bootstrap: Number of bootstrap resamples for the CIs (0 disables them).
        seed: Seed of the bootstrap generator.
        level: Confidence level of the intervals.
        zero_division: Value of a ratio whose denominator is zero.
    """

    bootstrap: int = 1000
    seed: int = 0
    level: float = 0.95
    zero_division: float = 0.0


class CEMetric:
    """mmengine-style accumulator of clinical-efficacy scores.

    `update` takes either label arrays (n, 14) or report texts, which it labels with
    `reportgen.eval.labeler.label_reports` (both sides with the same labeler).

    `compute` returns every `ce_keys` float plus ``"ce/n"``, ``"ce/per_observation"`` (list of
    dicts, see `per_observation`), ``"ce/ci95"`` (``{key: [low, high]}``; the key names the level
    only for the default 0.95), ``"ce/bootstrap"`` (its settings) and ``"ce/conventions"`` (how the
    numbers were computed, to paste into a paper).
    """

    def __init__(self, config: CEConfig | None = None, **kwargs: float) -> None:
        self.config = config if config is not None else CEConfig(**kwargs)
        self._pred: list[np.ndarray] = []
        self._ref: list[np.ndarray] = []

    def update(self, preds: Sequence[str] | np.ndarray, refs: Sequence[str] | np.ndarray) -> None:
        """Add a batch: two label arrays (n, 14), or two equally long sequences of report texts."""
        pred, ref = self._as_labels(preds), self._as_labels(refs)
        pred, ref = _check_pair(pred, ref)
        self._pred.append(pred)
        self._ref.append(ref)

    @staticmethod
    def _as_labels(x: Sequence[str] | np.ndarray) -> np.ndarray:
        if isinstance(x, str):
            raise TypeError("update() takes sequences of reports or label arrays, not a single string")
        if isinstance(x, np.ndarray) and x.dtype.kind in "fiub":
            return x
        items = list(x)
        if items and all(isinstance(t, str) for t in items):
            from reportgen.eval.labeler import label_reports

            return np.asarray(label_reports(items), dtype=np.float64)
        if not items:
            return np.zeros((0, len(OBSERVATIONS)))
        return np.asarray(items, dtype=np.float64)

    def reset(self) -> None:
        self._pred.clear()
        self._ref.clear()

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """All accumulated (predicted, reference) label arrays."""
        empty = np.zeros((0, len(OBSERVATIONS)))
        pred = np.concatenate(self._pred) if self._pred else empty
        ref = np.concatenate(self._ref) if self._ref else empty
        return pred, ref

    def compute(self) -> dict:
        from reportgen.errors import DataError

        pred, ref = self.labels()
        if len(pred) == 0:
            raise DataError("no reports to score")
        cfg = self.config
        out: dict = dict(ce_scores(pred, ref, cfg.zero_division))
        out["ce/n"] = len(pred)
        out["ce/per_observation"] = per_observation(pred, ref, cfg.zero_division)
        out["ce/ci95"] = bootstrap_ci(pred, ref, cfg.bootstrap, cfg.seed, cfg.level, cfg.zero_division)
        out["ce/bootstrap"] = {
            "n_boot": cfg.bootstrap,
            "seed": cfg.seed,
            "level": cfg.level,
            "method": "percentile; reports resampled with replacement; numpy default_rng(seed)",
        }
        out["ce/conventions"] = {
            "not_mentioned": "negative",
            "uncertain": "uneg: negative; upos: positive",
            "zero_division": cfg.zero_division,
            "micro": "TP/FP/FN pooled over all (report, observation) cells",
            "macro": "unweighted mean over observations, all kept (sklearn average='macro')",
            "example": "per-report P/R/F1 over its positive observations, mean over reports (sklearn 'samples')",
            "label_sets": {"14": list(OBSERVATIONS), "5": list(FIVE_OBSERVATIONS)},
        }
        return out
