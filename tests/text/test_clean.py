"""Text cleaning: R2Gen's exact strings (hand-derived from its source) and the clinical tidy-up."""

import pytest

from reportgen.errors import ConfigError
from reportgen.text.clean import clean_report, split_sentences

# Each expected string was derived by hand by walking R2Gen's replace chain, '. ' split and regex.
IU_CASES = [
    (
        "The heart is normal in size. The mediastinum is unremarkable. The lungs are clear.",
        "the heart is normal in size . the mediastinum is unremarkable . the lungs are clear .",
    ),
    # decimals lose their point; "x-XXXX" keeps its hyphen; comma deleted
    ("Stable 1.5 cm nodule. Chest x-XXXX, negative.", "stable 15 cm nodule . chest x-xxxx negative ."),
    # ".." -> "." collapses; "..." -> ".." -> "."
    ("No pneumothorax.. Heart size normal...", "no pneumothorax . heart size normal ."),
    # IU does not touch newlines: no split at ".\n", the newline survives
    ("Lungs are clear.\nNo effusion.", "lungs are clear\nno effusion ."),
    # "1. " removed anywhere (so "11. Foo" -> "1Foo"), ". 2. " -> ". "
    ("1. No acute disease. 2. Stable cardiomegaly. 11. Foo", "no acute disease . stable cardiomegaly . 1foo ."),
    # " 2. " -> ". " creates a sentence break; no final period still gets " ."
    ("Heart size normal 2. Lungs clear", "heart size normal . lungs clear ."),
    # quotes/slash deleted; ( ) > : ; % . deleted (the ':'..'[' range covers '>'); hyphen kept; inner spaces kept
    (
        'Well-expanded lungs (left > right): "clear"; L1/L2 compression 50%.',
        "well-expanded lungs left  right clear l1l2 compression 50 .",
    ),
    # empty sentences are kept
    ("a. . b", "a .  . b ."),
    ("", " ."),
    # IU leaves double spaces alone
    ("a  b", "a  b ."),
    # '#', '$', '|' survive R2Gen's class; '=' '@' '?' '!' do not
    ("Tube #2 at $5 | ok? yes! a=b @c", "tube #2 at $5 | ok yes ab c ."),
]

MIMIC_CASES = [
    # newlines -> spaces, "___" -> "_" (then deleted by the regex, leaving spaces), double spaces collapsed
    (
        "FINDINGS:\n\nPA and lateral views of the chest.  The lungs are clear.\n___ was notified at ___.",
        "findings pa and lateral views of the chest . the lungs are clear .  was notified at  .",
    ),
    ("Lungs are clear.\nNo effusion.", "lungs are clear . no effusion ."),
    ("a  b", "a b ."),
    (
        "1. Interval improvement. 2. No effusion 3. Stable 2.3 cm mass.",
        "interval improvement . no effusion . stable 23 cm mass .",
    ),
]


@pytest.mark.parametrize(("text", "expected"), IU_CASES)
def test_r2gen_iu_exact(text, expected):
    assert clean_report(text, mode="r2gen", dataset="iu_xray") == expected


@pytest.mark.parametrize(("text", "expected"), MIMIC_CASES)
def test_r2gen_mimic_exact(text, expected):
    assert clean_report(text, mode="r2gen", dataset="mimic_cxr") == expected


def test_r2gen_unknown_dataset_uses_mimic_cleaner():
    # R2Gen: `if dataset_name == 'iu_xray' ... else mimic`
    assert clean_report("a  b\nc", mode="r2gen", dataset="manifest") == "a b c ."


def test_r2gen_long_dot_runs_halve_per_pass():
    # IU runs ".." -> "." only three times: 9 dots -> 5 -> 3 -> 2, and "x.. y" splits after "x."
    assert clean_report("x" + "." * 9 + "y", mode="r2gen") == "xy ."
    assert clean_report("x" + "." * 9 + " y", mode="r2gen") == "x . y ."


def test_r2gen_tokens_idempotent():
    text = "1. The heart is normal.\n2. Lungs (left) clear: no 1.5 cm nodule..."
    for dataset in ("iu_xray", "mimic_cxr"):
        once = clean_report(text, mode="r2gen", dataset=dataset)
        assert clean_report(once, mode="r2gen", dataset=dataset).split() == once.split()


CLINICAL_CASES = [
    (
        "The heart is normal in size.\nThe lungs are clear..  No pneumothorax",
        "The heart is normal in size. The lungs are clear. No pneumothorax.",
    ),
    (
        "1. No acute disease. 2. Stable 1.5 cm nodule in the right upper lobe",
        "No acute disease. Stable 1.5 cm nodule in the right upper lobe.",
    ),
    ("Lungs are well-expanded and clear;", "Lungs are well-expanded and clear."),
    ("Findings: normal.Lungs clear , no effusion", "Findings: normal. Lungs clear, no effusion."),
    ("Approx. 2.3 cm mass!! Really?", "Approx. 2.3 cm mass! Really?"),
    ("Mild cardiomegaly ,, and a .5 cm nodule", "Mild cardiomegaly, and a .5 cm nodule."),
    ("\u00a0Right\u00a0IJ  line\ttip in SVC", "Right IJ line tip in SVC."),
    ("", ""),
    ("...", ""),
    # de-identification placeholders (IU "XXXX", MIMIC "___"), default policy "drop_sentence"
    ("Chest x-XXXX. The XXXX are intact , no acute fracture. Clear lungs", "Chest x-ray. Clear lungs."),
    ("Heart size normal (XXXX). Stable compared to XXXX.", "Heart size normal. Stable."),
    (
        "Volumes are decreased from XXXX, and there is crowding. Dr. Smith was notified at ___ on ___ by phone.",
        "Volumes are decreased, and there is crowding. Dr. Smith was notified by phone.",
    ),
    ("Comparison: XXXX, XXXX.", ""),
]


@pytest.mark.parametrize(("text", "expected"), CLINICAL_CASES)
def test_clinical(text, expected):
    assert clean_report(text) == expected


def test_clinical_is_idempotent():
    for text, _ in CLINICAL_CASES:
        once = clean_report(text)
        assert clean_report(once) == once


def test_clinical_placeholder_delete_policy():
    text = "The XXXX are intact. XXXX-year-old male, seen at ___ on ___. Pulmonary XXXX are normal"
    assert clean_report(text, placeholders="delete") == "The are intact. year-old male, seen. Pulmonary are normal."
    assert clean_report(text) == ""
    with pytest.raises(ConfigError, match="placeholder policy"):
        clean_report(text, placeholders="guess")


def test_clinical_never_leaves_placeholders():
    text = "XXXX XXXX and ___. The XXXX-XXXX is XXXX/XXXX. Broken 4XXXX, seen at XXXXPM. Heart normal."
    for policy in ("drop_sentence", "delete"):
        out = clean_report(text, placeholders=policy)
        assert "XXX" not in out and "__" not in out and out.endswith("Heart normal.")


def test_none_and_bad_mode():
    assert clean_report(None) == ""
    assert clean_report(None, mode="r2gen") == " ."
    with pytest.raises(ConfigError, match="cleaning mode"):
        clean_report("x", mode="lower")


def test_split_sentences_keeps_decimals_abbreviations_and_numbers():
    text = "1. No acute disease. 2. Stable 1.5 cm nodule!  Approx. 2 cm, e.g. small? Dr. Smith\nnotified"
    assert split_sentences(text) == [
        "1. No acute disease.",
        "2. Stable 1.5 cm nodule!",
        "Approx. 2 cm, e.g. small?",
        "Dr. Smith notified",
    ]
    assert split_sentences("") == []
    assert split_sentences("Heart normal.") == ["Heart normal."]
