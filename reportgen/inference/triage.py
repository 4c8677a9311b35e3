"""Triage priority from findings probabilities: which drafts a radiologist should open first.

Rules (documented in the model card, deliberately simple and conservative):
- "urgent": a critical finding (Pneumothorax) is positive at its operating point;
- "priority": Pneumothorax uncertain, or a time-sensitive finding (Pleural Effusion, Consolidation,
  Pneumonia, Edema) positive;
- "routine": otherwise.
Each reason names the observation, its probability and the threshold it crossed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

URGENT = ("Pneumothorax",)
TIME_SENSITIVE = ("Pleural Effusion", "Consolidation", "Pneumonia", "Edema")
PRIORITIES = ("routine", "priority", "urgent")


@dataclass
class Triage:
    priority: str = "routine"
    reasons: list[str] = field(default_factory=list)


def triage(probabilities: dict[str, float], statuses: dict[str, str], points: dict[str, dict[str, float]]) -> Triage:
    """Priority and reasons from per-observation probabilities and their label statuses."""
    level, reasons = 0, []
    for name in URGENT + TIME_SENSITIVE:
        status = statuses.get(name)
        p = probabilities.get(name, 0.0)
        if status == "positive":
            new = 2 if name in URGENT else 1
            reasons.append(f"{name}: probability {p:.2f} >= {points[name]['positive']:.2f}")
        elif status == "uncertain" and name in URGENT:
            new = 1
            reasons.append(f"{name} possible: probability {p:.2f} >= {points[name]['uncertain']:.2f}")
        else:
            continue
        level = max(level, new)
    return Triage(priority=PRIORITIES[level], reasons=reasons)
