"""Pointing game: does a checkpoint's heat-map peak fall inside the radiologist's box?

For every NIH ChestX-ray14 box (`bboxes_1024px.csv`: Image Index, Finding Label, Bbox [x, y, w, h]) whose
finding maps to a CheXpert observation (`reportgen.data.labelmaps.NIH_TO_CHEXPERT`), the heat map of that
observation is computed on the image and scored a hit when its peak lies inside the box grown by a
tolerance on every side (Zhang et al.'s pointing game, as used for CheXpert/NIH saliency). The baseline
"points" at the image centre: a map that only learned "the middle of the chest" scores the same.

Coordinates: the boxes are in the original 1024 x 1024 px frame; the sample's PNGs are smaller (long
side <= 512), so boxes are scaled per axis by (image size / 1024). The tolerance is given in the same
1024 px frame (default 15 px, i.e. 7.5 px on a 512 px PNG: about one cell of a 7x7 CAM grid is 73 px
at 512, so the tolerance only absorbs rounding, not a coarse grid).

Usage:
    python benchmarks/pointing_game.py --checkpoint runs/cxr-demo/best [--data-root ../shared/data] \\
        [--methods gradcam++,gradcam] [--tolerance 15] [--target-layer layer3] [--out pointing.json]

Prints a Markdown table (per finding and overall, hit rate with a Wilson 95% interval). Needs the real
data, so it is a benchmark, not a test. Which split each image belongs to is printed: the sample's boxes
are few and most of their images are in the training split, so read the figures as a sanity check.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from reportgen.data.labelmaps import NIH_TO_CHEXPERT

DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
NIH_FRAME = 1024.0  # the boxes' coordinate frame (original NIH image size), pixels


@dataclass(frozen=True)
class Box:
    """A finding box scaled to the image on disk: ``(x, y)`` top-left, ``w``/``h`` in that image's pixels."""

    image: str
    finding: str
    observation: str
    x: float
    y: float
    w: float
    h: float
    image_size: tuple[int, int]  # (width, height) of the PNG on disk


def inside(point: tuple[float, float], box: Box, tol: float) -> bool:
    """Whether ``point`` lies in ``box`` grown by ``tol`` pixels on every side (same frame as the box)."""
    px, py = point
    return box.x - tol <= px <= box.x + box.w + tol and box.y - tol <= py <= box.y + box.h + tol


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion; (nan, nan) for n == 0. Honest at the tiny n of the sample."""
    if n == 0:
        return float("nan"), float("nan")
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def load_boxes(root: Path) -> list[Box]:
    """Boxes of ``root/bboxes_1024px.csv`` whose image exists under ``root/images`` and whose finding maps."""
    from PIL import Image

    boxes = []
    with open(root / "bboxes_1024px.csv", newline="") as f:
        rows = csv.reader(f)
        next(rows)  # header; the file has trailing empty columns
        for row in rows:
            if len(row) < 6 or not row[0]:
                continue
            name, finding = row[0], row[1]
            obs = NIH_TO_CHEXPERT.get(finding)
            path = root / "images" / name
            if obs is None or not path.is_file():
                continue
            with Image.open(path) as im:
                width, height = im.size
            sx, sy = width / NIH_FRAME, height / NIH_FRAME
            x, y, w, h = (float(v) for v in row[2:6])
            boxes.append(Box(name, finding, obs, x * sx, y * sy, w * sx, h * sy, (width, height)))
    return boxes


def splits(root: Path) -> dict[str, str]:
    """Image file name -> the project's split for it (train/val), from the registered NIH loader."""
    from reportgen.data.datasets import load_dataset

    return {r.images[0].name: r.split for r in load_dataset("nih_cxr14", root)}


def run(checkpoint: str, root: Path, methods: list[str], tolerance: float, target_layer: str | None) -> dict:
    """Per-box results for each CAM method plus the centre baseline."""
    from reportgen.inference.heatmap import HeatmapExplainer
    from reportgen.inference.predictor import load_checkpoint

    predictor = load_checkpoint(checkpoint)
    boxes = load_boxes(root)
    split_of = splits(root)
    rows = []
    explainers = {m: HeatmapExplainer(predictor, method=m, target_layer=target_layer) for m in methods}
    for box in boxes:
        tol = tolerance * box.image_size[0] / NIH_FRAME
        centre = (box.image_size[0] / 2, box.image_size[1] / 2)
        row = {**asdict(box), "split": split_of.get(box.image), "centre_hit": inside(centre, box, tol)}
        for m, explainer in explainers.items():
            hm = explainer.explain(root / "images" / box.image, [box.observation])[box.observation]
            row[m] = {
                "hit": inside(hm.peak_xy, box, tol),
                "peak_xy": [round(v, 1) for v in hm.peak_xy],
                "side": hm.side,
                "confidence": round(hm.confidence, 3),
                "probability": round(hm.probability, 4),
            }
        rows.append(row)
    return {
        "checkpoint": str(checkpoint),
        "target_layer": next(iter(explainers.values())).target_name if explainers else None,
        "tolerance_px_1024": tolerance,
        "rows": rows,
    }


def table(result: dict, methods: list[str]) -> str:
    """Markdown: one line per finding and one overall, hit rate (hits/n) per method and the centre baseline."""

    def cell(hits: int, n: int) -> str:
        lo, hi = wilson(hits, n)
        return f"{hits}/{n} = {hits / n:.2f} [{lo:.2f}, {hi:.2f}]" if n else "-"

    rows = result["rows"]
    groups = sorted({r["finding"] for r in rows})
    head = "| finding (observation) | n | " + " | ".join(methods) + " | centre baseline |"
    lines = [head, "|" + "---|" * (len(methods) + 3)]
    for name, sel in [(g, [r for r in rows if r["finding"] == g]) for g in groups] + [("**overall**", rows)]:
        obs = f" ({sel[0]['observation']})" if sel and name != "**overall**" else ""
        cells = [cell(sum(r[m]["hit"] for r in sel), len(sel)) for m in methods]
        cells.append(cell(sum(r["centre_hit"] for r in sel), len(sel)))
        lines.append(f"| {name}{obs} | {len(sel)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pointing_game", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="checkpoint folder")
    ap.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT), help="folder holding nih_cxr14_sample/")
    ap.add_argument("--methods", default="gradcam++,gradcam", help="comma-separated CAM methods")
    ap.add_argument("--tolerance", type=float, default=15.0, help="box margin, pixels in the 1024 px NIH frame")
    ap.add_argument("--target-layer", default=None, help="backbone module to explain (default: last stage)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--out", default=None, help="write per-box JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    root = Path(args.data_root) / "nih_cxr14_sample"
    result = run(args.checkpoint, root, methods, args.tolerance, args.target_layer)
    print(
        f"pointing game: {args.checkpoint}, target layer {result['target_layer']}, "
        f"tolerance {args.tolerance:g} px (1024 px frame), {len(result['rows'])} boxes "
        f"({sum(r['split'] == 'train' for r in result['rows'])} on training-split images)\n"
    )
    print(table(result, methods))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
