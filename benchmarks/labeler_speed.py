"""Throughput of the rule labeler, single process: reports per second.

Usage:
    python benchmarks/labeler_speed.py --data-root ../shared/data [--n 5000 --runs 5]

Uses the IU X-Ray train+val+test reports from `iu_xray/annotation.json` (repeated to `--n` reports) or, when the
data folder is missing, synthetic report-like sentences, and prints the median of `--runs` timed runs after one
warm-up (pattern compilation is excluded: it happens once per process). Target: >= 2,000 reports/s.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from reportgen.eval.labeler import RuleLabeler

_SYNTHETIC = (
    "The heart size is normal.",
    "No pneumothorax, pleural effusion or focal consolidation.",
    "Mild bibasilar atelectasis versus scarring.",
    "Stable cardiomediastinal silhouette.",
    "There is a right internal jugular catheter with tip in the SVC.",
    "Possible small left pleural effusion.",
    "No acute bony abnormality.",
    "Degenerative changes of the thoracic spine.",
)


def load_texts(data_root: Path, n: int) -> tuple[list[str], str]:
    """`n` report texts (real IU reports when available) and a description of their source."""
    path = data_root / "iu_xray" / "annotation.json"
    if path.is_file():
        ann = json.loads(path.read_text())
        base = [r["report"] for split in ("train", "val", "test") for r in ann.get(split, [])]
        source = f"IU X-Ray annotation.json ({len(base)} distinct reports)"
    else:
        rng = random.Random(0)
        base = [" ".join(rng.sample(_SYNTHETIC, 5)) for _ in range(500)]
        source = "synthetic sentences (IU data not found)"
    return [base[i % len(base)] for i in range(n)], source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--n", type=int, default=5000, help="reports per run")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    texts, source = load_texts(args.data_root, args.n)
    t0 = time.perf_counter()
    labeler = RuleLabeler()
    compile_s = time.perf_counter() - t0
    labeler.label_many(texts[:200])  # warm-up
    rates = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        labeler.label_many(texts)
        rates.append(len(texts) / (time.perf_counter() - t0))
    mean_chars = sum(len(t) for t in texts) / len(texts)
    print(f"source: {source}; {len(texts)} reports per run, mean {mean_chars:.0f} characters")
    print(f"pattern compilation: {compile_s * 1000:.1f} ms (once per process)")
    print(f"runs (reports/s): {', '.join(f'{r:,.0f}' for r in rates)}")
    print(f"median: {statistics.median(rates):,.0f} reports/s, single process")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
