"""Mappings from NIH / TB / COVID vocabularies to the 14 CheXpert observations."""

import sys

import numpy as np
import pytest

from reportgen.constants import OBSERVATIONS
from reportgen.data import labelmaps as lm

IDX = {name: i for i, name in enumerate(OBSERVATIONS)}
NIH_SILENT = ("Enlarged Cardiomediastinum", "Fracture", "Support Devices")


def as_dict(labels: np.ndarray) -> dict[str, float | None]:
    """{observation: value} with NaN as None, for readable assertions."""
    return {o: (None if np.isnan(v) else float(v)) for o, v in zip(OBSERVATIONS, labels, strict=True)}


def test_normal_labels_follow_chexpert_no_finding_definition():
    d = as_dict(lm.normal_labels())
    assert d["No Finding"] == 1.0
    assert d["Support Devices"] is None
    assert all(d[o] == 0.0 for o in lm.PATHOLOGIES)
    assert len(lm.PATHOLOGIES) == 12


@pytest.mark.parametrize(
    ("nih", "chexpert"),
    [
        ("Atelectasis", "Atelectasis"),
        ("Cardiomegaly", "Cardiomegaly"),
        ("Consolidation", "Consolidation"),
        ("Edema", "Edema"),
        ("Effusion", "Pleural Effusion"),
        ("Pneumonia", "Pneumonia"),
        ("Pneumothorax", "Pneumothorax"),
        ("Infiltration", "Lung Opacity"),
        ("Mass", "Lung Lesion"),
        ("Nodule", "Lung Lesion"),
        ("Pleural_Thickening", "Pleural Other"),
    ],
)
def test_nih_single_finding_lands_in_its_column(nih, chexpert):
    d = as_dict(lm.nih_labels(nih))
    assert d[chexpert] == 1.0
    assert d["No Finding"] == 0.0
    for obs in NIH_SILENT:
        assert d[obs] is None
    implied = {"Lung Opacity"} if chexpert in lm.OPACITY_CHILDREN else set()
    positives = {o for o, v in d.items() if v == 1.0}
    assert positives == {chexpert} | implied
    # Everything else NIH covers is a negative (its labels are exhaustive over its classes).
    for obs in lm.NIH_COVERED:
        if obs not in positives:
            assert d[obs] == 0.0, obs


def test_nih_no_finding_and_unmapped_findings():
    d = as_dict(lm.nih_labels("No Finding"))
    assert d["No Finding"] == 1.0
    assert all(d[o] == 0.0 for o in lm.NIH_COVERED if o != "No Finding")
    assert all(d[o] is None for o in NIH_SILENT)
    for unmapped in ("Emphysema", "Fibrosis", "Hernia"):
        d = as_dict(lm.nih_labels(unmapped))
        assert d["No Finding"] == 0.0
        assert not any(v == 1.0 for v in d.values())


def test_nih_multi_label_string_and_list_agree_and_hierarchy():
    a = lm.nih_labels("Atelectasis|Effusion|Mass")
    b = lm.nih_labels(["Mass", "Atelectasis", "Effusion"])
    np.testing.assert_array_equal(a, b)
    d = as_dict(a)
    assert d["Atelectasis"] == d["Pleural Effusion"] == d["Lung Lesion"] == d["Lung Opacity"] == 1.0
    assert d["Cardiomegaly"] == 0.0
    # A lesion alone does not imply an opacity.
    assert as_dict(lm.nih_labels("Nodule"))["Lung Opacity"] == 0.0
    assert a.dtype == np.float32 and a.shape == (14,)


@pytest.mark.parametrize("bad", ["Pneumonitis", "", "No Finding|Mass"])
def test_nih_rejects_unknown_or_inconsistent(bad):
    with pytest.raises(KeyError):
        lm.nih_labels(bad)


def test_tb_normal_and_positive_without_text():
    np.testing.assert_array_equal(lm.tb_labels(False), lm.normal_labels())
    d = as_dict(lm.tb_labels(True))
    assert d["Lung Opacity"] == 1.0 and d["No Finding"] == 0.0
    assert {o for o, v in d.items() if v is not None} == {"Lung Opacity", "No Finding"}


def test_tb_merges_only_positive_and_uncertain_pathologies_from_text():
    text = lm.empty_labels()
    text[IDX["No Finding"]] = 1.0  # a labeler's "nothing I know" must not make a TB image normal
    text[IDX["Pleural Effusion"]] = 1.0
    text[IDX["Consolidation"]] = -1.0
    text[IDX["Cardiomegaly"]] = 0.0
    text[IDX["Support Devices"]] = 1.0
    d = as_dict(lm.tb_labels(True, text))
    assert d["No Finding"] == 0.0
    assert d["Pleural Effusion"] == 1.0
    assert d["Consolidation"] == -1.0
    assert d["Lung Opacity"] == 1.0  # not downgraded by an uncertain child
    assert d["Cardiomegaly"] is None  # negatives from text are ignored
    assert d["Support Devices"] is None
    # Normal images ignore text entirely.
    np.testing.assert_array_equal(lm.tb_labels(False, text), lm.normal_labels())


def test_merge_text_positives_checks_shape():
    with pytest.raises(ValueError):
        lm.merge_text_positives(lm.empty_labels(), np.zeros(5, dtype=np.float32))


@pytest.mark.parametrize(
    "finding",
    [
        "COVID-19",
        "Pneumonia/Viral/COVID-19",
        "Pneumonia/Bacterial/Streptococcus",
        "Streptococcus",
        "Pneumocystis",
        "SARS",
        "Mycoplasma Bacterial Pneumonia",
        "Lipoid",
        "E.Coli",
        "Pneumonia",
        "COVID-19, ARDS",
    ],
)
def test_covid_pneumonias(finding):
    d = as_dict(lm.covid_labels(finding))
    assert d["Pneumonia"] == 1.0 and d["Lung Opacity"] == 1.0 and d["No Finding"] == 0.0
    assert d["Cardiomegaly"] is None  # a diagnosis says nothing about the heart


def test_covid_other_findings():
    np.testing.assert_array_equal(lm.covid_labels("No Finding"), lm.normal_labels())
    ards = as_dict(lm.covid_labels("ARDS"))
    assert ards["Lung Opacity"] == 1.0 and ards["No Finding"] == 0.0 and ards["Pneumonia"] is None
    assert ards["Edema"] is None
    tb = as_dict(lm.covid_labels("Tuberculosis"))
    assert tb["Lung Opacity"] == 1.0 and tb["Pneumonia"] is None
    assert np.isnan(lm.covid_labels("todo")).all()
    assert np.isnan(lm.covid_labels("Unknown")).all()


def test_covid_text_positives_merged():
    text = lm.empty_labels()
    text[IDX["Pleural Effusion"]] = 1.0
    d = as_dict(lm.covid_labels("COVID-19", text))
    assert d["Pleural Effusion"] == 1.0 and d["Pneumonia"] == 1.0


def test_labels_from_dict():
    d = as_dict(lm.labels_from_dict({"Edema": 1, "Pneumothorax": 0, "Fracture": -1, "Cardiomegaly": None}))
    assert d["Edema"] == 1.0 and d["Pneumothorax"] == 0.0 and d["Fracture"] == -1.0 and d["Cardiomegaly"] is None
    with pytest.raises(KeyError):
        lm.labels_from_dict({"Effusion": 1})
    with pytest.raises(KeyError):
        lm.labels_from_dict({"Edema": 2})


def test_label_texts_returns_none_without_labeler(monkeypatch):
    monkeypatch.setitem(sys.modules, "reportgen.eval.labeler", None)  # import now raises ModuleNotFoundError
    assert lm.label_texts(["right PTB"]) is None


def test_tb_with_real_labeler():
    labeler = pytest.importorskip("reportgen.eval.labeler")
    text = labeler.label_report("Left pleural effusion.")
    d = as_dict(lm.tb_labels(True, text))
    assert d["Pleural Effusion"] == 1.0
    assert d["No Finding"] == 0.0 and d["Lung Opacity"] == 1.0
    # A reading naming nothing the labeler knows must not turn a TB image into "No Finding".
    plain = as_dict(lm.tb_labels(True, labeler.label_report("PTB in the right upper field")))
    assert plain["No Finding"] == 0.0 and plain["Lung Opacity"] == 1.0
    out = lm.label_texts(["Left pleural effusion.", "PTB in the right upper field"])
    assert out is not None and out.shape == (2, 14)
    assert out[0, IDX["Pleural Effusion"]] == 1.0
