"""Mappings from other label vocabularies to the 14 CheXpert observations.

Every function here is pure and returns a float32 array of shape (14,) in
`reportgen.constants.OBSERVATIONS` order with the project's label values: 1 positive, 0 negative,
-1 uncertain and NaN "the source says nothing about this observation". NaN matters: a loss or a
metric must skip it, whereas 0 is a real negative that a model is trained towards. A mapping may
only write 0 where the source vocabulary is exhaustive for that observation.

Three sources are mapped:

* **NIH ChestX-ray14** (`nih_labels`): 14 findings text-mined from the reports, exhaustive over its
  own classes, so classes not listed are negatives for the observations NIH covers.
* **NLM tuberculosis sets** (`tb_labels`): normal vs TB per image, plus (Shenzhen) a one-line
  radiologist reading.
* **COVID-19 image data collection** (`covid_labels`): the patient's diagnosis string
  ("COVID-19", "Pneumonia/Viral/COVID-19", "Streptococcus", "No Finding", ...).

Hierarchy decision (CheXpert's label tree puts Edema, Consolidation, Pneumonia and Atelectasis under
Lung Opacity): when any of those four is positive, Lung Opacity is set positive too, because an
image showing consolidation shows an opacity and a 0 there would teach the model a contradiction.
Lung Lesion (Mass/Nodule) is *not* propagated: CheXbert-style report labelers, which produce the
targets for the report datasets, keep focal lesions apart from Lung Opacity; when only a lesion is
present and the source says nothing about opacity, Lung Opacity is left as the source gives it.

Reading labels from free text (TB readings, COVID clinical notes) is done by the caller with
`reportgen.eval.labeler` (see `label_texts`) and passed in as `text_labels`; only its positive and
uncertain pathology values are merged, never its negatives or its No Finding (a labeler reports
No Finding = 1 when a short reading such as "right PTB" names nothing it knows, which would be
wrong for a TB-positive image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from reportgen.constants import NEGATIVE, OBSERVATIONS, POSITIVE

NUM_OBSERVATIONS = len(OBSERVATIONS)
_INDEX = {name: i for i, name in enumerate(OBSERVATIONS)}

#: Observations that are pathologies: everything except No Finding and Support Devices. CheXpert's
#: No Finding = 1 means all of these are absent (support devices may be present).
PATHOLOGIES: tuple[str, ...] = tuple(o for o in OBSERVATIONS if o not in ("No Finding", "Support Devices"))

#: Children of Lung Opacity whose positive implies a positive Lung Opacity (see module docstring).
OPACITY_CHILDREN: tuple[str, ...] = ("Edema", "Consolidation", "Pneumonia", "Atelectasis")

# ---------------------------------------------------------------------------------------------- NIH

#: NIH ChestX-ray14 finding -> CheXpert observation. Emphysema, Fibrosis and Hernia have no CheXpert
#: counterpart: they map to nothing, but they still make No Finding 0 (the image is not normal).
NIH_TO_CHEXPERT: dict[str, str | None] = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
    "Effusion": "Pleural Effusion",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
    "Infiltration": "Lung Opacity",
    "Mass": "Lung Lesion",
    "Nodule": "Lung Lesion",
    "Pleural_Thickening": "Pleural Other",
    "No Finding": "No Finding",
    "Emphysema": None,
    "Fibrosis": None,
    "Hernia": None,
}

#: Observations NIH's vocabulary can say something about: 0 when absent from an image's list.
#: The other three (Enlarged Cardiomediastinum, Fracture, Support Devices) stay NaN: NIH never
#: looked for them.
NIH_COVERED: tuple[str, ...] = tuple(
    o for o in OBSERVATIONS if o in {v for v in NIH_TO_CHEXPERT.values() if v is not None}
)


def empty_labels() -> np.ndarray:
    """A (14,) float32 array of NaN: nothing known."""
    return np.full(NUM_OBSERVATIONS, np.nan, dtype=np.float32)


def labels_from_dict(values: Mapping[str, float | None]) -> np.ndarray:
    """Build a (14,) array from {observation: value}; missing keys and None are NaN.

    Raises:
        KeyError: for a name that is not one of the 14 observations, or a value not in {1, 0, -1}.
    """
    out = empty_labels()
    for name, value in values.items():
        if name not in _INDEX:
            raise KeyError(f"unknown observation {name!r}; expected one of {list(OBSERVATIONS)}")
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        if float(value) not in (1.0, 0.0, -1.0):
            raise KeyError(f"label value for {name!r} must be 1, 0, -1 or empty, got {value!r}")
        out[_INDEX[name]] = float(value)
    return out


def normal_labels() -> np.ndarray:
    """Labels of an image read as normal: No Finding 1, every pathology 0, Support Devices NaN.

    This is CheXpert's own definition of No Finding (no pathology; devices allowed).
    """
    out = empty_labels()
    out[_INDEX["No Finding"]] = POSITIVE
    for name in PATHOLOGIES:
        out[_INDEX[name]] = NEGATIVE
    return out


def propagate_opacity(labels: np.ndarray) -> np.ndarray:
    """Return a copy with Lung Opacity = 1 when any of `OPACITY_CHILDREN` is positive."""
    out = np.array(labels, dtype=np.float32, copy=True)
    if any(out[_INDEX[c]] == POSITIVE for c in OPACITY_CHILDREN):
        out[_INDEX["Lung Opacity"]] = POSITIVE
    return out


def merge_text_positives(labels: np.ndarray, text_labels: np.ndarray | None) -> np.ndarray:
    """Overlay a text labeler's positive (1) and uncertain (-1) pathology values onto `labels`.

    A positive already in `labels` is never downgraded to uncertain. Negatives and No Finding from
    the text are ignored (see module docstring for why).
    """
    out = np.array(labels, dtype=np.float32, copy=True)
    if text_labels is None:
        return out
    text = np.asarray(text_labels, dtype=np.float32)
    if text.shape != (NUM_OBSERVATIONS,):
        raise ValueError(f"text labels must have shape ({NUM_OBSERVATIONS},), got {text.shape}")
    for name in PATHOLOGIES:
        i = _INDEX[name]
        if text[i] == POSITIVE or (text[i] == -1.0 and out[i] != POSITIVE):
            out[i] = text[i]
    return propagate_opacity(out)


def nih_labels(findings: str | Sequence[str]) -> np.ndarray:
    """Map one NIH image's findings ("Effusion|Infiltration" or a list) to CheXpert labels.

    Listed findings are positive; NIH-covered observations not listed are 0; Enlarged
    Cardiomediastinum, Fracture and Support Devices are NaN. No Finding is 1 only for NIH's own
    "No Finding" and 0 otherwise (Emphysema/Fibrosis/Hernia alone also give 0). Opacity children
    propagate to Lung Opacity.

    Raises:
        KeyError: for a finding name that is not in NIH's vocabulary (catches typos and new names).
    """
    names = [f.strip() for f in findings.split("|")] if isinstance(findings, str) else [f.strip() for f in findings]
    names = [n for n in names if n]
    if not names:
        raise KeyError("empty NIH finding list; a normal image is labelled 'No Finding'")
    out = empty_labels()
    for obs in NIH_COVERED:
        out[_INDEX[obs]] = NEGATIVE
    for name in names:
        if name not in NIH_TO_CHEXPERT:
            raise KeyError(f"unknown NIH finding {name!r}; expected one of {sorted(NIH_TO_CHEXPERT)}")
        target = NIH_TO_CHEXPERT[name]
        if target is not None:
            out[_INDEX[target]] = POSITIVE
    if "No Finding" in names and len(names) > 1:
        raise KeyError(f"NIH 'No Finding' combined with findings {names}")
    return propagate_opacity(out)


# ----------------------------------------------------------------------------------------------- TB


def tb_labels(is_tb: bool, text_labels: np.ndarray | None = None) -> np.ndarray:
    """Labels of an NLM TB-screening image (Shenzhen or Montgomery).

    Normal (`_0`) images were read as normal by radiologists in a screening programme, so they get
    `normal_labels()`: No Finding 1 and every pathology 0 (by CheXpert's definition of No Finding);
    Support Devices stays NaN because a normal reading says nothing about lines or tubes.

    TB (`_1`) images get No Finding 0 and Lung Opacity 1: pulmonary TB shows on a radiograph as
    consolidation, nodular/patchy opacity or cavitation, all of which a report labels as an opacity;
    which one is not known, so the other observations stay NaN. When the image has a reading
    (Shenzhen), `text_labels` from the report labeler adds its positives, e.g. "left PTB, left
    pleurisy with pleural effusion" adds Pleural Effusion.

    Args:
        is_tb: the image's TB status from its file name suffix (ground truth of the set).
        text_labels: (14,) labeler output for the reading text, or None.
    """
    if not is_tb:
        return normal_labels()
    out = empty_labels()
    out[_INDEX["No Finding"]] = NEGATIVE
    out[_INDEX["Lung Opacity"]] = POSITIVE
    return merge_text_positives(out, text_labels)


# -------------------------------------------------------------------------------------------- COVID

#: Leaf names in the COVID collection's `finding` column that are pneumonias (infectious agents,
#: plus lipoid and aspiration pneumonia). Older metadata gives only the leaf ("COVID-19",
#: "Streptococcus"), newer metadata the path ("Pneumonia/Viral/COVID-19"); both are recognised.
COVID_PNEUMONIA_TERMS: tuple[str, ...] = (
    "pneumonia", "covid", "sars", "mers", "viral", "bacterial", "fungal", "influenza", "h1n1", "varicella",
    "herpes", "pneumocystis", "streptococcus", "staphylococcus", "klebsiella", "mycoplasma", "legionella",
    "chlamydophila", "e.coli", "e. coli", "escherichia", "aspergillosis", "nocardia", "lipoid", "aspiration",
    "moraxella", "candida", "histoplasmosis", "cryptococcus",
)  # fmt: skip


def covid_labels(finding: str, text_labels: np.ndarray | None = None) -> np.ndarray:
    """Map a COVID-19 collection `finding` string to CheXpert labels.

    Rules, applied to the lower-cased string (parts split on "/" and ","):

    * "No Finding" -> `normal_labels()` (No Finding 1, pathologies 0).
    * any pneumonia (see `COVID_PNEUMONIA_TERMS`) -> Pneumonia 1, Lung Opacity 1, No Finding 0.
    * "ARDS" -> Lung Opacity 1, No Finding 0 (diffuse bilateral airspace opacity by definition;
      Edema is left NaN because ARDS is non-cardiogenic and labelers disagree on calling it edema).
    * "Tuberculosis" -> as a TB-positive image: Lung Opacity 1, No Finding 0.
    * anything else ("todo", "Unknown", "Lung cancer"...) -> all NaN: not enough to say.

    These are *patient diagnosis* labels, not read from the image: an early COVID-19 radiograph may
    be clear. Treat them as weak labels. `text_labels` (from `clinical_notes`) may add positives;
    case notes often describe CT or earlier images, so the default loader does not use them.
    """
    text = finding.strip().lower()
    parts = [p.strip() for chunk in text.split("/") for p in chunk.split(",") if p.strip()]
    if text in ("no finding", "normal"):
        return normal_labels()
    out = empty_labels()
    known = False
    if any(term in part for part in parts for term in COVID_PNEUMONIA_TERMS):
        out[_INDEX["Pneumonia"]] = POSITIVE
        out[_INDEX["Lung Opacity"]] = POSITIVE
        known = True
    if "ards" in parts:
        out[_INDEX["Lung Opacity"]] = POSITIVE
        known = True
    if any(p in ("tuberculosis", "tb") for p in parts):
        out[_INDEX["Lung Opacity"]] = POSITIVE
        known = True
    if known:
        out[_INDEX["No Finding"]] = NEGATIVE
        return merge_text_positives(out, text_labels)
    return out


# ------------------------------------------------------------------------------------------ labeler


def label_texts(texts: Sequence[str]) -> np.ndarray | None:
    """Label free texts with `reportgen.eval.labeler.label_reports`, or None if it is not installed.

    Imported lazily so the data layer does not load the labeler unless a loader asks for it.

    Returns:
        float32 (n, 14) array, or None when the labeler module does not exist.
    """
    try:
        from reportgen.eval.labeler import label_reports
    except ModuleNotFoundError as exc:
        if exc.name not in ("reportgen.eval.labeler", "reportgen.eval"):
            raise
        return None
    if not texts:
        return np.zeros((0, NUM_OBSERVATIONS), dtype=np.float32)
    return np.asarray(label_reports(list(texts)), dtype=np.float32)
