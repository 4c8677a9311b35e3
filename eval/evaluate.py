"""`reportgen evaluate`: NLG + clinical-efficacy metrics of generated reports against references.

Inputs are two JSONL files with one ``{"id": ..., "report": ...}`` object per line (ids are
compared as strings and must match exactly between the files; an empty report is allowed). The
output JSON names everything needed to reproduce or compare the numbers: the NLG protocol, the
R2Gen truncation length, the Java version (METEOR/PTB), warnings, CE conventions and bootstrap
settings. Reports are never logged; only counts and scores are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

import numpy as np

from reportgen.errors import DataError


def read_reports_jsonl(path: str | Path) -> dict[str, str]:
    """Read ``{"id", "report"}`` lines into ``{id: report}`` (ids as strings, file order kept).

    Blank lines are skipped; ``"report": null`` counts as an empty report.

    Raises:
        DataError: Missing file, a line that is not a JSON object with "id" and "report" (the message
            gives the line number), a report that is not a string, or a duplicated id.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"reports file not found: {path}")
    out: dict[str, str] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f'{path}:{lineno}: not valid JSON ({exc.msg}); expected {{"id": ..., "report": ...}}'
                ) from exc
            if not isinstance(obj, dict) or "id" not in obj or "report" not in obj:
                raise DataError(f'{path}:{lineno}: expected a JSON object with keys "id" and "report"')
            report = obj["report"] if obj["report"] is not None else ""
            if not isinstance(report, str):
                raise DataError(f'{path}:{lineno}: "report" must be a string')
            key = str(obj["id"])
            if key in out:
                raise DataError(f"{path}:{lineno}: duplicate id {key!r}")
            out[key] = report
    return out


def match_ids(predictions: Mapping[str, str], references: Mapping[str, str]) -> list[str]:
    """The shared ids in reference order; DataError naming up to 5 missing/extra ids if the sets differ."""
    missing = [k for k in references if k not in predictions]
    extra = [k for k in predictions if k not in references]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} reference id(s) have no prediction (e.g. {', '.join(missing[:5])})")
        if extra:
            parts.append(f"{len(extra)} prediction id(s) have no reference (e.g. {', '.join(extra[:5])})")
        raise DataError("ids differ between predictions and references: " + "; ".join(parts))
    if not references:
        raise DataError("no reports to evaluate: the references are empty")
    return list(references)


def load_vocab(path: str | Path) -> frozenset[str]:
    """Word vocabulary for R2Gen's ``<unk>`` mapping of references.

    Accepts a text file (one word per line), a word tokenizer's ``tokenizer.json`` (its "words"), or
    a folder holding one. ``<unk>`` is always included.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise DataError(f"vocabulary file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON ({exc.msg})") from exc
        words = payload.get("words") if isinstance(payload, dict) else None
        if not isinstance(words, list):
            kind = payload.get("kind") if isinstance(payload, dict) else None
            raise DataError(
                f"{path} has no 'words' list (tokenizer kind {kind!r}); the <unk> mapping needs a word tokenizer "
                "or a one-word-per-line file"
            )
    else:
        words = [w.strip() for w in text.splitlines() if w.strip()]
    if not words:
        raise DataError(f"vocabulary {path} is empty")
    return frozenset(words) | {"<unk>"}


def evaluate_reports(
    predictions: Mapping[str, str],
    references: Mapping[str, str],
    protocol: str = "r2gen",
    dataset: str = "iu_xray",
    max_tokens: int | None = None,
    vocab: Collection[str] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    *,
    clinical: bool = True,
    meteor: bool = True,
    labeler: Callable[[Sequence[str]], np.ndarray] | None = None,
    java=None,
) -> dict:
    """Score generated reports against references.

    Args:
        predictions: ``{id: generated report}``.
        references: ``{id: reference report}``; ids must equal those of `predictions`.
        protocol: NLG protocol, "r2gen" or "raw" (see `reportgen.eval.nlg`).
        dataset: "iu_xray" or "mimic_cxr": R2Gen cleaning rules and default max_tokens.
        max_tokens: R2Gen's max_seq_length override (r2gen protocol only).
        vocab: Training word vocabulary; r2gen references map other words to ``<unk>``.
        bootstrap: Bootstrap resamples for the CE confidence intervals (0: none).
        seed: Bootstrap seed.
        clinical: False skips the CE metrics (no labeler needed).
        meteor: False skips METEOR (saves the JVM start).
        labeler: ``texts -> (n, 14) labels``; default `reportgen.eval.labeler.label_reports`.
        java: A `JavaInfo` to use instead of detecting one (tests).

    Returns:
        A JSON-ready dict: ``protocol``, ``dataset``, ``max_tokens``, ``counts``, ``java``,
        ``warnings``, ``metrics`` (all scalar ``nlg/*`` and ``ce/*`` keys), ``ci95``, ``bootstrap``,
        ``per_observation``, ``ce_conventions``, ``seconds``.
    """
    from reportgen.eval.clinical import CEConfig, CEMetric
    from reportgen.eval.nlg import NLG_KEYS, NLGMetric

    ids = match_ids(predictions, references)
    preds = [predictions[k] for k in ids]
    refs = [references[k] for k in ids]
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    with NLGMetric(protocol, dataset=dataset, max_tokens=max_tokens, vocab=vocab, java=java, use_meteor=meteor) as nlg:
        nlg.update(preds, refs)
        nlg_out = nlg.compute()
    seconds["nlg"] = round(time.perf_counter() - start, 3)

    result: dict = {
        "protocol": protocol,
        "dataset": dataset,
        "max_tokens": nlg_out["nlg/max_tokens"],
        "counts": {
            "reports": len(ids),
            "empty_predictions": sum(not p.strip() for p in preds),
            "empty_references": sum(not r.strip() for r in refs),
        },
        "java": nlg_out["nlg/java"],
        "warnings": list(nlg_out["nlg/warnings"]),
        "metrics": {"nlg/protocol": protocol, **{k: nlg_out[k] for k in NLG_KEYS}},
    }
    if clinical:
        start = time.perf_counter()
        label = labeler
        if label is None:
            from reportgen.eval.labeler import label_reports as label
        ce = CEMetric(CEConfig(bootstrap=bootstrap, seed=seed))
        ce.update(np.asarray(label(preds), dtype=np.float64), np.asarray(label(refs), dtype=np.float64))
        ce_out = ce.compute()
        seconds["ce"] = round(time.perf_counter() - start, 3)
        result["metrics"].update({k: v for k, v in ce_out.items() if isinstance(v, float)})
        result["ci95"] = ce_out["ce/ci95"]
        result["bootstrap"] = ce_out["ce/bootstrap"]
        result["per_observation"] = ce_out["ce/per_observation"]
        result["ce_conventions"] = ce_out["ce/conventions"]
    else:
        result["warnings"].append("clinical-efficacy metrics skipped on request")
    result["seconds"] = seconds
    return result


def format_summary(result: Mapping) -> str:
    """A short human-readable table of the headline numbers (for stderr)."""
    from reportgen.eval.clinical import HEADLINE_KEYS
    from reportgen.eval.nlg import NLG_KEYS

    metrics, ci = result["metrics"], result.get("ci95", {})
    lines = [
        f"reportgen evaluate: {result['counts']['reports']} reports, protocol={result['protocol']}, "
        f"dataset={result['dataset']}, max_tokens={result['max_tokens']}, java={result['java'] or 'none'}"
    ]
    for key in (*NLG_KEYS, *HEADLINE_KEYS):
        if key not in metrics:
            continue
        value = metrics[key]
        shown = "   n/a" if value is None else f"{value:6.4f}"
        interval = f"  [{ci[key][0]:.4f}, {ci[key][1]:.4f}]" if key in ci else ""
        lines.append(f"  {key:<28} {shown}{interval}")
    lines += [f"  warning: {w}" for w in result["warnings"]]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reportgen evaluate",
        description="Score generated reports against references: BLEU-1..4, METEOR, ROUGE-L, CIDEr "
        "and CheXpert-label clinical efficacy (P/R/F1 micro/macro/example, bootstrap 95%% CIs).",
    )
    p.add_argument("--predictions", required=True, help='JSONL, one {"id", "report"} per line')
    p.add_argument("--references", required=True, help='JSONL, one {"id", "report"} per line (same ids)')
    p.add_argument("--protocol", choices=("r2gen", "raw"), default="r2gen", help="NLG protocol (default r2gen)")
    p.add_argument("--dataset", choices=("iu_xray", "mimic_cxr"), default="iu_xray")
    p.add_argument("--max-tokens", type=int, default=None, help="R2Gen max_seq_length (default 60 IU / 100 MIMIC)")
    p.add_argument("--vocab", default=None, help="word vocabulary (one word per line) or a word tokenizer.json")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for CE CIs (0: none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--no-ce", action="store_true", help="skip clinical-efficacy metrics")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (no JVM start)")
    p.add_argument("-o", "--output", default=None, help="write the metrics JSON here (default: stdout)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_tokens is not None and args.max_tokens < 2:
        raise DataError("--max-tokens must be >= 2 (it counts the BOS token, like R2Gen's max_seq_length)")
    if args.bootstrap < 0:
        raise DataError("--bootstrap must be >= 0")
    predictions = read_reports_jsonl(args.predictions)
    references = read_reports_jsonl(args.references)
    vocab = load_vocab(args.vocab) if args.vocab else None
    result = evaluate_reports(
        predictions,
        references,
        protocol=args.protocol,
        dataset=args.dataset,
        max_tokens=args.max_tokens,
        vocab=vocab,
        bootstrap=args.bootstrap,
        seed=args.seed,
        clinical=not args.no_ce,
        meteor=not args.no_meteor,
    )
    text = json.dumps(result, indent=2) + "\n"
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    print(format_summary(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
