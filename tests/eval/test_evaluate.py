"""`reportgen evaluate`: JSONL reading, id checks, the combined result and the CLI round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from reportgen.eval.clinical import HEADLINE_KEYS
from reportgen.eval.evaluate import evaluate_reports, load_vocab, main, match_ids, read_reports_jsonl
from reportgen.eval.java import JavaInfo
from reportgen.eval.nlg import NLG_KEYS

from reportgen.constants import OBSERVATIONS
from reportgen.errors import DataError

NO_JAVA = JavaInfo(None, None, {}, "java not found on PATH (test)")
REFS = {
    "s1": "The heart is enlarged. No pleural effusion.",
    "s2": "Normal chest. Lungs are clear.",
    "s3": "Small right pleural effusion. No pneumothorax.",
}
PREDS = {"s1": "Heart size is enlarged. No effusion.", "s2": "Lungs are clear. Normal chest.", "s3": ""}


def _write_jsonl(path, reports: dict[str, str]) -> str:
    path.write_text("".join(json.dumps({"id": k, "report": v}) + "\n" for k, v in reports.items()))
    return str(path)


def _fake_labeler(texts):
    """Positive cardiomegaly when "enlarged" is written, else "No Finding": enough to check the wiring."""
    out = np.full((len(texts), len(OBSERVATIONS)), np.nan)
    for i, t in enumerate(texts):
        out[i, OBSERVATIONS.index("Cardiomegaly" if "enlarged" in t else "No Finding")] = 1.0
    return out


def test_read_jsonl_reports_line_numbers_and_allows_empty(tmp_path):
    good = tmp_path / "ok.jsonl"
    good.write_text('{"id": 1, "report": "a"}\n\n{"id": "2", "report": ""}\n{"id": "3", "report": null}\n')
    assert read_reports_jsonl(good) == {"1": "a", "2": "", "3": ""}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "report": "a"}\n{"id": "2", "report": \n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        read_reports_jsonl(bad)
    bad.write_text('{"id": "1", "text": "a"}\n')
    with pytest.raises(DataError, match=r":1: expected a JSON object"):
        read_reports_jsonl(bad)
    bad.write_text('{"id": "1", "report": "a"}\n{"id": "1", "report": "b"}\n')
    with pytest.raises(DataError, match="duplicate id '1'"):
        read_reports_jsonl(bad)
    with pytest.raises(DataError, match="not found"):
        read_reports_jsonl(tmp_path / "missing.jsonl")


def test_id_mismatch_lists_up_to_five_ids():
    refs = {f"r{i}": "x" for i in range(8)}
    preds = {f"r{i}": "x" for i in range(1)} | {"extra": "x"}
    with pytest.raises(DataError) as err:
        match_ids(preds, refs)
    msg = str(err.value)
    assert "7 reference id(s) have no prediction (e.g. r1, r2, r3, r4, r5)" in msg and "r6" not in msg
    assert "1 prediction id(s) have no reference (e.g. extra)" in msg
    assert match_ids({"b": "", "a": ""}, {"a": "", "b": ""}) == ["a", "b"]


def test_evaluate_reports_combines_nlg_and_ce():
    out = evaluate_reports(PREDS, REFS, bootstrap=100, seed=3, labeler=_fake_labeler, java=NO_JAVA)
    assert out["protocol"] == "r2gen" and out["max_tokens"] == 60 and out["java"] is None
    assert out["counts"] == {"reports": 3, "empty_predictions": 1, "empty_references": 0}
    assert set(NLG_KEYS) | set(HEADLINE_KEYS) <= set(out["metrics"])
    assert out["metrics"]["nlg/meteor"] is None and any("METEOR" in w for w in out["warnings"])
    # fake labels: pred {card, NF, NF}, ref {card, NF, NF} -> perfect CE.
    assert out["metrics"]["ce/f1_micro_14_uneg"] == pytest.approx(1.0)
    assert out["bootstrap"]["seed"] == 3 and len(out["per_observation"]) == 28
    assert out == evaluate_reports(PREDS, REFS, bootstrap=100, seed=3, labeler=_fake_labeler, java=NO_JAVA) | {
        "seconds": out["seconds"]
    }
    json.dumps(out)  # JSON-ready (no numpy scalars, no NaN objects)


def test_vocab_file_and_word_tokenizer_json(tmp_path):
    words = tmp_path / "vocab.txt"
    words.write_text("heart\nnormal\n\n")
    assert load_vocab(words) == {"heart", "normal", "<unk>"}
    from reportgen.text.tokenizer import WordTokenizer

    WordTokenizer.build(["heart is normal"] * 3).save(tmp_path / "tok")
    assert {"heart", "normal", "<unk>"} <= load_vocab(tmp_path / "tok")
    (tmp_path / "spm.json").write_text('{"kind": "sentencepiece"}')
    with pytest.raises(DataError, match="word tokenizer"):
        load_vocab(tmp_path / "spm.json")
    out = evaluate_reports({"a": "heart is big"}, {"a": "heart is big"}, vocab={"heart"}, clinical=False, java=NO_JAVA)
    assert out["metrics"]["nlg/bleu1"] < 1.0  # reference became "heart <unk> <unk> ."


def test_cli_round_trip(tmp_path, capsys):
    preds, refs = _write_jsonl(tmp_path / "p.jsonl", PREDS), _write_jsonl(tmp_path / "r.jsonl", REFS)
    out_path = tmp_path / "out" / "metrics.json"
    argv = ["--predictions", preds, "--references", refs, "--protocol", "raw", "--no-meteor"]
    assert main([*argv, "--bootstrap", "50", "-o", str(out_path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing but the JSON file; the table goes to stderr
    assert "nlg/bleu4" in captured.err and "ce/f1_micro_14_uneg" in captured.err
    assert "Lungs" not in captured.err  # report text is never printed
    result = json.loads(out_path.read_text())
    assert result["protocol"] == "raw" and result["max_tokens"] is None
    assert result["metrics"]["nlg/protocol"] == "raw"
    assert result["counts"]["reports"] == 3 and result["bootstrap"]["n_boot"] == 50
    assert 0 < result["metrics"]["nlg/bleu1"] < 1 and result["metrics"]["nlg/meteor"] is None
    lo, hi = result["ci95"]["ce/f1_micro_14_uneg"]
    assert lo <= result["metrics"]["ce/f1_micro_14_uneg"] <= hi
    # Without -o the JSON goes to stdout.
    assert main([*argv, "--no-ce"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["reports"] == 3


def test_cli_id_mismatch_and_bad_arguments(tmp_path):
    preds = _write_jsonl(tmp_path / "p.jsonl", {"s1": "a", "zz": "b"})
    refs = _write_jsonl(tmp_path / "r.jsonl", REFS)
    with pytest.raises(DataError, match=r"2 reference id\(s\) have no prediction \(e.g. s2, s3\)"):
        main(["--predictions", preds, "--references", refs])
    with pytest.raises(DataError, match="max-tokens"):
        main(["--predictions", preds, "--references", refs, "--max-tokens", "1"])
    with pytest.raises(SystemExit):
        main(["--predictions", preds, "--references", refs, "--protocol", "coco"])
