"""Print what each dataset loader finds in a data root: studies per split and label counts.

Usage:
    python benchmarks/dataset_summary.py --data-root ../shared/data [--require-images]

Layout expected under the root (the project's shared data folder): `iu_xray/annotation.json` (+
`chexbert_labels_trainval.csv`), `nih_cxr14_sample/`, `nlm_tb/`, `covid_chestxray/`. Sources that
are absent are reported and skipped. Prints counts only: no ids, no report text.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np

from reportgen.constants import OBSERVATIONS
from reportgen.data.datasets import SPLITS, StudyRecord, load_dataset

#: (registry name, folder under the data root, extra loader options relative to that folder).
SOURCES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("iu_xray", "iu_xray", {"labels_csv": "chexbert_labels_trainval.csv"}),
    ("nih_cxr14", "nih_cxr14_sample", {}),
    ("nlm_tb", "nlm_tb", {}),
    ("covid_cxr", "covid_chestxray", {}),
)


def summarize(records: list[StudyRecord]) -> str:
    """A plain-text table: studies/images/patients per split, then label counts (pos/neg/unc/NaN)."""
    lines = [f"  {'split':<6} {'studies':>8} {'images':>7} {'patients':>8} {'labelled':>8}"]
    for split in SPLITS:
        recs = [r for r in records if r.split == split]
        if not recs:
            continue
        lines.append(
            f"  {split:<6} {len(recs):>8} {sum(len(r.images) for r in recs):>7} "
            f"{len({r.patient_id for r in recs}):>8} {sum(r.labels is not None for r in recs):>8}"
        )
    labelled = [r.labels for r in records if r.labels is not None]
    if labelled:
        lab = np.stack(labelled)
        lines.append(f"  {'observation':<28} {'pos':>5} {'neg':>5} {'unc':>5} {'nan':>5}   (all splits)")
        for j, obs in enumerate(OBSERVATIONS):
            col = lab[:, j]
            lines.append(
                f"  {obs:<28} {int((col == 1).sum()):>5} {int((col == 0).sum()):>5} "
                f"{int((col == -1).sum()):>5} {int(np.isnan(col).sum()):>5}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dataset_summary", description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--require-images", action="store_true", help="fail on a missing image file")
    args = parser.parse_args(argv)
    for name, folder, extra in SOURCES:
        root = args.data_root / folder
        if not root.exists():
            print(f"{name}: not found at {root}, skipped")
            continue
        kw: dict[str, object] = {k: root / v for k, v in extra.items() if (root / v).exists()}
        if name != "iu_xray":  # IU images are not available on every machine
            kw["require_images"] = args.require_images
        start = time.perf_counter()
        records = load_dataset(name, root, **kw)
        elapsed = time.perf_counter() - start
        sources = Counter(r.meta.get("site", "") for r in records)
        site = f" sites={dict(sources)}" if len(sources) > 1 else ""
        print(f"{name}: {len(records)} studies in {elapsed:.2f}s{site}")
        print(summarize(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
