from dataclasses import dataclass

import numpy as np
import pytest

from reportgen.constants import OBSERVATIONS
from reportgen.inference.laterality import check_draft, check_laterality, split_sentences, text_side


@dataclass
class FakeMap:
    side: str | None
    confidence: float


def _maps(side="right", confidence=0.9, obs="Pleural Effusion"):
    return {obs: FakeMap(side, confidence)}


@pytest.mark.parametrize(
    ("sentence", "side"),
    [
        ("Small left pleural effusion.", "left"),
        ("Right-sided effusion.", "right"),
        ("RIGHT lower lobe opacity.", "right"),
        ("Bilateral pleural effusions.", None),
        ("Effusions on both sides, left greater than right.", None),
        ("Left greater than right effusions.", None),
        ("The heart is normal in size.", None),
        ("Leftover contrast in the bowel.", None),
    ],
)
def test_text_side(sentence, side):
    assert text_side(sentence) == side


def test_flags_a_left_sentence_when_the_map_is_confidently_right():
    flags = check_laterality(["There is a small left pleural effusion."], _maps("right", 0.85))
    assert len(flags) == 1
    f = flags[0]
    assert (f.observation, f.text_side, f.map_side, f.confidence) == ("Pleural Effusion", "left", "right", 0.85)
    assert "left" in f.reason and "right" in f.reason
    assert set(f.to_dict()) == {"sentence", "observation", "text_side", "map_side", "confidence", "reason"}


@pytest.mark.parametrize(
    ("sentence", "side", "confidence"),
    [
        ("There is a small left pleural effusion.", "left", 0.95),  # agrees
        ("There is a small left pleural effusion.", "right", 0.55),  # map not confident
        ("There is a small left pleural effusion.", "midline", 0.95),  # a midline map never contradicts
        ("There is a small left pleural effusion.", None, 0.0),  # empty map / lateral view
        ("No left pleural effusion.", "right", 0.95),  # negated: asserts nothing
        ("Bilateral pleural effusions.", "right", 0.95),  # no single side
        ("Left lower lobe atelectasis.", "right", 0.95),  # no effusion map to compare with
    ],
)
def test_no_flag(sentence, side, confidence):
    assert check_laterality([sentence], _maps(side, confidence)) == []


def test_uncertain_mention_is_checked_and_threshold_is_configurable():
    sentence = "Possible right lower lobe pneumonia."
    maps = _maps("left", 0.65, obs="Pneumonia")
    assert check_laterality([sentence], maps) == []
    assert len(check_laterality([sentence], maps, threshold=0.6)) == 1


def test_labels_come_from_the_injected_labeler():
    def says_lesion(_sentence: str) -> np.ndarray:
        v = np.full(len(OBSERVATIONS), np.nan, dtype=np.float32)
        v[OBSERVATIONS.index("Lung Lesion")] = 1.0
        return v

    flags = check_laterality(["Right upper zone finding."], _maps("left", 0.9, obs="Lung Lesion"), says_lesion)
    assert [f.observation for f in flags] == ["Lung Lesion"]


def test_check_draft_splits_findings_and_impression():
    findings = "The heart is normal. There is a right pleural effusion. No pneumothorax."
    impression = "Right effusion."
    assert split_sentences(findings)[1:] == ["There is a right pleural effusion.", "No pneumothorax."]
    flags = check_draft(findings, impression, _maps("left", 0.8))
    assert [f.sentence for f in flags] == ["There is a right pleural effusion.", "Right effusion."]
