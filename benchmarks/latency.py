"""Inference latency of one 2-view study (frontal + lateral PNG) on the CPU, per torch thread count.

What a user waits for after upload: reading both files, preprocessing, encoding, the findings head
and text generation (`Predictor.generate`); and, for comparison, the labels alone
(`Predictor.predict_probabilities`, no decoding). Each setting does `--warmup` untimed runs, then
`--runs` timed ones; p50/p95 in milliseconds. Peak RSS is the process high-water mark
(`resource.getrusage(...).ru_maxrss`, KiB on Linux) after everything ran: an upper bound of what
one serving process needs.

Usage:
    python benchmarks/latency.py [--checkpoint checkpoints/<name>] [--images frontal.png lateral.png] \\
        [--runs 20] [--warmup 3] [--threads 1,2]

Without --images two 512 px synthetic chest phantoms are written to a temp folder
(`reportgen.testing.make_png`). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def time_calls(fn: Callable[[], object], runs: int, warmup: int) -> np.ndarray:
    """Wall-clock seconds of `runs` calls of `fn` after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    out = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - start
    return out


def peak_rss_mib() -> float:
    """Process peak resident set size in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped one)")
    ap.add_argument("--images", nargs=2, type=Path, default=None, metavar=("FRONTAL", "LATERAL"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    args = ap.parse_args(argv)

    import torch

    from reportgen.inference.predictor import load_checkpoint

    if args.images:
        images = [str(p) for p in args.images]
    else:
        from reportgen.testing import make_png

        tmp = Path(tempfile.mkdtemp(prefix="reportgen_latency_"))
        images = [
            str(make_png(tmp / "frontal.png", size=(512, 512), seed=1)),
            str(make_png(tmp / "lateral.png", size=(512, 512), seed=2)),
        ]
    views = ["PA", "LL"]
    rss_before = peak_rss_mib()
    predictor = load_checkpoint(args.checkpoint, device=args.device)
    info = predictor.info
    print(
        f"model: {info['name']} {info['version']} (sha256 {info['sha256'][:12]})"
        f"{' UNTRAINED' if info['untrained'] else ''}; torch {torch.__version__}; "
        f"{args.runs} runs after {args.warmup} warmup; device {args.device}; 2-view study, "
        f"{'given' if args.images else 'synthetic 512 px'} PNGs"
    )
    print("\n| task | threads | p50 ms | p95 ms | mean ms | min ms |\n|---|---:|---:|---:|---:|---:|")
    tasks = {
        "generate (read+encode+labels+text)": lambda: predictor.generate(images, views),
        "labels only (read+encode+head)": lambda: predictor.predict_probabilities([images]),
    }
    for threads in [int(t) for t in args.threads.split(",") if t.strip()]:
        torch.set_num_threads(threads)
        for name, fn in tasks.items():
            ms = time_calls(fn, args.runs, args.warmup) * 1000
            print(
                f"| {name} | {threads} | {np.percentile(ms, 50):.1f} | {np.percentile(ms, 95):.1f} | "
                f"{ms.mean():.1f} | {ms.min():.1f} |"
            )
    print(f"\npeak RSS: {peak_rss_mib():.0f} MiB (before loading the checkpoint: {rss_before:.0f} MiB)")
    return 0


if __name__ == "__main__":
    from reportgen.errors import ReportgenError

    try:
        raise SystemExit(main())
    except ReportgenError as exc:
        raise SystemExit(f"error: {exc}") from None
