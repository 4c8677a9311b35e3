"""`reportgen benchmark`: run a checkpoint and the baselines over a dataset split and score them all.

    reportgen benchmark --dataset iu_xray --root ../shared/data/iu_xray --split test \\
        --checkpoint checkpoints/<name> --protocol both --out runs/bench_iu

writes into `--out`:

* `references.jsonl` and `predictions_<system>.jsonl` (``{"id", "report"}`` per line, reference
  order; `reportgen evaluate` reads them as they are),
* `metrics.json`: per system and protocol the `evaluate_reports` output, plus what is needed to
  reproduce the run (model name/version/sha256, a hash of the data, protocol, split, counts, times,
  skipped systems and why),
* `results.md`: one Markdown table (systems as rows), and `per_observation_f1.png`.

Systems (see `reportgen.eval.baselines`) that cannot run here are skipped with a reason recorded in
both files rather than failing the run: no checkpoint, or image files missing (IU X-Ray without its
images still gets the text-only most_frequent and label_oracle rows).

Resuming: predictions are appended per batch to `predictions_<system>.partial.jsonl`, whose first
line is a key of the system, checkpoint and data; a rerun with the same key skips the ids already
there (so an interrupted run, or a `--limit` run followed by a full one, only does the rest). The
partial file is a cache and is kept; a different key starts it afresh.

Report texts are never printed; only counts, names and scores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from reportgen.eval.baselines import (
    SystemContext,
    available_systems,
    create_system,
    missing_images,
    record_report,
)

from reportgen.constants import OBSERVATIONS
from reportgen.errors import DataError

PROTOCOLS: dict[str, tuple[str, ...]] = {"r2gen": ("r2gen",), "raw": ("raw",), "both": ("r2gen", "raw")}
DEFAULT_SYSTEMS = ("model", "most_frequent", "nearest_neighbour", "label_oracle")
#: Table columns: (metric key, header). CE columns use the uncertain-as-negative convention.
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("nlg/bleu1", "BLEU-1"),
    ("nlg/bleu2", "BLEU-2"),
    ("nlg/bleu3", "BLEU-3"),
    ("nlg/bleu4", "BLEU-4"),
    ("nlg/meteor", "METEOR"),
    ("nlg/rouge_l", "ROUGE-L"),
    ("nlg/cider", "CIDEr"),
    ("ce/f1_micro_14_uneg", "CE F1 micro-14"),
    ("ce/f1_macro_14_uneg", "CE F1 macro-14"),
    ("ce/f1_micro_5_uneg", "CE F1 micro-5"),
    ("ce/f1_macro_5_uneg", "CE F1 macro-5"),
)


# ------------------------------------------------------------------------------------------ data + hashes


def _relative(path: Path, base: Path) -> str:
    """`path` relative to `base` when it lies under it (so hashes travel between machines), else as given."""
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)


def data_hash(records: Sequence, root: str | os.PathLike) -> str:
    """sha256 of the sorted (id, image paths, report) list: names exactly which studies were scored.

    Image paths are taken relative to the data folder, so the same data gives the same hash wherever
    it is mounted.
    """
    base = Path(root)
    base = base.parent if base.is_file() else base
    rows = sorted([r.id, [_relative(p, base) for p in r.images], record_report(r)] for r in records)
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode("utf-8")).hexdigest()


def write_reports_jsonl(path: Path, reports: Mapping[str, str]) -> Path:
    """Write ``{"id", "report"}`` lines in mapping order (atomically: temp file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for key, report in reports.items():
            fh.write(json.dumps({"id": key, "report": report}, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


class CachedLabeler:
    """`label_reports` with a per-run memo: every system is scored against the same references under
    one or two protocols, and labelling each reference text once is enough."""

    def __init__(self, labeler: Callable[[Sequence[str]], np.ndarray] | None = None) -> None:
        if labeler is None:
            from reportgen.eval.labeler import label_reports as labeler
        self._labeler = labeler
        self._memo: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if todo:
            for text, row in zip(todo, np.asarray(self._labeler(todo), dtype=np.float32), strict=True):
                self._memo[text] = row
        if not texts:
            return np.zeros((0, len(OBSERVATIONS)), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts])


# ----------------------------------------------------------------------------------------------- resume


def read_partial(path: Path, key: str) -> dict[str, str]:
    """Predictions already in a partial file written under `key` ({} if absent or written under another key).

    A torn last line (the run was killed mid-write) is ignored: that batch is simply redone.
    """
    if not path.is_file():
        return {}
    done: dict[str, str] = {}
    with path.open(encoding="utf-8") as fh:
        header = fh.readline()
        try:
            if json.loads(header).get("resume_key") != key:
                return {}
        except (json.JSONDecodeError, AttributeError):
            return {}
        for line in fh:
            try:
                obj = json.loads(line)
                done[str(obj["id"])] = str(obj["report"])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return done


def run_system(
    system,
    records: Sequence,
    partial: Path,
    key: str,
    batch_size: int,
    progress: bool = True,
) -> tuple[dict[str, str], int]:
    """Predictions for `records` in their order, resuming from `partial`; returns them and how many were new."""
    from tqdm import tqdm

    done = read_partial(partial, key)
    if not done:
        partial.write_text(json.dumps({"resume_key": key}) + "\n", encoding="utf-8")
    elif not partial.read_text(encoding="utf-8").endswith("\n"):
        with partial.open("a", encoding="utf-8") as fh:  # a torn last line must not swallow the next one
            fh.write("\n")
    todo = [r for r in records if r.id not in done]
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    with partial.open("a", encoding="utf-8") as fh:
        for batch in tqdm(
            batches, desc=system.name, unit="batch", file=sys.stderr, disable=not progress or not batches
        ):
            reports = system(batch)
            for rec, report in zip(batch, reports, strict=True):
                done[rec.id] = report
                fh.write(json.dumps({"id": rec.id, "report": report}, ensure_ascii=False) + "\n")
            fh.flush()
    return {r.id: done[r.id] for r in records}, len(todo)


def resume_key(system: str, model_sha: str | None, dataset: str, split: str, train_hash: str | None) -> str:
    """What a cached prediction depends on: the system, the checkpoint, the data and (for baselines) the train split."""
    payload = {"system": system, "model": model_sha, "dataset": dataset, "split": split, "train": train_hash}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------- outputs


def _cell(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def format_results_md(summary: Mapping) -> str:
    """Markdown report: a header naming data, protocol(s) and model, one table row per (system, protocol)."""
    info = summary["benchmark"]
    model = info.get("model")
    model_line = (
        f"{model['name']} {model['version']} (sha256 {model['sha256'][:12]})"
        + (" UNTRAINED" if model.get("untrained") else "")
        if model
        else "none (baselines only)"
    )
    lines = [
        f"# reportgen benchmark: {info['dataset']} / {info['split']} ({info['counts']['studies']} studies)",
        "",
        f"- protocol: {', '.join(info['protocols'])} (NLG text rules: {info['text_rules']})",
        f"- model version: {model_line}",
        f"- data sha256: {info['data_sha256'][:16]}",
        "- CE: CheXpert labels of prediction vs reference by reportgen's rule labeler; uncertain = negative (uneg)",
        f"- run: {info['time']}",
        "",
    ]
    header = ["system", "protocol", *[h for _, h in TABLE_COLUMNS]]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * len(TABLE_COLUMNS)) + "|"]
    for system, per_protocol in summary["systems"].items():
        for protocol, result in per_protocol.items():
            metrics = result["metrics"]
            lines.append(
                "| " + " | ".join([system, protocol, *[_cell(metrics.get(k)) for k, _ in TABLE_COLUMNS]]) + " |"
            )
    if info["skipped"]:
        lines += ["", "Skipped systems:", ""] + [f"- **{k}**: {v}" for k, v in info["skipped"].items()]
    other = [w for w in info["warnings"] if not w.startswith("skipped ")]  # skips are listed above
    if other:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in other]
    return "\n".join(lines) + "\n"


def per_observation_f1(summary: Mapping, mode: str = "uneg") -> dict[str, dict[str, float]]:
    """``{system: {observation: F1}}`` from each system's first protocol (CE does not depend on the protocol)."""
    out: dict[str, dict[str, float]] = {}
    for system, per_protocol in summary["systems"].items():
        result = next(iter(per_protocol.values()))
        rows = result.get("per_observation") or []
        out[system] = {row["observation"]: row["f1"] for row in rows if row["mode"] == mode}
    return {k: v for k, v in out.items() if v}


# ------------------------------------------------------------------------------------------------- run


@dataclass
class BenchmarkConfig:
    """Everything `run_benchmark` needs; the CLI fills it from its arguments."""

    dataset: str
    root: str
    out: str
    split: str = "test"
    checkpoint: str | None = None
    systems: tuple[str, ...] = DEFAULT_SYSTEMS
    protocol: str = "r2gen"
    batch_size: int = 8
    limit: int | None = None
    bootstrap: int = 1000
    seed: int = 0
    meteor: bool = True
    text_rules: str | None = None  # "iu_xray" | "mimic_cxr"; default from the dataset
    vocab: str | None = None
    progress: bool = True
    device: str = "cpu"
    labeler: Callable[[Sequence[str]], np.ndarray] | None = field(default=None, repr=False)


def run_benchmark(cfg: BenchmarkConfig) -> dict:
    """Run every requested system over the split, score it and write the output folder; return metrics.json's dict.

    Raises:
        DataError: Bad arguments, unusable data, or no system could run.
    """
    from reportgen.eval.evaluate import evaluate_reports, load_vocab
    from reportgen.eval.plots import per_observation_f1_chart

    from reportgen.data.datasets import load_dataset
    from reportgen.text.clean import clean_report

    started = time.perf_counter()
    if cfg.protocol not in PROTOCOLS:
        raise DataError(f"unknown protocol {cfg.protocol!r}; choose from {', '.join(PROTOCOLS)}")
    if cfg.batch_size < 1:
        raise DataError("--batch-size must be >= 1")
    if cfg.bootstrap < 0:
        raise DataError("--bootstrap must be >= 0")
    if cfg.limit is not None and cfg.limit < 1:
        raise DataError("--limit must be >= 1")
    unknown = [s for s in cfg.systems if s not in available_systems()]
    if unknown or not cfg.systems:
        raise DataError(f"unknown system(s) {unknown}; choose from {', '.join(available_systems())}")
    text_rules = cfg.text_rules or ("iu_xray" if cfg.dataset == "iu_xray" else "mimic_cxr")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    records = load_dataset(cfg.dataset, cfg.root, split=cfg.split)
    empty = [r for r in records if not record_report(r)]
    if empty:
        notes.append(f"{len(empty)} {cfg.split} studies have no report text and were left out")
    records = [r for r in records if record_report(r)]
    if cfg.limit is not None:
        records = records[: cfg.limit]
    if not records:
        raise DataError(f"{cfg.dataset}: split {cfg.split!r} has no study with a report at {cfg.root}")
    needs_train = any(s in ("most_frequent", "nearest_neighbour") for s in cfg.systems)
    train = load_dataset(cfg.dataset, cfg.root, split="train") if needs_train else []
    train_hash = data_hash(train, cfg.root) if train else None

    predictor = None
    if cfg.checkpoint:
        from reportgen.inference.predictor import load_checkpoint

        predictor = load_checkpoint(cfg.checkpoint, device=cfg.device)
    model = dict(predictor.model_ref, untrained=predictor.info["untrained"]) if predictor else None
    if model and model["untrained"]:
        notes.append("the checkpoint is UNTRAINED (test/demo weights): its rows are meaningless")

    labeler = CachedLabeler(cfg.labeler)
    ctx = SystemContext(
        train=train,
        predictor=predictor,
        batch_size=cfg.batch_size,
        clean=lambda t: clean_report(t, "clinical"),
        labeler=labeler,
        progress=cfg.progress,
        with_impression=any(r.impression for r in records),
    )
    if not ctx.with_impression:
        notes.append("references are FINDINGS only (R2Gen protocol): generated impressions are not scored")
    test_missing = missing_images(records)
    references = {r.id: record_report(r) for r in records}
    write_reports_jsonl(out / "references.jsonl", references)
    predictions: dict[str, dict[str, str]] = {}
    skipped: dict[str, str] = {}
    seconds: dict[str, float] = {}
    new_counts: dict[str, int] = {}
    for name in dict.fromkeys(cfg.systems):
        system = create_system(name, ctx)
        reason = system.unavailable()
        if reason is None and system.needs_images and test_missing:
            reason = (
                f"{name} needs the study images; {len(test_missing)} image file(s) of the {cfg.split} split are "
                f"missing (e.g. {test_missing[0]})"
            )
        if reason is not None:
            skipped[name] = reason
            continue
        t0 = time.perf_counter()
        key = resume_key(
            name,
            model["sha256"] if model and system.needs_checkpoint else None,
            cfg.dataset,
            cfg.split,
            train_hash if name in ("most_frequent", "nearest_neighbour") else None,
        )
        preds, new = run_system(
            system, records, out / f"predictions_{name}.partial.jsonl", key, cfg.batch_size, cfg.progress
        )
        write_reports_jsonl(out / f"predictions_{name}.jsonl", preds)
        predictions[name] = preds
        new_counts[name] = new
        seconds[f"predict/{name}"] = round(time.perf_counter() - t0, 3)
    if not predictions:
        raise DataError("no system could run: " + "; ".join(skipped.values()))

    vocab = load_vocab(cfg.vocab) if cfg.vocab else None
    systems_out: dict[str, dict[str, dict]] = {}
    for name, preds in predictions.items():
        systems_out[name] = {}
        for protocol in PROTOCOLS[cfg.protocol]:
            t0 = time.perf_counter()
            systems_out[name][protocol] = evaluate_reports(
                preds,
                references,
                protocol=protocol,
                dataset=text_rules,
                vocab=vocab,
                bootstrap=cfg.bootstrap,
                seed=cfg.seed,
                meteor=cfg.meteor,
                labeler=labeler,
            )
            seconds[f"evaluate/{name}/{protocol}"] = round(time.perf_counter() - t0, 3)
    seconds["total"] = round(time.perf_counter() - started, 3)
    summary = {
        "benchmark": {
            "dataset": cfg.dataset,
            "root": str(cfg.root),
            "split": cfg.split,
            "protocols": list(PROTOCOLS[cfg.protocol]),
            "text_rules": text_rules,
            "model": model,
            "checkpoint": str(cfg.checkpoint) if cfg.checkpoint else None,
            "data_sha256": data_hash(records, cfg.root),
            "train_sha256": train_hash,
            "systems_requested": list(cfg.systems),
            "systems_run": list(predictions),
            "skipped": skipped,
            "warnings": notes + [f"skipped {k}: {v}" for k, v in skipped.items()],
            "counts": {
                "studies": len(records),
                "train_studies": len(train),
                "missing_images": len(test_missing),
                "limit": cfg.limit,
                "predicted_this_run": new_counts,
            },
            "settings": {
                "batch_size": cfg.batch_size,
                "bootstrap": cfg.bootstrap,
                "seed": cfg.seed,
                "meteor": cfg.meteor,
            },
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": seconds,
        },
        "systems": systems_out,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "results.md").write_text(format_results_md(summary), encoding="utf-8")
    f1 = per_observation_f1(summary)
    if f1:
        per_observation_f1_chart(
            f1,
            out / "per_observation_f1.png",
            f"Per-observation CE F1 (uneg), {cfg.dataset} {cfg.split}, n={len(records)}",
        )
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reportgen benchmark",
        description="Run a checkpoint and baselines (most frequent report, nearest neighbour, label oracle) over a "
        "dataset split; write predictions, metrics.json, results.md and a per-observation F1 chart.",
    )
    p.add_argument("--dataset", required=True, choices=("iu_xray", "mimic_cxr", "manifest"))
    p.add_argument("--root", required=True, help="dataset folder (or annotation / manifest file)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument(
        "--checkpoint", default=None, help="checkpoint folder; without it only checkpoint-free baselines run"
    )
    p.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS), help="comma-separated: " + ",".join(DEFAULT_SYSTEMS))
    p.add_argument("--protocol", choices=tuple(PROTOCOLS), default="r2gen", help="NLG protocol (both = two rows each)")
    p.add_argument(
        "--text-rules",
        choices=("iu_xray", "mimic_cxr"),
        default=None,
        help="R2Gen cleaning rules / max tokens (default: iu_xray for IU, else mimic_cxr)",
    )
    p.add_argument("--vocab", default=None, help="word vocabulary for R2Gen's <unk> mapping of references")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, default=None, help="only the first N studies of the split")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for CE CIs (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (no JVM start)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--device", default="cpu", help="torch device for the checkpoint (cpu, cuda)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--out", required=True, help="output folder")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cfg = BenchmarkConfig(
        dataset=args.dataset,
        root=args.root,
        out=args.out,
        split=args.split,
        checkpoint=args.checkpoint,
        systems=tuple(s.strip() for s in args.systems.split(",") if s.strip()),
        protocol=args.protocol,
        batch_size=args.batch_size,
        limit=args.limit,
        bootstrap=args.bootstrap,
        seed=args.seed,
        meteor=not args.no_meteor,
        text_rules=args.text_rules,
        vocab=args.vocab,
        progress=not args.quiet,
        device=args.device,
    )
    summary = run_benchmark(cfg)
    info = summary["benchmark"]
    for reason in info["skipped"].values():
        print(f"warning: skipped {reason}", file=sys.stderr)
    print(format_results_md(summary), end="")
    print(f"wrote {Path(args.out) / 'metrics.json'} ({info['seconds']['total']:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
