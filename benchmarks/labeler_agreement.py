"""Agreement of the rule labeler with CheXbert's machine labels on IU X-Ray train+val reports.

Usage:
    python benchmarks/labeler_agreement.py --data-root ../shared/data [--show 5 --observation Edema]

Reads `iu_xray/annotation.json` (R2Gen format: train/val reports by id) and
`iu_xray/chexbert_labels_trainval.csv` (CheXbert labels; its column order differs from OBSERVATIONS, so columns
are mapped by name), labels the same reports with `reportgen.eval.labeler.label_reports`, and prints, per
observation and micro-averaged:

* F1 of the **positive** class (label == 1), the one CE metrics use;
* F1 of the **mentioned** class (label not blank), i.e. agreement on what the report talks about;
* a 4x4 confusion summary (1 / 0 / -1 / blank) over all cells.

CheXbert is itself a model, not a radiologist; disagreements are worth reading (`--show`) before changing a
rule, and rules should only change where the clinical reading is clear.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from reportgen.eval.labeler import label_reports

from reportgen.constants import OBSERVATIONS

CLASSES = (1.0, 0.0, -1.0, None)  # None = blank / NaN
CLASS_NAMES = ("pos", "neg", "unc", "blank")


def f1(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float, float, int]:
    """Precision, recall, F1 and support of boolean predictions `pred` against boolean references `ref`."""
    tp = int(np.sum(pred & ref))
    fp = int(np.sum(pred & ~ref))
    fn = int(np.sum(~pred & ref))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, score, int(ref.sum())


def class_of(values: np.ndarray) -> np.ndarray:
    """Index into CLASSES for every cell."""
    out = np.full(values.shape, 3, dtype=np.int64)
    for k, c in enumerate(CLASSES[:3]):
        out[values == c] = k
    return out


def load_iu(data_root: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Ids, report texts and CheXbert reference labels (n, 14; OBSERVATIONS order, NaN blank)."""
    iu = data_root / "iu_xray"
    ann = json.loads((iu / "annotation.json").read_text())
    reports = {r["id"]: r["report"] for split in ("train", "val") for r in ann[split]}
    with (iu / "chexbert_labels_trainval.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    id_col = next(c for c in rows[0] if c.lower() in ("id", "study_id", "ids"))
    missing = [o for o in OBSERVATIONS if o not in rows[0]]
    if missing:
        raise SystemExit(f"CheXbert CSV lacks columns {missing}")
    ids, texts, ref = [], [], []
    for row in rows:
        if row[id_col] not in reports:
            continue
        ids.append(row[id_col])
        texts.append(reports[row[id_col]])
        ref.append([float(row[o]) if row[o].strip() else np.nan for o in OBSERVATIONS])
    return ids, texts, np.asarray(ref, dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--show", type=int, default=0, help="print this many disagreements per observation")
    parser.add_argument("--observation", default=None, help="only show disagreements for this observation")
    args = parser.parse_args(argv)

    ids, texts, ref = load_iu(args.data_root)
    pred = label_reports(texts)
    print(f"{len(ids)} IU X-Ray train+val reports matched to CheXbert labels\n")

    header = (
        f"{'observation':28s} {'pos P':>6s} {'pos R':>6s} {'pos F1':>6s} {'n_pos':>5s}   {'men F1':>6s} {'n_men':>5s}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for j, name in enumerate(OBSERVATIONS):
        p, r, f, n = f1(pred[:, j] == 1, ref[:, j] == 1)
        _, _, fm, nm = f1(~np.isnan(pred[:, j]), ~np.isnan(ref[:, j]))
        rows.append((name, p, r, f, n, fm, nm))
        print(f"{name:28s} {p:6.3f} {r:6.3f} {f:6.3f} {n:5d}   {fm:6.3f} {nm:5d}")
    print("-" * len(header))
    for label, cols in (("micro (14)", list(range(14))), ("micro (13, no 'No Finding')", list(range(1, 14)))):
        p, r, f, n = f1((pred[:, cols] == 1).ravel(), (ref[:, cols] == 1).ravel())
        _, _, fm, nm = f1((~np.isnan(pred[:, cols])).ravel(), (~np.isnan(ref[:, cols])).ravel())
        print(f"{label:28s} {p:6.3f} {r:6.3f} {f:6.3f} {n:5d}   {fm:6.3f} {nm:5d}")
    macro = np.mean([row[3] for row in rows])
    print(f"{'macro (14) pos F1':28s} {'':6s} {'':6s} {macro:6.3f}")

    cp, cr = class_of(pred), class_of(ref)
    print("\nconfusion over all cells (rows: CheXbert, columns: rule labeler)")
    print(f"{'':8s}" + "".join(f"{c:>8s}" for c in CLASS_NAMES))
    for a, an in enumerate(CLASS_NAMES):
        print(f"{an:8s}" + "".join(f"{int(np.sum((cr == a) & (cp == b))):8d}" for b in range(4)))
    exact = float(np.mean(cp == cr))
    print(f"exact 4-way agreement: {exact:.3f}")

    if args.show:
        names = [args.observation] if args.observation else list(OBSERVATIONS)
        for name in names:
            j = OBSERVATIONS.index(name)
            bad = np.nonzero(cp[:, j] != cr[:, j])[0][: args.show]
            for i in bad:
                verdict = f"chexbert={CLASS_NAMES[cr[i, j]]} rules={CLASS_NAMES[cp[i, j]]}"
                print(f"\n[{name}] {verdict} id={ids[i]}\n  {texts[i]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
