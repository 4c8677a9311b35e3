"""`reportgen calibrate`: fit the findings head's temperatures and operating points on validation data.

    reportgen calibrate CHECKPOINT --data-root ../shared/data [--sources nih_cxr14,nlm_tb,covid_cxr]
        [--manifest my_val.jsonl] [--target-sensitivity 0.9] [--out calibration_report] [--dry-run]

Runs the checkpoint's findings head over the labelled *validation* studies, fits one temperature per
observation (`calibration.fit_temperature`), chooses operating points on the calibrated probabilities
(`calibration.choose_operating_points`), and writes `temperature` (14 floats), `operating_points` and
`calibration` (data, n, ECE/Brier before and after, per observation, command) into the checkpoint's
metadata.json, atomically. The weights and their sha256 are untouched. `--out` gets `calibration.json`
and `reliability.png` (before / after).

Only the "val" split is accepted: the training split would calibrate the model on data it has
memorised (far too confident there), and the test split must stay unseen for the final numbers.

Fitting and measuring on the same validation studies flatters the "after" numbers, so the report also
gives 2-fold cross-fitted figures: temperatures and points fitted on one half of the patients,
measured on the other half, and vice versa (`calibration.cross_fit`). Quote those.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from reportgen.constants import OBSERVATIONS
from reportgen.errors import CheckpointError, DataError
from reportgen.inference import calibration as cal

#: Registered dataset name -> its folder under --data-root (the layout of ../shared/data).
SOURCE_FOLDERS = {"nih_cxr14": "nih_cxr14_sample", "nlm_tb": "nlm_tb", "covid_cxr": "covid_chestxray"}


def load_records(data_root: Path | None, sources: list[str], manifests: list[Path], split: str) -> list:
    """Labelled studies with images on disk from each source's `split` (and each manifest's)."""
    from reportgen.data.datasets import load_dataset

    wanted: list[tuple[str, Path]] = [("manifest", m) for m in manifests]
    if sources:
        if data_root is None:
            raise DataError("pass --data-root (the folder holding the sources) or use --manifest only")
        wanted += [(s, data_root / SOURCE_FOLDERS.get(s, s)) for s in sources]
    records = []
    for name, root in wanted:
        found = [r for r in load_dataset(name, root, split=split, drop_missing=True) if r.labels is not None]
        if not found:
            print(f"warning: {name}: no labelled {split} study with images under {root}", file=sys.stderr)
        records += found
    if not records:
        raise DataError(f"no labelled {split} study with images found; check --data-root / --manifest")
    return records


def findings_logits(predictor, records, batch_size: int = 16) -> np.ndarray:
    """Raw findings-head logits (n, 14), before the checkpoint's temperature, in batches with a progress bar.

    Goes through the predictor's own batching (image reading, view order, preprocessing), so the
    logits are exactly those that `generate` would divide by the temperature.
    """
    import torch
    from tqdm import tqdm

    out = []
    with torch.no_grad():
        for i in tqdm(range(0, len(records), batch_size), desc="findings head", file=sys.stderr):
            chunk = records[i : i + batch_size]
            images, mask = predictor._batch([r.images for r in chunk], [r.views for r in chunk])
            tokens, token_mask = predictor.model.encode_images(images, mask)
            out.append(predictor.model.findings_logits(tokens, token_mask).float().cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def write_metadata(checkpoint: Path, updates: dict) -> None:
    """Merge `updates` into metadata.json via a temporary file and os.replace: never half-written."""
    path = checkpoint / "metadata.json"
    meta = json.loads(path.read_text())
    meta.update(updates)
    fd, tmp = tempfile.mkstemp(prefix=".metadata.", suffix=".json", dir=checkpoint)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _r(x, nd: int = 4):
    """Round for JSON; NaN -> None."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return None
    return round(float(x), nd)


def run_calibration(
    logits: np.ndarray,
    labels: np.ndarray,
    groups: list[str],
    sources: list[str],
    targets: dict[str, float],
    uncertain_sensitivity: float = 0.97,
    min_positives: int = 10,
    n_bins: int = 10,
) -> dict:
    """Everything `reportgen calibrate` computes, from logits and labels (no model, no files)."""
    point_kw = {"uncertain_sensitivity": uncertain_sensitivity, "min_positives": min_positives}
    before = cal.sigmoid(logits)
    temps = cal.fit_temperature(logits, labels)
    after = cal.apply_temperature(logits, temps)
    points = cal.choose_operating_points(after, labels, targets, **point_kw)
    cross = cal.cross_fit(logits, labels, groups, targets, n_bins=n_bins, **point_kw)
    status = cal.temperature_status(labels)
    pb, pa = cal.per_observation_metrics(before, labels, n_bins), cal.per_observation_metrics(after, labels, n_bins)
    per_obs = {
        o: {
            "n_pos": pb[o]["n_pos"],
            "n_neg": pb[o]["n_neg"],
            "temperature": _r(temps[j]),
            "temperature_fit": status[j],
            "ece_before": _r(pb[o]["ece"]),
            "ece_after": _r(pa[o]["ece"]),
            "brier_before": _r(pb[o]["brier"]),
            "brier_after": _r(pa[o]["brier"]),
            "crossfit_sensitivity": _r(cross["per_observation"][o]["sensitivity"]),
            "crossfit_specificity": _r(cross["per_observation"][o]["specificity"]),
        }
        for j, o in enumerate(OBSERVATIONS)
    }
    by_source = {}
    src = np.asarray(sources)
    for s in dict.fromkeys(sources):
        m = src == s
        by_source[s] = {
            "n": int(m.sum()),
            "ece_before": _r(cal.ece(before[m], labels[m], n_bins)),
            "ece_after": _r(cal.ece(after[m], labels[m], n_bins)),
            "ece_crossfit": _r(cal.ece(cross["probs"][m], labels[m], n_bins)),
        }
    return {
        "temperature": temps,
        "points": points,
        "probs": {"before": before, "after": after, "crossfit": cross["probs"]},
        "summary": {
            "n": int(len(logits)),
            "labelled_cells": int(cal.known(labels).sum()),
            "ece_before": _r(cal.ece(before, labels, n_bins)),
            "ece_after": _r(cal.ece(after, labels, n_bins)),
            "brier_before": _r(cal.brier(before, labels)),
            "brier_after": _r(cal.brier(after, labels)),
            "ece_after_crossfit": _r(cross["ece"]),
            "brier_after_crossfit": _r(cross["brier"]),
            "crossfit": {
                "n_folds": cross["n_folds"],
                "fold_sizes": cross["fold_sizes"],
                "grouped_by": "patient_id",
                "note": "each fold is fitted with the same rules on the other fold only, so an observation with "
                "fewer than 2 x min_positives positives falls back to the default point there",
            },
            "n_bins": n_bins,
            "by_source": by_source,
            "per_observation": per_obs,
        },
    }


def format_table(summary: dict, points: dict) -> str:
    """Markdown: overall ECE/Brier, then per observation T, points, flagged fraction and cross-fitted sens/spec."""
    s = summary
    lines = [
        f"studies {s['n']}, labelled cells {s['labelled_cells']}",
        "",
        "| | ECE | Brier |",
        "|---|---:|---:|",
        f"| before (T = 1) | {s['ece_before']} | {s['brier_before']} |",
        f"| after, in-sample | {s['ece_after']} | {s['brier_after']} |",
        f"| after, 2-fold cross-fitted | {s['ece_after_crossfit']} | {s['brier_after_crossfit']} |",
        "",
        "| observation | n+ / n- | T | method | positive | uncertain | flagged | sens / spec (val) "
        "| sens / spec (cross-fit) |",
        "|---|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for o in OBSERVATIONS:
        m, p = s["per_observation"][o], points[o]
        val = f"{_r(p['achieved_sensitivity'], 3)} / {_r(p['specificity'], 3)}"
        cf = f"{m['crossfit_sensitivity']} / {m['crossfit_specificity']}"
        lines.append(
            f"| {o} | {m['n_pos']} / {m['n_neg']} | {m['temperature']:.3f} | {p['method']} | "
            f"{p['positive']:.4f} | {p['uncertain']:.4f} | {_r(p['positive_rate'], 3)} | {val} | {cf} |"
        )
    return "\n".join(lines)


def _json_points(points: dict) -> dict:
    out = {}
    for o, p in points.items():
        out[o] = {k: (_r(v, 6) if isinstance(v, float) else v) for k, v in p.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="reportgen calibrate",
        description="Fit per-observation temperatures and operating points on validation data and store them "
        "in the checkpoint's metadata.json (never uses the training or test split).",
    )
    ap.add_argument("checkpoint", type=Path, help="checkpoint folder (metadata.json is updated in place)")
    ap.add_argument("--data-root", type=Path, default=None, help="folder holding the sources (e.g. ../shared/data)")
    ap.add_argument("--sources", default=",".join(SOURCE_FOLDERS), help="comma-separated; '' for none")
    ap.add_argument("--manifest", type=Path, action="append", default=[], help="extra JSONL/CSV manifest(s)")
    ap.add_argument("--split", default="val", choices=("val",), help="only validation data may calibrate")
    ap.add_argument("--target-sensitivity", type=float, default=0.9, help="for critical findings")
    ap.add_argument("--uncertain-sensitivity", type=float, default=0.97, help="lower edge of the uncertain band")
    ap.add_argument("--min-positives", type=int, default=10, help="fewer validation positives keep 0.5 / 0.3")
    ap.add_argument("--bins", type=int, default=10, help="reliability bins")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("calibration_report"), help="report folder (JSON + PNG)")
    ap.add_argument("--dry-run", action="store_true", help="write the report only, leave metadata.json alone")
    args = ap.parse_args(argv)
    if not 0.0 < args.target_sensitivity <= 1.0 or not 0.0 < args.uncertain_sensitivity <= 1.0:
        raise DataError("--target-sensitivity and --uncertain-sensitivity must be in (0, 1]")

    from reportgen.eval.plots import calibration, reliability_diagram
    from reportgen.inference.predictor import load_checkpoint

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not (args.checkpoint / "metadata.json").is_file():
        raise CheckpointError(f"{args.checkpoint} is not a checkpoint folder (no metadata.json)")
    predictor = load_checkpoint(args.checkpoint, device=args.device)
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    records = load_records(args.data_root, sources, args.manifest, args.split)
    logits = findings_logits(predictor, records, args.batch_size)
    labels = np.stack([r.labels for r in records]).astype(np.float64)
    groups = [f"{r.source}:{r.patient_id or r.id}" for r in records]
    targets = cal.default_targets(args.target_sensitivity)
    res = run_calibration(
        logits,
        labels,
        groups,
        [r.source for r in records],
        targets,
        args.uncertain_sensitivity,
        args.min_positives,
        args.bins,
    )
    command = " ".join(["reportgen", "calibrate", *(sys.argv[1:] if argv is None else [str(a) for a in argv])])
    data = [f"{name} ({args.split})" for name in [*sources, *("manifest" for _ in args.manifest)]]
    previous = predictor.meta.get("temperature", 1.0)
    summary = {"data": data, **res["summary"], "command": command}
    points = _json_points(res["points"])
    report = {
        "model": predictor.model_ref,
        "previous_temperature": previous,
        "temperature": [_r(t, 6) for t in res["temperature"]],
        "operating_points": points,
        "calibration": summary,
        "targets": targets,
        "dry_run": args.dry_run,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration.json").write_text(json.dumps(report, indent=2) + "\n")
    y = np.where(cal.known(labels), labels, np.nan)
    curves = {
        "before (T = 1)": calibration(res["probs"]["before"], y, args.bins),
        "after (in-sample)": calibration(res["probs"]["after"], y, args.bins),
        "after (2-fold cross-fitted)": calibration(res["probs"]["crossfit"], y, args.bins),
    }
    plot = reliability_diagram(
        curves,
        args.out / "reliability.png",
        f"Findings head, {args.split} split: {len(records)} studies",
    )
    if not args.dry_run:
        write_metadata(
            args.checkpoint,
            {"temperature": report["temperature"], "operating_points": points, "calibration": summary},
        )
    print(format_table(res["summary"], res["points"]))
    where = "dry run: metadata.json unchanged" if args.dry_run else f"updated {args.checkpoint / 'metadata.json'}"
    print(f"wrote {args.out / 'calibration.json'}, {plot}; {where}", file=sys.stderr)
    return 0
