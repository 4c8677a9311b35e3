"""Calibration of the findings head and the operating points that turn its probabilities into statuses.

Two post-hoc steps, both fitted on *validation* data only (never the training or test split):

1. **Temperature scaling** (Guo et al., 2017), one temperature per observation: calibrated
   probability = sigmoid(logit / T). A single scalar per observation keeps the ranking (AUROC) intact
   and cannot overfit a few hundred validation studies the way isotonic regression can. T is chosen
   by minimising the binary negative log-likelihood over log T in `bounds`. Observations with fewer
   than `min_labels` known (0/1) validation labels, or with only one class among them, keep T = 1.0:
   their NLL has no interior optimum (a single class drives T to a bound), so fitting would only
   sharpen or flatten them arbitrarily.
2. **Operating points** per observation on the calibrated probabilities (`choose_operating_points`):
   for critical findings (the ones triage acts on) the largest threshold whose validation sensitivity
   reaches a target (0.9 by default, missing them is the costly error); for the others the threshold
   maximising Youden's J (sensitivity + specificity - 1). See that function for the "uncertain" band
   and for the observations that keep the default 0.5 / 0.3.

Label arrays follow `StudyRecord.labels`: (n, 14) in OBSERVATIONS order with 1 / 0 / -1 / NaN; only
the 1 and 0 cells count here (uncertain and unmentioned are not ground truth for either class).

Everything here is a pure function of numpy arrays; `reportgen.inference.calibrate_cli` runs the
model and writes the results into a checkpoint's metadata.json.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import numpy as np

from reportgen.constants import OBSERVATIONS
from reportgen.errors import CheckpointError
from reportgen.inference.triage import TIME_SENSITIVE, URGENT

#: Observations whose operating point targets a sensitivity: the ones triage escalates on.
CRITICAL: tuple[str, ...] = URGENT + TIME_SENSITIVE
#: Operating point of an observation that validation cannot inform (same as `default_operating_points`).
DEFAULT_POINT = {"positive": 0.5, "uncertain": 0.3}
#: Lower edge of the uncertain band as a fraction of the positive threshold, when no sensitivity rule sets it
#: (0.6 = the default 0.3 / 0.5 ratio).
UNCERTAIN_RATIO = 0.6
_EPS = 1e-7


# --------------------------------------------------------------------------------------------- basics


def known(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of the cells that are ground truth: label 1 or 0 (not -1, not NaN)."""
    y = np.asarray(labels, dtype=np.float64)
    return (y == 1.0) | (y == 0.0)


def to_logits(probs: np.ndarray) -> np.ndarray:
    """Inverse sigmoid, clipped so that probabilities of exactly 0 or 1 stay finite."""
    p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def apply_temperature(logits: np.ndarray, temperature: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """Calibrated probabilities (n, 14): sigmoid(logits / T), T a scalar or one per column."""
    return sigmoid(np.asarray(logits, dtype=np.float64) / np.asarray(temperature, dtype=np.float64))


def parse_temperature(value: object, where: str = "metadata.json") -> float | np.ndarray:
    """A checkpoint's `temperature`: one positive float, or a list of 14 (OBSERVATIONS order).

    Returns a float for a scalar and a float32 (14,) array for a list, so a caller can divide (n, 14)
    logits by either.

    Raises:
        CheckpointError: not a positive finite number, or a list of the wrong length.
    """
    if isinstance(value, bool):
        value = None  # a JSON true/false is a mistake, not 1.0 / 0.0
    if isinstance(value, int | float):
        t = float(value)
        if math.isfinite(t) and t > 0:
            return t
    elif isinstance(value, list | tuple) and len(value) == len(OBSERVATIONS):
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            arr = np.array([np.nan])
        if np.all(np.isfinite(arr)) and np.all(arr > 0):
            return arr.astype(np.float32)
    raise CheckpointError(
        f"{where}: 'temperature' must be a positive number or a list of {len(OBSERVATIONS)} positive numbers "
        f"(got {str(value)[:80]}); re-run `reportgen calibrate` or remove the key"
    )


# ------------------------------------------------------------------------------------ temperature fit


def temperature_status(labels: np.ndarray, min_labels: int = 20, min_per_class: int = 5) -> list[str]:
    """Per observation: "fitted", or why `fit_temperature` keeps T = 1.0 for it."""
    y = np.asarray(labels, dtype=np.float64)
    out = []
    for j in range(y.shape[1]):
        col = y[known(y[:, j]), j]
        n_pos = int(col.sum())
        if len(col) < min_labels:
            out.append(f"default: {len(col)} known labels (< {min_labels})")
        elif n_pos in (0, len(col)):
            out.append("default: only one class among the known labels")
        elif min(n_pos, len(col) - n_pos) < min_per_class:
            out.append(f"default: {min(n_pos, len(col) - n_pos)} labels of the rarer class (< {min_per_class})")
        else:
            out.append("fitted")
    return out


def _nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean binary cross-entropy of sigmoid(logits / T) against y in {0, 1}; numerically stable."""
    z = logits / temperature
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(
    logits: np.ndarray,
    labels: np.ndarray,
    bounds: tuple[float, float] = (0.05, 20.0),
    min_labels: int = 20,
    min_per_class: int = 5,
) -> np.ndarray:
    """Per-observation temperatures (14,) minimising the validation NLL of sigmoid(logit / T).

    Args:
        logits: raw findings-head logits (n, 14), before any temperature.
        labels: (n, 14) with 1 / 0 / -1 / NaN; only 1 and 0 are used.
        bounds: search range of T. The lower bound matters when the validation classes are separable
            (the NLL then keeps falling as T -> 0).
        min_labels: observations with fewer known labels, or fewer than `min_per_class` of either
            class, keep T = 1.0 (see `temperature_status`): one positive among 200 negatives would
            set T from noise.
    """
    from scipy.optimize import minimize_scalar

    z_all = np.asarray(logits, dtype=np.float64)
    y_all = np.asarray(labels, dtype=np.float64)
    if z_all.shape != y_all.shape or z_all.ndim != 2:
        raise ValueError(f"logits and labels must both be (n, 14); got {z_all.shape} and {y_all.shape}")
    temps = np.ones(z_all.shape[1])
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    for j, status in enumerate(temperature_status(y_all, min_labels, min_per_class)):
        if status != "fitted":
            continue
        keep = known(y_all[:, j])
        z, y = z_all[keep, j], y_all[keep, j]
        res = minimize_scalar(lambda s, z=z, y=y: _nll(z, y, math.exp(s)), bounds=(lo, hi), method="bounded")
        temps[j] = math.exp(float(res.x))
    return temps


# ---------------------------------------------------------------------------------------- metrics


def _known_or_nan(labels: np.ndarray) -> np.ndarray:
    y = np.asarray(labels, dtype=np.float64)
    return np.where(known(y), y, np.nan)


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error over every known (study, observation) cell, equal-width bins; NaN if none."""
    from reportgen.eval.plots import calibration

    y = _known_or_nan(labels)
    if not np.any(~np.isnan(y)):
        return float("nan")
    return calibration(probs, y, n_bins).ece


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared error of probability vs outcome over every known cell; NaN if none."""
    p = np.asarray(probs, dtype=np.float64)
    keep = known(labels)
    if not keep.any():
        return float("nan")
    return float(np.mean((p[keep] - np.asarray(labels, dtype=np.float64)[keep]) ** 2))


def per_observation_metrics(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> dict[str, dict]:
    """{observation: {n_pos, n_neg, ece, brier}} over each column's known cells (NaN metrics without any)."""
    out = {}
    for j, obs in enumerate(OBSERVATIONS):
        y = np.asarray(labels, dtype=np.float64)[:, j : j + 1]
        k = known(y)
        out[obs] = {
            "n_pos": int((y[k] == 1).sum()),
            "n_neg": int((y[k] == 0).sum()),
            "ece": ece(probs[:, j : j + 1], y, n_bins),
            "brier": brier(probs[:, j : j + 1], y),
        }
    return out


# ------------------------------------------------------------------------------------ operating points


def default_targets(sensitivity: float = 0.9) -> dict[str, float]:
    """Target sensitivity per critical observation; the rest get Youden's J."""
    return {obs: sensitivity for obs in CRITICAL}


def threshold_for_sensitivity(p_pos: np.ndarray, target: float) -> float:
    """Largest threshold t with mean(p_pos >= t) >= target (positives' probabilities `p_pos`, non-empty)."""
    p = np.sort(np.asarray(p_pos, dtype=np.float64))[::-1]
    k = max(1, math.ceil(target * len(p) - 1e-9))  # positives that must score >= t
    return float(p[min(k, len(p)) - 1])


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Threshold maximising sensitivity + specificity - 1 (ties: the highest threshold)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(y, p, drop_intermediate=False)
    j = tpr[1:] - fpr[1:]  # thresholds[0] is +inf (nothing positive)
    return float(thresholds[1:][int(np.argmax(j))])


def choose_operating_points(
    probs: np.ndarray,
    labels: np.ndarray,
    targets: Mapping[str, float] | None = None,
    *,
    uncertain_sensitivity: float = 0.97,
    min_positives: int = 10,
) -> dict[str, dict]:
    """Per-observation thresholds {obs: {"positive", "uncertain", "method", ...}} chosen on validation.

    Rules, per observation, on its known (1/0) cells:

    * fewer than `min_positives` (10) positives or no negative: the default 0.5 / 0.3, `method`
      "default" with the `reason`. Below 10 positives a 0.9 sensitivity target cannot be told from
      1.0 (it allows no miss), so the threshold would just be the lowest positive's probability;
    * in `targets` (default: the critical findings at 0.9): `method` "sensitivity", "positive" is the
      largest threshold whose validation sensitivity reaches the target, and "uncertain" the largest
      reaching `uncertain_sensitivity` (0.97): the band between them is where a missed finding is
      likely enough to show the reader "possible ...";
    * otherwise `method` "youden": "positive" maximises Youden's J, and "uncertain" is
      `UNCERTAIN_RATIO` x positive. A 0.97-sensitivity cut would mark most studies "uncertain" for a
      weak head and flood the decoder prompt with "possible X".

    When a rule leaves no band (uncertain >= positive), uncertain = UNCERTAIN_RATIO x positive.
    Each entry also has `n_pos`, `n_neg`, `target`, `achieved_sensitivity` and `specificity` at
    "positive" on these data, `positive_rate` (fraction of *all* given studies at or above "positive",
    labelled or not: the triage / prompt burden) and `youden` (the Youden-J threshold, None for a
    default point), so the metadata says what a point was chosen for, what it reached and what a
    balanced point would have been.

    Args:
        probs: calibrated probabilities (n, 14).
        labels: (n, 14) with 1 / 0 / -1 / NaN.
        targets: {observation: target sensitivity}; None = `default_targets()`.
    """
    targets = default_targets() if targets is None else dict(targets)
    unknown = [o for o in targets if o not in OBSERVATIONS]
    if unknown:
        raise ValueError(f"unknown observation(s) in targets: {unknown}")
    p_all = np.asarray(probs, dtype=np.float64)
    y_all = np.asarray(labels, dtype=np.float64)
    out: dict[str, dict] = {}
    for j, obs in enumerate(OBSERVATIONS):
        keep = known(y_all[:, j])
        y, p = y_all[keep, j], p_all[keep, j]
        n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
        entry: dict = {"n_pos": n_pos, "n_neg": n_neg, "target": targets.get(obs, "youden")}
        if n_pos < min_positives or n_neg == 0:
            reason = (
                "no validation positives"
                if n_pos == 0
                else f"only {n_pos} validation positives (< {min_positives})"
                if n_pos < min_positives
                else "no validation negatives"
            )
            entry.update(DEFAULT_POINT, method="default", reason=reason, youden=None)
        else:
            entry["youden"] = youden_threshold(y, p)
            if obs in targets:
                pos = threshold_for_sensitivity(p[y == 1], targets[obs])
                unc = threshold_for_sensitivity(p[y == 1], max(uncertain_sensitivity, targets[obs]))
                entry["method"] = "sensitivity"
            else:
                pos = entry["youden"]
                unc = UNCERTAIN_RATIO * pos
                entry["method"] = "youden"
            if unc >= pos:
                unc = UNCERTAIN_RATIO * pos
            entry.update(positive=pos, uncertain=unc)
        entry["achieved_sensitivity"] = float(np.mean(p[y == 1] >= entry["positive"])) if n_pos else None
        entry["specificity"] = float(np.mean(p[y == 0] < entry["positive"])) if n_neg else None
        entry["positive_rate"] = float(np.mean(p_all[:, j] >= entry["positive"])) if len(p_all) else None
        out[obs] = entry
    return out


def point_metrics(probs: np.ndarray, labels: np.ndarray, points: Mapping[str, Mapping[str, float]]) -> dict:
    """{observation: {sensitivity, specificity}} of given points on other data (None without that class)."""
    out = {}
    for j, obs in enumerate(OBSERVATIONS):
        keep = known(labels[:, j])
        y, p = np.asarray(labels, dtype=np.float64)[keep, j], np.asarray(probs, dtype=np.float64)[keep, j]
        t = float(points[obs]["positive"])
        out[obs] = {
            "sensitivity": float(np.mean(p[y == 1] >= t)) if (y == 1).any() else None,
            "specificity": float(np.mean(p[y == 0] < t)) if (y == 0).any() else None,
        }
    return out


# -------------------------------------------------------------------------------------- cross-fitting


def group_folds(groups: Sequence[str], n_folds: int = 2, salt: str = "calibration") -> np.ndarray:
    """Fold index per study from a SHA-1 of its group (patient): patients never straddle folds.

    Hash-based like `patient_split`, so the folds are the same on every machine and run.
    """
    out = np.empty(len(groups), dtype=np.int64)
    for i, g in enumerate(groups):
        digest = hashlib.sha1(f"{salt}{g}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") % n_folds
    return out


def cross_fit(
    logits: np.ndarray,
    labels: np.ndarray,
    groups: Sequence[str],
    targets: Mapping[str, float] | None = None,
    n_folds: int = 2,
    n_bins: int = 10,
    **point_kw,
) -> dict:
    """Out-of-fold ("not in-sample") calibration numbers: fit on the other folds, measure on this one.

    Temperatures and operating points are fitted on folds != k and applied to fold k; the
    out-of-fold probabilities of all folds are pooled for ECE and Brier, and the sensitivity /
    specificity of each fold's points is measured on the held-out fold (pooled by counting).

    Returns:
        {"ece", "brier", "n_folds", "fold_sizes", "probs" (n, 14 out-of-fold), "per_observation":
        {obs: {"sensitivity", "specificity"}}}
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    folds = group_folds(groups, n_folds)
    oof = np.full_like(z, np.nan)
    tp = np.zeros(len(OBSERVATIONS))
    pos = np.zeros(len(OBSERVATIONS))
    tn = np.zeros(len(OBSERVATIONS))
    neg = np.zeros(len(OBSERVATIONS))
    for k in range(n_folds):
        train, held = folds != k, folds == k
        if not held.any():
            continue
        t = fit_temperature(z[train], y[train]) if train.any() else np.ones(z.shape[1])
        oof[held] = apply_temperature(z[held], t)
        points = choose_operating_points(apply_temperature(z[train], t), y[train], targets, **point_kw)
        thr = np.array([points[o]["positive"] for o in OBSERVATIONS])
        yh, ph = y[held], oof[held]
        tp += ((yh == 1) & (ph >= thr)).sum(0)
        pos += (yh == 1).sum(0)
        tn += ((yh == 0) & (ph < thr)).sum(0)
        neg += (yh == 0).sum(0)
    per_obs = {
        o: {
            "sensitivity": float(tp[j] / pos[j]) if pos[j] else None,
            "specificity": float(tn[j] / neg[j]) if neg[j] else None,
        }
        for j, o in enumerate(OBSERVATIONS)
    }
    return {
        "ece": ece(oof, y, n_bins),
        "brier": brier(oof, y),
        "n_folds": n_folds,
        "fold_sizes": [int((folds == k).sum()) for k in range(n_folds)],
        "probs": oof,
        "per_observation": per_obs,
    }
