"""`reportgen <command>`: a thin dispatcher; each command's logic lives in its own module.

Every `ReportgenError` (bad image, bad config, missing checkpoint file, ...) becomes one line,
`error: <what is wrong and what to do>`, and exit status 2: never a traceback for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from reportgen.constants import DISCLAIMER
from reportgen.errors import ReportgenError

COMMANDS = {
    "generate": ("reportgen.cli", "generate_main", "draft reports for studies (PNG/JPEG/DICOM)"),
    "train": ("reportgen.cli", "train_main", "train from a YAML experiment config"),
    "export": ("reportgen.cli", "export_main", "copy a trained checkpoint for shipping (optionally fp16)"),
    "calibrate": (
        "reportgen.inference.calibrate_cli",
        "main",
        "fit findings-head temperatures + operating points on validation data",
    ),
    "label": ("reportgen.eval.labeler", "main", "label report texts with the 14 CheXpert observations"),
    "evaluate": ("reportgen.eval.evaluate", "main", "NLG + clinical-efficacy metrics for predictions"),
    "benchmark": ("reportgen.eval.benchmark", "main", "run a checkpoint and baselines over a dataset split"),
    "serve": ("reportgen.api.serve", "main", "start the draft-report HTTP service"),
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ""}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: reportgen <command> [options]\n\ncommands:")
        for name, (_, _, help_) in COMMANDS.items():
            print(f"  {name:<10} {help_}")
        print(f"\n{DISCLAIMER}")
        return 0 if argv else 2
    if argv[0] == "--version":
        from reportgen import __version__

        print(__version__)
        return 0
    if argv[0] not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach a hub; fail fast if something tries
    module, func, _ = COMMANDS[argv[0]]
    try:
        return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)
    except ReportgenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# generate ---------------------------------------------------------------------------------------------


def _studies(paths: list[str], each: bool) -> list[list[Path]]:
    """Folders are one study each (their image files, sorted); loose files form one study, or one each."""
    from reportgen.errors import InvalidImageError

    studies: list[list[Path]] = []
    loose: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise InvalidImageError(f"{p} holds no image files (.png, .jpg, .dcm)")
            studies.append(files)
        elif p.is_file():
            loose.append(p)
        else:
            raise InvalidImageError(f"{p}: no such file or folder")
    if loose:
        studies += [[f] for f in loose] if each else [loose]
    return studies


def _format_text(study: list[Path], draft, untrained: bool) -> str:
    lines = [f"Study: {', '.join(p.name for p in study)}"]
    if untrained:
        lines.append("WARNING: this checkpoint is UNTRAINED (demo/test only): the text below is meaningless.")
    lines += [f"FINDINGS: {draft.findings}"]
    if draft.impression:
        lines.append(f"IMPRESSION: {draft.impression}")
    if draft.flagged_sentences:
        lines.append(f"REVIEW (low-confidence sentences): {' | '.join(draft.flagged_sentences)}")
    shown = [
        f"{k} {v.probability:.2f} ({v.status})"
        for k, v in draft.labels.items()
        if v.status in ("positive", "uncertain")
    ]
    lines.append(f"LABELS (positive/uncertain): {', '.join(shown) or 'none'}")
    unassessed = [k for k, v in draft.labels.items() if v.status == "not_assessed"]
    if unassessed:
        lines.append(f"NOT ASSESSED (no validation evidence for this model): {', '.join(unassessed)}")
    lines.append(
        f"TRIAGE: {draft.triage.priority}" + (f" ({'; '.join(draft.triage.reasons)})" if draft.triage.reasons else "")
    )
    lines.append(f"MODEL: {draft.model['name']} {draft.model['version']} sha256:{draft.model['sha256'][:12]}")
    lines.append(draft.disclaimer)
    return "\n".join(lines)


def generate_main(argv: list[str]) -> int:
    from tqdm import tqdm

    from reportgen.inference.predictor import load_checkpoint

    ap = argparse.ArgumentParser(prog="reportgen generate", description="Draft reports for chest X-ray studies.")
    ap.add_argument("inputs", nargs="+", help="image files (one study) or folders (one study each)")
    ap.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped one)")
    ap.add_argument("--format", choices=("text", "json"), default="text")
    ap.add_argument("--each", action="store_true", help="treat every file as its own one-view study")
    ap.add_argument("--view", action="append", default=None, help="view tag per file, in order (PA, AP, LL, ...)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--heatmaps", metavar="DIR", default=None, help="write DIR/<study>/<Observation>.png + .npy maps")
    ap.add_argument("--heatmap-all", action="store_true", help="maps for all 14 observations, not only flagged ones")
    ap.add_argument("--heatmap-method", default="gradcam++", help="CAM method (gradcam, gradcam++, xgradcam, ...)")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    studies = _studies(args.inputs, args.each)
    predictor = load_checkpoint(args.checkpoint)
    untrained = predictor.info["untrained"]
    explainer = None
    if args.heatmaps:
        from reportgen.inference.heatmap import HeatmapExplainer, write_study_heatmaps
        from reportgen.inference.laterality import check_draft

        explainer = HeatmapExplainer(predictor, method=args.heatmap_method)
    for i, study in enumerate(tqdm(studies, desc="studies", file=sys.stderr, disable=len(studies) < 3)):
        views = args.view if args.view and len(studies) == 1 else None
        draft = predictor.generate(study, views)
        extra: dict = {}
        if explainer is not None:
            wanted = [o for o, lp in draft.labels.items() if args.heatmap_all or lp.status != "negative"]
            stem = study[0].stem if len(study) == 1 else study[0].parent.name
            maps, paths = write_study_heatmaps(explainer, study, wanted, Path(args.heatmaps) / stem, views)
            extra["heatmaps"] = {o: str(p) for o, p in paths.items()}
            extra["laterality_flags"] = [f.to_dict() for f in check_draft(draft.findings, draft.impression, maps)]
        if args.format == "json":
            out = {"study": [str(p) for p in study], **draft.to_dict(), **extra}
            if untrained:
                out["warning"] = "untrained checkpoint (demo/test only)"
            print(json.dumps(out), flush=True)
        else:
            text = _format_text(study, draft, untrained)
            if explainer is not None:
                text += "\nHEATMAPS: " + (", ".join(extra["heatmaps"].values()) or "none")
                text += "".join(f"\nLATERALITY CHECK: {f['reason']}" for f in extra["laterality_flags"])
            print(("\n" if i else "") + text, flush=True)
    return 0


# train ------------------------------------------------------------------------------------------------


def train_main(argv: list[str]) -> int:
    from reportgen.config import load_config
    from reportgen.training.trainer import train

    ap = argparse.ArgumentParser(
        prog="reportgen train", description="Train from a YAML experiment config; --section.key=value overrides it."
    )
    ap.add_argument("config", help="experiment YAML")
    ap.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt")
    args, overrides = ap.parse_known_args(argv)
    cfg = load_config(args.config, overrides)
    best = train(cfg, resume=args.resume, command=" ".join(["reportgen", "train", *argv]))
    print(f"best checkpoint (selected on validation): {best}")
    return 0


# export -----------------------------------------------------------------------------------------------


def export_main(argv: list[str]) -> int:
    import json

    from reportgen.checkpoint import load_parts, save_checkpoint

    ap = argparse.ArgumentParser(prog="reportgen export", description="Re-write a checkpoint folder for shipping.")
    ap.add_argument("source", help="checkpoint folder, e.g. runs/NAME/best")
    ap.add_argument("dest", help="output folder, e.g. checkpoints/NAME")
    ap.add_argument("--half", action="store_true", help="store fp16 weights (half the size; loaded back as fp32)")
    args = ap.parse_args(argv)
    model, cfg, tokenizer, meta = load_parts(args.source)
    keep = {k: v for k, v in meta.items() if k not in ("sha256", "weights_dtype")}
    keep["exported_from"] = {"path": str(args.source), "sha256": meta.get("sha256")}
    out = save_checkpoint(args.dest, model, cfg, tokenizer, keep, half=args.half)
    size = (out / "model.safetensors").stat().st_size / 2**20
    print(json.dumps({"checkpoint": str(out), "weights_mib": round(size, 2), "sha256": load_parts(out)[3]["sha256"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
