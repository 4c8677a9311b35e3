"""Laterality safeguard: flag draft sentences whose left/right disagrees with a confident heat map.

A wrong side ("left effusion" for a right one) is among the most harmful errors a draft can make,
and a report decoder can make it while the image side of the model knows better. The check is
deliberately narrow:

* a sentence is checked only if it names exactly one side ("left", "right", "left-sided"; word
  boundaries) and no "bilateral"/"bilaterally"/"both" (which mean no single side);
* the observations it is about are those the labeler (`reportgen.eval.labeler.label_report`) reads as
  positive or uncertain in that sentence; a negated mention ("no left effusion") asserts nothing;
* it is flagged only when that observation's heat map is confident (mass fraction on its side
  >= ``threshold``) and on the *other* patient side. A midline or empty map never contradicts.

Flags are advice for the reader who signs the report, not corrections: the heat map can be wrong too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from reportgen.constants import OBSERVATIONS

_SIDE = re.compile(r"\b(left|right)\b", re.IGNORECASE)
_NO_SINGLE_SIDE = re.compile(r"\b(bilateral|bilaterally|both)\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_OPPOSITE = {"left": "right", "right": "left"}
#: Observations that have no side: "No Finding" is 1 for "no left effusion", which asserts nothing about a side.
_SIDELESS = {"No Finding"}


@dataclass(frozen=True)
class Flag:
    """One sentence whose side disagrees with the heat map of the observation it mentions."""

    sentence: str
    observation: str
    text_side: str
    map_side: str
    confidence: float
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def text_side(sentence: str) -> str | None:
    """The single patient side a sentence names, or None (no side, both sides, or "bilateral")."""
    if _NO_SINGLE_SIDE.search(sentence):
        return None
    sides = {m.group(1).lower() for m in _SIDE.finditer(sentence)}
    return sides.pop() if len(sides) == 1 else None


def split_sentences(text: str) -> list[str]:
    """Split report text at sentence punctuation; empty pieces are dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text or "") if s.strip()]


def _default_labels(sentence: str) -> np.ndarray:
    from reportgen.eval.labeler import label_report

    return label_report(sentence)


def check_laterality(
    sentences: Sequence[str],
    heatmaps: Mapping[str, object],
    labels_for_sentence: Callable[[str], np.ndarray] = _default_labels,
    threshold: float = 0.7,
) -> list[Flag]:
    """Flags for sentences whose side contradicts a confident heat map.

    Args:
        sentences: Draft sentences (see `split_sentences`).
        heatmaps: Observation name -> an object with ``side`` and ``confidence`` (a `Heatmap`).
        labels_for_sentence: Sentence -> (14,) CheXpert values (1 / 0 / -1 / NaN) in OBSERVATIONS order.
        threshold: Minimum map confidence (fraction of its mass on its side) for the map to be trusted
            enough to raise a flag.

    Returns:
        One `Flag` per (sentence, observation) disagreement, in sentence order.
    """
    flags: list[Flag] = []
    for sentence in sentences:
        side = text_side(sentence)
        if side is None:
            continue
        values = np.asarray(labels_for_sentence(sentence), dtype=np.float32)
        for obs, value in zip(OBSERVATIONS, values, strict=True):
            if value not in (1.0, -1.0) or obs not in heatmaps or obs in _SIDELESS:
                continue
            hm = heatmaps[obs]
            if hm.side not in _OPPOSITE or hm.confidence < threshold or hm.side == side:
                continue
            flags.append(
                Flag(
                    sentence=sentence,
                    observation=obs,
                    text_side=side,
                    map_side=hm.side,
                    confidence=round(float(hm.confidence), 4),
                    reason=(
                        f"text says {side} but the {obs} heat map is on the patient's {hm.side} "
                        f"({hm.confidence:.0%} of its mass)"
                    ),
                )
            )
    return flags


def check_draft(findings: str, impression: str, heatmaps: Mapping[str, object], threshold: float = 0.7) -> list[Flag]:
    """`check_laterality` over every sentence of a draft's findings and impression."""
    return check_laterality(split_sentences(findings) + split_sentences(impression), heatmaps, threshold=threshold)
