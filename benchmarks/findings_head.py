"""Findings-head accuracy and calibration of a checkpoint on the label-only image sets.

For each source (NIH ChestX-ray14 sample, NLM TB, COVID-19 collection) and each CheXpert
observation with both classes present: AUROC, and sensitivity / specificity at the checkpoint's
stored operating point (`predictor.points[obs]["positive"]`), each with a seeded percentile-bootstrap
95% CI (studies resampled with replacement). Uncertain (-1) and unmentioned (NaN) labels are left
out of that observation. Per source, a reliability diagram over every labelled (study, observation)
cell with ECE and Brier score (`reportgen.eval.plots.calibration`).

Usage:
    python benchmarks/findings_head.py --checkpoint checkpoints/<name> [--data-root ../shared/data] \\
        [--sources nih_cxr14,nlm_tb,covid_cxr] [--split val] [--bootstrap 1000] [--out findings_head.json]

Prints a Markdown table; writes the JSON (`--out`) and the diagram (`--plot`, default next to the
JSON). Needs the real data (not part of the test suite). Label sources differ (NIH's mined labels,
TB and COVID mapped by `reportgen.data.labelmaps`), so compare a source with itself across
checkpoints, not sources with each other.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from reportgen.constants import OBSERVATIONS

DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
#: Registered dataset name -> folder under --data-root.
SOURCE_FOLDERS = {"nih_cxr14": "nih_cxr14_sample", "nlm_tb": "nlm_tb", "covid_cxr": "covid_chestxray"}


def sensitivity(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    """Fraction of positives (y == 1) with p >= threshold; NaN without positives."""
    pos = y == 1
    return float(np.mean(p[pos] >= threshold)) if pos.any() else float("nan")


def specificity(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    """Fraction of negatives (y == 0) with p < threshold; NaN without negatives."""
    neg = y == 0
    return float(np.mean(p[neg] < threshold)) if neg.any() else float("nan")


def _sens_at(y: np.ndarray, p: np.ndarray, t: float) -> float:
    return sensitivity(y, p, t)


def _spec_at(y: np.ndarray, p: np.ndarray, t: float) -> float:
    return specificity(y, p, t)


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """sklearn's ROC AUC; NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def bootstrap_ci(
    fn: Callable[[np.ndarray, np.ndarray], float], y: np.ndarray, p: np.ndarray, n_boot: int, seed: int
) -> list[float] | None:
    """Percentile 95% CI of `fn(y, p)` over studies resampled with replacement (NaN resamples dropped)."""
    if n_boot <= 0:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        v = fn(y[idx], p[idx])
        if not np.isnan(v):
            values.append(v)
    if not values:
        return None
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def score_observations(
    probs: np.ndarray, labels: np.ndarray, points: dict, n_boot: int = 1000, seed: int = 0
) -> dict[str, dict]:
    """Per observation with both classes among its 1/0 labels: counts, AUROC, sensitivity, specificity and CIs."""
    out = {}
    for j, obs in enumerate(OBSERVATIONS):
        keep = (labels[:, j] == 1) | (labels[:, j] == 0)
        y, p = labels[keep, j].astype(np.int64), probs[keep, j]
        n_pos = int(y.sum())
        if n_pos == 0 or n_pos == len(y):
            continue
        t = float(points[obs]["positive"])
        out[obs] = {
            "n_pos": n_pos,
            "n_neg": int(len(y) - n_pos),
            "threshold": t,
            "auroc": auroc(y, p),
            "auroc_ci95": bootstrap_ci(auroc, y, p, n_boot, seed),
            "sensitivity": sensitivity(y, p, t),
            "sensitivity_ci95": bootstrap_ci(partial(_sens_at, t=t), y, p, n_boot, seed),
            "specificity": specificity(y, p, t),
            "specificity_ci95": bootstrap_ci(partial(_spec_at, t=t), y, p, n_boot, seed),
        }
    return out


def predict(predictor, records, batch_size: int, desc: str) -> np.ndarray:
    """Findings-head probabilities (n, 14) in batches, with a progress bar."""
    from tqdm import tqdm

    chunks = [records[i : i + batch_size] for i in range(0, len(records), batch_size)]
    rows = [predictor.predict_probabilities([r.images for r in c]) for c in tqdm(chunks, desc=desc, file=sys.stderr)]
    return np.concatenate(rows) if rows else np.zeros((0, len(OBSERVATIONS)), dtype=np.float32)


def _fmt(value: float, ci: list[float] | None) -> str:
    if value is None or np.isnan(value):
        return "n/a"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def format_table(result: dict) -> str:
    """Markdown: one row per (source, observation), then one calibration row per source."""
    lines = [
        f"model: {result['model']['name']} {result['model']['version']} (sha256 {result['model']['sha256'][:12]}), "
        f"split {result['split']}, bootstrap {result['bootstrap']}",
        "",
        "| source | observation | n+ / n- | threshold | AUROC [95% CI] | sensitivity [95% CI] | specificity [95% CI] |",
        "|---|---|---:|---:|---|---|---|",
    ]
    for source, res in result["sources"].items():
        for obs, m in res["observations"].items():
            lines.append(
                f"| {source} | {obs} | {m['n_pos']} / {m['n_neg']} | {m['threshold']:.2f} | "
                f"{_fmt(m['auroc'], m['auroc_ci95'])} | {_fmt(m['sensitivity'], m['sensitivity_ci95'])} | "
                f"{_fmt(m['specificity'], m['specificity_ci95'])} |"
            )
    lines += ["", "| source | studies | labelled cells | ECE | Brier |", "|---|---:|---:|---:|---:|"]
    for source, res in result["sources"].items():
        cal = res.get("calibration")
        if cal:
            lines.append(f"| {source} | {res['n']} | {cal['n']} | {cal['ece']:.4f} | {cal['brier']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped one)")
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    ap.add_argument("--sources", default=",".join(SOURCE_FOLDERS))
    ap.add_argument("--split", default="val", choices=("train", "val", "test"))
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--limit", type=int, default=None, help="N evenly spaced studies per source")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bins", type=int, default=10, help="reliability-diagram bins")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    ap.add_argument("--out", type=Path, default=Path("findings_head.json"))
    ap.add_argument("--plot", type=Path, default=None, help="reliability diagram PNG (default: <out>_reliability.png)")
    args = ap.parse_args(argv)

    import torch
    from reportgen.eval.plots import calibration, reliability_diagram

    from reportgen.data.datasets import load_dataset
    from reportgen.inference.predictor import load_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = load_checkpoint(args.checkpoint, device=args.device)
    result: dict = {
        "model": predictor.model_ref,
        "untrained": predictor.info["untrained"],
        "split": args.split,
        "bootstrap": args.bootstrap,
        "seed": args.seed,
        "sources": {},
    }
    curves = {}
    for source in [s.strip() for s in args.sources.split(",") if s.strip()]:
        root = args.data_root / SOURCE_FOLDERS.get(source, source)
        records = load_dataset(source, root, split=args.split, drop_missing=True)
        records = [r for r in records if r.labels is not None]
        if args.limit and len(records) > args.limit:  # evenly spaced: files are often sorted by class
            records = [records[int(k * len(records) / args.limit)] for k in range(args.limit)]
        if not records:
            print(f"warning: {source}: no labelled {args.split} study with images under {root}", file=sys.stderr)
            continue
        probs = predict(predictor, records, args.batch_size, source)
        labels = np.stack([r.labels for r in records]).astype(np.float64)
        entry = {
            "n": len(records),
            "observations": score_observations(probs, labels, predictor.points, args.bootstrap, args.seed),
        }
        known = np.where((labels == 1) | (labels == 0), labels, np.nan)
        if (~np.isnan(known)).any():
            cal = calibration(probs, known, args.bins)
            curves[source] = cal
            entry["calibration"] = {
                "ece": cal.ece,
                "brier": cal.brier,
                "n": cal.n,
                "bins": {
                    "edges": cal.edges.tolist(),
                    "counts": cal.counts.tolist(),
                    "confidence": [None if np.isnan(v) else float(v) for v in cal.confidence],
                    "accuracy": [None if np.isnan(v) else float(v) for v in cal.accuracy],
                },
            }
        result["sources"][source] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if curves:
        plot = args.plot or args.out.with_name(args.out.stem + "_reliability.png")
        reliability_diagram(curves, plot, f"Findings head, {args.split} split ({predictor.model_ref['version']})")
        print(f"wrote {plot}", file=sys.stderr)
    print(format_table(result))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from reportgen.errors import ReportgenError

    try:
        raise SystemExit(main())
    except ReportgenError as exc:
        raise SystemExit(f"error: {exc}") from None
