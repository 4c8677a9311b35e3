"""NLG metrics: hand-checked BLEU/ROUGE-L/CIDEr values, R2Gen protocol effects, Java-absent behaviour."""

from __future__ import annotations

import math

import pytest
from reportgen.eval.java import JavaInfo, detect_java
from reportgen.eval.nlg import (
    NLG_KEYS,
    MeteorScorer,
    NLGMetric,
    ptb_tokenize,
    r2gen_prepare_prediction,
    r2gen_prepare_reference,
    score_tokenized,
    simple_tokenize,
)

from reportgen.errors import DataError

NO_JAVA = JavaInfo(None, None, {}, "java not found on PATH (test)")
needs_java = pytest.mark.skipif(not detect_java().available, reason="needs a Java runtime")


@pytest.fixture(scope="module")
def meteor():
    """One METEOR JVM for the whole module: starting it costs seconds."""
    if not detect_java().available:
        pytest.skip("needs a Java runtime")
    scorer = MeteorScorer()
    yield scorer
    scorer.close()


# --- hand-checked values -------------------------------------------------------------------------


def test_identical_reports_score_one():
    text = "the heart size is normal and the lungs are clear"
    scores = score_tokenized(
        [text, "no pleural effusion or pneumothorax"], [text, "no pleural effusion or pneumothorax"]
    )
    for n in range(1, 5):
        assert scores[f"nlg/bleu{n}"] == pytest.approx(1.0, abs=1e-6)
    assert scores["nlg/rouge_l"] == pytest.approx(1.0)
    # Two reports with no shared n-gram: every n-gram has df=1, IDF = log 2 > 0, cosine 1 for n = 1..4.
    assert scores["nlg/cider"] == pytest.approx(10.0)
    assert scores["nlg/meteor"] is None  # no scorer given


def test_half_overlap_bleu_and_rouge_by_hand():
    scores = score_tokenized(["a b e f"], ["a b c d"])
    # 1-gram precision 2/4; 2-gram precision 1/3 ("a b"); equal lengths -> no brevity penalty.
    assert scores["nlg/bleu1"] == pytest.approx(0.5, abs=1e-6)
    assert scores["nlg/bleu2"] == pytest.approx(math.sqrt(0.5 * 1 / 3), abs=1e-6)
    # LCS "a b" = 2 -> P = R = 1/2 -> F_beta = 1/2 for any beta.
    assert scores["nlg/rouge_l"] == pytest.approx(0.5)


def test_brevity_penalty_and_rouge_beta_by_hand():
    scores = score_tokenized(["a b"], ["a b c d"])
    assert scores["nlg/bleu1"] == pytest.approx(math.exp(1 - 4 / 2), abs=1e-6)  # precision 1, BP = e^(1 - r/c)
    p, r, beta2 = 1.0, 0.5, 1.2**2
    assert scores["nlg/rouge_l"] == pytest.approx((1 + beta2) * p * r / (r + beta2 * p))


def test_cider_small_corpus_by_hand():
    # Doc 1 identical ("a b"): cosine 1 for 1- and 2-grams, 0 for 3/4-grams -> 10 * (1 + 1) / 4 = 5.
    # Doc 2 "c e" vs "c d": unigram vectors {c: L, e: L} vs {c: L, d: L} with L = log 2 -> cosine 1/2;
    #   no shared bigram -> 10 * 0.5 / 4 = 1.25.  Corpus CIDEr-D = mean = 3.125.
    scores = score_tokenized(["a b", "c e"], ["a b", "c d"])
    assert scores["nlg/cider"] == pytest.approx(3.125)


def test_cider_single_report_is_zero_and_empty_references_do_not_crash():
    # One document: IDF = log(1) - log(1) = 0 for every n-gram, so CIDEr is 0 even for a perfect match.
    assert score_tokenized(["a b c d"], ["a b c d"])["nlg/cider"] == 0.0
    scores = score_tokenized(["a b", ""], ["", ""])
    assert scores["nlg/cider"] == 0.0
    assert set(scores) == set(NLG_KEYS)


def test_whitespace_is_normalised_before_scoring():
    # pycocoevalcap's ROUGE splits on single spaces: a double space would be an empty token.
    assert score_tokenized(["a  b\nc"], ["a b c"])["nlg/rouge_l"] == pytest.approx(1.0)


def test_empty_corpus_raises():
    with pytest.raises(DataError):
        score_tokenized([], [])


# --- R2Gen protocol ------------------------------------------------------------------------------


def test_r2gen_truncation_counts_bos_like_r2gen():
    words = [f"word{i}" for i in range(100)]
    ref = r2gen_prepare_reference(" ".join(words), "iu_xray")
    pred = r2gen_prepare_prediction(" ".join(words), "iu_xray")
    assert ref.split() == words[:59]  # max_seq_length 60 includes BOS
    assert pred.split() == words[:60]  # the sampler emits up to max_seq_length words
    assert r2gen_prepare_reference(" ".join(words), "mimic_cxr").split() == words[:99]
    assert len(r2gen_prepare_reference(" ".join(words), "iu_xray", max_tokens=11).split()) == 10


def test_r2gen_cleaning_and_unk_mapping():
    assert r2gen_prepare_prediction("Heart size is normal.", "iu_xray") == "heart size is normal ."
    ref = r2gen_prepare_reference("Heart size is NORMAL.", "iu_xray", vocab={"heart", "normal", "."})
    assert ref == "heart <unk> <unk> normal ."
    # R2Gen scores an empty reference as "." (its cleaner returns " ."); an empty prediction stays empty.
    assert r2gen_prepare_reference("", "iu_xray") == "."
    assert r2gen_prepare_prediction(" \n", "iu_xray") == ""


def test_r2gen_protocol_scores_truncated_text_higher_than_raw():
    # A long reference and a prediction equal to its first 40 words: R2Gen (max_tokens 41) cuts the
    # reference to the same 40 words, so no brevity penalty; the raw protocol keeps all 100.
    words = [f"word{i}" for i in range(100)]
    pred, ref = " ".join(words[:40]), " ".join(words)
    r2gen = NLGMetric("r2gen", max_tokens=41, java=NO_JAVA, use_meteor=False)
    raw = NLGMetric("raw", java=NO_JAVA, use_meteor=False)
    for metric in (r2gen, raw):
        metric.update([pred, pred], [ref, ref])
    s_r2gen, s_raw = r2gen.compute(), raw.compute()
    assert s_r2gen["nlg/max_tokens"] == 41 and s_raw["nlg/max_tokens"] is None
    assert s_r2gen["nlg/rouge_l"] > 0.97  # only the prediction's trailing " ." differs
    assert s_raw["nlg/bleu1"] == pytest.approx(math.exp(1 - 100 / 40), rel=1e-6)
    assert s_raw["nlg/bleu4"] < 0.25 < 0.95 < s_r2gen["nlg/bleu4"]


def test_r2gen_requires_a_length_for_unknown_dataset():
    with pytest.raises(ValueError, match="max_tokens"):
        NLGMetric("r2gen", dataset="padchest")
    NLGMetric("r2gen", dataset="padchest", max_tokens=50)


def test_unknown_protocol_rejected():
    with pytest.raises(ValueError, match="protocol"):
        NLGMetric("coco")


def test_update_accumulates_batches():
    metric = NLGMetric("r2gen", java=NO_JAVA, use_meteor=False)
    metric.update(["heart normal"], ["heart normal"])
    metric.update(["lungs clear"], ["no effusion"])
    assert len(metric) == 2
    out = metric.compute()
    assert out["nlg/n"] == 2 and out["nlg/protocol"] == "r2gen"
    with pytest.raises(ValueError):
        metric.update(["a"], ["a", "b"])
    with pytest.raises(TypeError):
        metric.update("a", "a")


# --- Java absent / present -----------------------------------------------------------------------


def test_java_absent_never_crashes(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without java
    info = detect_java()
    assert not info.available and "java" in info.problem
    for protocol in ("r2gen", "raw"):
        metric = NLGMetric(protocol)
        metric.update(["The heart is normal."], ["Heart size is normal."])
        out = metric.compute()
        assert out["nlg/meteor"] is None and out["nlg/java"] is None
        assert any("METEOR skipped" in w for w in out["nlg/warnings"])
        assert 0 < out["nlg/bleu1"] <= 1
        metric.close()
    assert any("regex tokenizer" in w for w in out["nlg/warnings"])  # raw fell back from PTB


def test_simple_tokenizer_mimics_ptb_conventions():
    text = "The heart's size is normal (no change). T8-T9 x-ray: 2.5 cm! Don't; cannot -- say..."
    expected = "the heart 's size is normal -lrb- no change -rrb- t8-t9 x-ray 2.5 cm do n't can not say"
    assert simple_tokenize(text) == expected


@needs_java
def test_ptb_tokenizer_matches_pycocoevalcap_and_keeps_alignment():
    texts = ["The heart's size is normal (no change).", "", "Lungs:\nclear, no effusion.", ""]
    out = ptb_tokenize(texts, detect_java())
    assert out == ["the heart 's size is normal -lrb- no change -rrb-", "", "lungs clear no effusion", ""]
    assert simple_tokenize(texts[0]) == out[0]


@needs_java
def test_meteor_orders_and_metric_reuses_shared_scorer(meteor):
    same = "the heart size is normal and the lungs are clear"
    gts = {0: [same], 1: [same], 2: [same]}
    res = {0: [same], 1: ["the heart size is normal"], 2: ["osseous structures intact"]}
    corpus, per_item = meteor.compute_score(gts, res)
    assert per_item[0] > 0.95 and per_item[0] > per_item[1] > per_item[2] == 0.0
    assert 0 < corpus < 1
    # Newlines and "|||" would break METEOR's line protocol; they are turned into spaces.
    assert meteor.compute_score({0: ["lungs are\nclear ||| today"]}, {0: ["lungs are clear today"]})[0] == 1.0
    metric = NLGMetric("r2gen", meteor=meteor)  # shared scorer: no second JVM
    metric.update(["The heart size is normal. Lungs clear."], ["the heart size is NORMAL.  Lungs clear"])
    out = metric.compute()
    metric.close()  # must not close the shared scorer
    assert out["nlg/meteor"] == pytest.approx(1.0) and out["nlg/warnings"] == []
    assert meteor.compute_score({0: ["a b"]}, {0: ["a b"]})[0] == 1.0  # still alive
