"""`reportgen benchmark` and its baselines on a tiny random checkpoint and a 6-study synthetic corpus."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from reportgen.eval import baselines
from reportgen.eval.baselines import (
    SystemContext,
    cosine_nearest,
    create_system,
    join_report,
    most_frequent_report,
    reference_labels,
)
from reportgen.eval.benchmark import (
    TABLE_COLUMNS,
    CachedLabeler,
    data_hash,
    main,
    read_partial,
)
from reportgen.eval.plots import calibration

from reportgen.constants import OBSERVATIONS
from reportgen.data.datasets import StudyRecord
from reportgen.errors import DataError

FAST = ["--no-meteor", "--bootstrap", "5", "--quiet", "--protocol", "raw"]


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint, tmp_path_factory) -> tuple[Path, Path]:
    """(session tiny checkpoint from conftest, synthetic manifest with 6 train + the same 6 as val studies)."""
    import torch

    from reportgen.training.tiny import make_synthetic_corpus

    torch.set_num_threads(1)
    return tiny_checkpoint, make_synthetic_corpus(tmp_path_factory.mktemp("bench") / "data", n=6)


def _record(sid: str, report: str, images=(), labels=None, split="train") -> StudyRecord:
    return StudyRecord(sid, [Path(p) for p in images], [None] * len(images), report, None, labels, None, split, "t")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------------------------- pure parts


def test_most_frequent_counts_cleaned_text():
    reports = ["Lungs clear.", "Heart normal.", "Lungs  clear.", "  Heart normal.", "Lungs clear. "]
    assert most_frequent_report(reports) == "Lungs clear."


def test_most_frequent_ties_are_order_independent():
    a = ["b report", "a report", "b report", "a report", "c"]
    assert most_frequent_report(a) == "a report"
    assert most_frequent_report(list(reversed(a))) == "a report"


def test_most_frequent_uses_the_given_cleaner_and_rejects_empty():
    assert most_frequent_report(["X.", "x", "y", "y"], clean=lambda t: t.lower().strip(".")) == "x"
    with pytest.raises(DataError):
        most_frequent_report(["", "   "])


def test_cosine_nearest_ignores_scale_and_breaks_ties_low():
    keys = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    queries = np.array([[5.0, 0.1], [0.1, 3.0], [0.0, 0.0]])
    assert cosine_nearest(queries, keys).tolist() == [0, 1, 0]
    with pytest.raises(ValueError):
        cosine_nearest(queries, np.zeros((0, 2)))


def test_join_report_and_reference_labels_prefer_record_labels():
    assert join_report("Findings.", "Impression.") == "Findings. Impression."
    assert join_report("Findings.", None) == "Findings."
    own = np.full(len(OBSERVATIONS), np.nan, dtype=np.float32)
    own[0] = 1.0
    recs = [_record("a", "x", labels=own), _record("b", "Small right pleural effusion.")]
    calls = []

    def labeler(texts):
        calls.append(list(texts))
        out = np.full((len(texts), len(OBSERVATIONS)), np.nan, dtype=np.float32)
        out[:, OBSERVATIONS.index("Pleural Effusion")] = 1.0
        return out

    labels = reference_labels(recs, labeler)
    assert calls == [["Small right pleural effusion."]]  # only the unlabelled record is labelled
    assert labels[0, 0] == 1.0 and math.isnan(labels[0, 1])
    assert labels[1, OBSERVATIONS.index("Pleural Effusion")] == 1.0


def test_cached_labeler_labels_each_text_once():
    seen = []

    def labeler(texts):
        seen.extend(texts)
        return np.zeros((len(texts), len(OBSERVATIONS)), dtype=np.float32)

    cached = CachedLabeler(labeler)
    assert cached(["a", "b", "a"]).shape == (3, len(OBSERVATIONS))
    cached(["b", "c"])
    assert seen == ["a", "b", "c"]


def test_data_hash_is_order_independent_and_content_sensitive(tmp_path):
    recs = [_record("a", "one", [tmp_path / "a.png"]), _record("b", "two", [tmp_path / "b.png"])]
    h = data_hash(recs, tmp_path)
    assert h == data_hash(list(reversed(recs)), tmp_path)
    assert h != data_hash([recs[0], _record("b", "two!", [tmp_path / "b.png"])], tmp_path)


def test_read_partial_ignores_other_keys_and_torn_lines(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"resume_key": "k"}\n{"id": "a", "report": "x"}\n{"id": "b", "rep')
    assert read_partial(p, "k") == {"a": "x"}
    assert read_partial(p, "other") == {}


def test_calibration_ece_and_brier():
    perfect = calibration(np.array([0.0, 0.0, 1.0, 1.0]), np.array([0, 0, 1, 1]))
    assert perfect.ece == 0.0 and perfect.brier == 0.0
    off = calibration(np.array([0.9, 0.9, 0.9, 0.9, np.nan]), np.array([1, 0, 0, 0, 1]), n_bins=10)
    assert off.n == 4 and off.ece == pytest.approx(0.65) and off.brier == pytest.approx((0.01 + 3 * 0.81) / 4)


# --------------------------------------------------------------------------------------------- with a model


def test_nearest_neighbour_returns_the_identical_images_report(tiny):
    from reportgen.data.datasets import load_dataset
    from reportgen.inference.predictor import load_checkpoint

    ckpt, manifest = tiny
    train = load_dataset("manifest", manifest, split="train")
    # Give every training study a distinct report so the match is checkable.
    for k, r in enumerate(train):
        r.findings, r.impression = f"report number {k}", None
    system = create_system("nearest_neighbour", SystemContext(train=train, predictor=load_checkpoint(ckpt)))
    assert system.unavailable() is None
    queries = [train[3], train[0], train[5]]
    assert system(queries) == ["report number 3", "report number 0", "report number 5"]


def test_unknown_system_and_missing_requirements():
    with pytest.raises(DataError, match="unknown system"):
        create_system("nope", SystemContext(train=[]))
    assert "checkpoint" in create_system("label_oracle", SystemContext(train=[])).unavailable()
    assert "training reports" in create_system("most_frequent", SystemContext(train=[])).unavailable()
    assert set(baselines.available_systems()) >= {"model", "most_frequent", "nearest_neighbour", "label_oracle"}


def test_benchmark_cli_end_to_end(tiny, tmp_path):
    ckpt, manifest = tiny
    out = tmp_path / "out"
    argv = ["--dataset", "manifest", "--root", str(manifest), "--split", "val", "--checkpoint", str(ckpt)]
    assert main([*argv, "--protocol", "both", "--no-meteor", "--bootstrap", "5", "--quiet", "--out", str(out)]) == 0
    systems = ("model", "most_frequent", "nearest_neighbour", "label_oracle")
    for name in ("references.jsonl", "metrics.json", "results.md", "per_observation_f1.png"):
        assert (out / name).is_file(), name
    refs = _lines(out / "references.jsonl")
    assert len(refs) == 6 and refs[0]["report"].endswith("No acute cardiopulmonary abnormality.")
    for s in systems:
        preds = _lines(out / f"predictions_{s}.jsonl")
        assert [p["id"] for p in preds] == [r["id"] for r in refs]
    metrics = json.loads((out / "metrics.json").read_text())
    info = metrics["benchmark"]
    assert info["systems_run"] == list(systems) and info["skipped"] == {}
    assert info["model"]["name"] == "reportgen-tiny" and len(info["model"]["sha256"]) == 64
    assert len(info["data_sha256"]) == 64 and info["protocols"] == ["r2gen", "raw"]
    assert info["counts"]["studies"] == 6 and info["split"] == "val" and info["time"]
    for s in systems:
        assert set(metrics["systems"][s]) == {"r2gen", "raw"}
        m = metrics["systems"][s]["raw"]["metrics"]
        assert {k for k, _ in TABLE_COLUMNS} <= set(m)
    # Val images are the train images: retrieval copies each study's own report.
    assert metrics["systems"]["nearest_neighbour"]["raw"]["metrics"]["nlg/bleu4"] > 0.99
    table = (out / "results.md").read_text()
    assert "r2gen, raw" in table and "0.0.0-tiny" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "BLEU-1" not in line]
    assert len(rows) == 8 and all(line.count("|") == len(TABLE_COLUMNS) + 3 for line in rows)
    assert (out / "per_observation_f1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_benchmark_resume_skips_done_ids(tiny, tmp_path):
    ckpt, manifest = tiny
    out = tmp_path / "out"
    argv = ["--dataset", "manifest", "--root", str(manifest), "--split", "val", "--checkpoint", str(ckpt)]
    argv += ["--systems", "model,most_frequent", "--batch-size", "2", *FAST, "--out", str(out)]
    assert main([*argv, "--limit", "3"]) == 0
    first = json.loads((out / "metrics.json").read_text())["benchmark"]
    assert first["counts"]["predicted_this_run"] == {"model": 3, "most_frequent": 3}
    assert len(_lines(out / "predictions_model.jsonl")) == 3
    assert main(argv) == 0
    second = json.loads((out / "metrics.json").read_text())["benchmark"]
    assert second["counts"]["predicted_this_run"] == {"model": 3, "most_frequent": 3}
    assert len(_lines(out / "predictions_model.jsonl")) == 6
    partial = _lines(out / "predictions_model.partial.jsonl")
    assert len(partial) == 1 + 6  # key line + each id once
    assert main(argv) == 0
    assert json.loads((out / "metrics.json").read_text())["benchmark"]["counts"]["predicted_this_run"]["model"] == 0


def test_benchmark_without_images_runs_text_systems_and_warns(tiny, tmp_path):
    ckpt, _ = tiny
    rows = [
        {"id": f"t{i}", "images": [f"missing/{i}.png"], "findings": text, "split": split}
        for i, (text, split) in enumerate(
            [
                ("The lungs are clear.", "train"),
                ("The lungs are clear.", "train"),
                ("Small right pleural effusion.", "train"),
                ("The lungs are clear.", "test"),
                ("Moderate cardiomegaly.", "test"),
            ]
        )
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    argv = ["--dataset", "manifest", "--root", str(manifest), "--checkpoint", str(ckpt), *FAST, "--out", str(out)]
    assert main(argv) == 0
    info = json.loads((out / "metrics.json").read_text())["benchmark"]
    assert info["systems_run"] == ["most_frequent", "label_oracle"]
    assert set(info["skipped"]) == {"model", "nearest_neighbour"}
    assert "image" in info["skipped"]["model"] and any("model" in w for w in info["warnings"])
    assert _lines(out / "predictions_most_frequent.jsonl")[1]["report"] == "The lungs are clear."
    table = (out / "results.md").read_text()
    assert "Skipped systems" in table and "| label_oracle | raw |" in table


def test_benchmark_errors_are_actionable(tiny, tmp_path):
    _, manifest = tiny
    with pytest.raises(DataError, match="no system could run"):
        main(
            [
                "--dataset",
                "manifest",
                "--root",
                str(manifest),
                "--split",
                "val",
                "--systems",
                "model",
                *FAST,
                "--out",
                str(tmp_path / "o"),
            ]
        )
    with pytest.raises(DataError, match="unknown system"):
        main(["--dataset", "manifest", "--root", str(manifest), "--systems", "gpt", "--out", str(tmp_path / "o")])
