"""Time `reportgen evaluate` on the IU X-Ray test split with the most-frequent-train-report baseline.

The baseline predicts, for every test study, the single most frequent report of the training split
(a strong "normal study" prior on IU X-Ray). Its scores are the floor any trained model must beat,
and the run times show what evaluation costs (METEOR's JVM start dominates).

Usage:
    python benchmarks/evaluate_speed.py [--annotation ../shared/data/iu_xray/annotation.json] [--out DIR]

Prints one block per protocol (metrics + wall time) and writes the metrics JSON files to --out.
Needs the real data (not part of the test suite).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from reportgen.eval.clinical import HEADLINE_KEYS
from reportgen.eval.evaluate import main as evaluate_main
from reportgen.eval.nlg import NLG_KEYS

DEFAULT_ANNOTATION = Path(__file__).resolve().parents[2] / "shared" / "data" / "iu_xray" / "annotation.json"


def write_baseline(annotation: Path, out_dir: Path) -> tuple[Path, Path, int]:
    """Write predictions/references JSONL for the test split; return their paths and the count."""
    ann = json.loads(annotation.read_text(encoding="utf-8"))
    most_common, _ = Counter(ex["report"] for ex in ann["train"]).most_common(1)[0]
    preds, refs = out_dir / "baseline_predictions.jsonl", out_dir / "test_references.jsonl"
    with preds.open("w") as fp, refs.open("w") as fr:
        for ex in ann["test"]:
            fp.write(json.dumps({"id": ex["id"], "report": most_common}) + "\n")
            fr.write(json.dumps({"id": ex["id"], "report": ex["report"]}) + "\n")
    return preds, refs, len(ann["test"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotation", type=Path, default=DEFAULT_ANNOTATION)
    parser.add_argument("--out", type=Path, default=None, help="folder for the metrics JSON (default: temp)")
    args = parser.parse_args()
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="reportgen_eval_bench_"))
    out_dir.mkdir(parents=True, exist_ok=True)
    preds, refs, n = write_baseline(args.annotation, out_dir)
    print(f"IU X-Ray test: {n} reports; prediction = most frequent train report")
    for protocol in ("r2gen", "raw"):
        out = out_dir / f"metrics_{protocol}.json"
        argv = ["--predictions", str(preds), "--references", str(refs), "--protocol", protocol, "-o", str(out)]
        start = time.perf_counter()
        evaluate_main(argv)
        wall = time.perf_counter() - start
        result = json.loads(out.read_text())
        print(
            f"\n== protocol {protocol}: {wall:.1f} s wall (nlg {result['seconds']['nlg']:.1f} s, "
            f"ce {result['seconds'].get('ce', 0):.1f} s) =="
        )
        shown = list(NLG_KEYS) if protocol != "r2gen" else [*NLG_KEYS, *HEADLINE_KEYS]  # CE is protocol-free
        for key in shown:
            value, ci = result["metrics"][key], result.get("ci95", {}).get(key)
            text = "n/a" if value is None else f"{value:.4f}"
            print(f"  {key:<30} {text}" + (f"  [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""))
    print(f"\nmetrics JSON: {out_dir}")


if __name__ == "__main__":
    main()
