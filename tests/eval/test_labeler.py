"""Behaviour of the rule-based CheXpert-style labeler and its `reportgen label` CLI."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from reportgen.eval.labeler import aggregate_mentions, format_label, label_report, label_reports, main

from reportgen.constants import OBSERVATIONS
from reportgen.errors import DataError, ReportgenError

POS, NEG, UNC = 1.0, 0.0, -1.0


def lab(text: str, observation: str) -> float | None:
    """The label of one observation; None for "not mentioned" (NaN) so it compares with ==."""
    value = float(label_report(text)[OBSERVATIONS.index(observation)])
    return None if math.isnan(value) else value


# One positive / negative / uncertain example per observation (No Finding has its own tests).
CASES = [
    ("Enlarged Cardiomediastinum", "The mediastinum is widened.", POS),
    ("Enlarged Cardiomediastinum", "Enlarged cardiomediastinal silhouette.", POS),
    ("Enlarged Cardiomediastinum", "The cardiomediastinal silhouette is within normal limits.", NEG),
    ("Enlarged Cardiomediastinum", "No mediastinal widening.", NEG),
    ("Enlarged Cardiomediastinum", "Stable cardiomediastinal silhouette.", UNC),
    ("Cardiomegaly", "Mild cardiomegaly.", POS),
    ("Cardiomegaly", "The heart is enlarged.", POS),
    ("Cardiomegaly", "Heart size is normal.", NEG),
    ("Cardiomegaly", "Normal heart size.", NEG),
    ("Cardiomegaly", "The heart is not enlarged.", NEG),
    ("Cardiomegaly", "No cardiomegaly.", NEG),
    ("Cardiomegaly", "Heart size is at the upper limits of normal.", UNC),
    ("Cardiomegaly", "Borderline cardiomegaly.", UNC),
    ("Lung Lesion", "There is a 2 cm nodule in the right upper lobe.", POS),
    ("Lung Lesion", "No suspicious pulmonary nodules or masses.", NEG),
    ("Lung Lesion", "Possible right hilar mass.", UNC),
    ("Lung Opacity", "Patchy opacity in the left lower lobe.", POS),
    ("Lung Opacity", "The lungs are free of focal airspace disease.", NEG),
    ("Lung Opacity", "Questionable infiltrate at the right base.", UNC),
    ("Edema", "Mild interstitial pulmonary edema.", POS),
    ("Edema", "No pulmonary edema.", NEG),
    ("Edema", "Pulmonary vascular congestion.", UNC),
    ("Consolidation", "Right lower lobe consolidation.", POS),
    ("Consolidation", "No focal consolidation.", NEG),
    ("Consolidation", "Consolidation cannot be excluded.", UNC),
    ("Pneumonia", "Findings consistent with pneumonia.", POS),
    ("Pneumonia", "No focal airspace opacity to suggest pneumonia.", NEG),
    ("Pneumonia", "Opacity may represent pneumonia.", UNC),
    ("Atelectasis", "Mild bibasilar atelectasis.", POS),
    ("Atelectasis", "No atelectasis.", NEG),
    ("Atelectasis", "Likely subsegmental atelectasis.", UNC),
    ("Pneumothorax", "Small left apical pneumothorax.", POS),
    ("Pneumothorax", "No pneumothorax.", NEG),
    ("Pneumothorax", "Cannot exclude a tiny pneumothorax.", UNC),
    ("Pleural Effusion", "Small bilateral pleural effusions.", POS),
    ("Pleural Effusion", "No pleural effusion.", NEG),
    ("Pleural Effusion", "Blunting of the left costophrenic angle.", UNC),
    ("Pleural Other", "Biapical pleural thickening.", POS),
    ("Pleural Other", "No pleural thickening.", NEG),
    ("Pleural Other", "Possible pleural plaque.", UNC),
    ("Fracture", "Healed right rib fractures.", POS),
    ("Fracture", "No acute bony abnormality.", NEG),
    ("Fracture", "No displaced rib fracture.", NEG),
    ("Fracture", "Questionable old rib fracture.", UNC),
    ("Support Devices", "Endotracheal tube tip 4 cm above the carina.", POS),
    ("Support Devices", "Right internal jugular central venous catheter in the SVC.", POS),
    ("Support Devices", "Left chest pacemaker with leads in the right heart.", POS),
    ("Support Devices", "The nasogastric tube has been removed.", NEG),
]


@pytest.mark.parametrize(("observation", "text", "expected"), CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_observation_examples(observation: str, text: str, expected: float) -> None:
    assert lab(text, observation) == expected


def test_every_observation_has_positive_and_negative_examples() -> None:
    covered = {(obs, value) for obs, _, value in CASES}
    for obs in OBSERVATIONS[1:]:
        assert (obs, POS) in covered and (obs, NEG) in covered, obs


def test_negation_list_negates_every_item() -> None:
    labels = label_report("No pneumothorax, pleural effusion or focal consolidation.")
    for obs in ("Pneumothorax", "Pleural Effusion", "Consolidation"):
        assert labels[OBSERVATIONS.index(obs)] == NEG, obs


def test_negation_scope_ends_at_but() -> None:
    text = "No effusion but there is atelectasis."
    assert lab(text, "Pleural Effusion") == NEG
    assert lab(text, "Atelectasis") == POS


def test_negation_scope_ends_at_sentence_and_new_finding() -> None:
    assert lab("No pneumothorax. Left lower lobe atelectasis.", "Atelectasis") == POS
    assert lab("No pneumothorax, small left effusion.", "Pleural Effusion") == POS
    assert lab("No effusion, there is mild atelectasis.", "Atelectasis") == POS


@pytest.mark.parametrize(
    "text",
    [
        "Pneumothorax is not seen.",
        "A pneumothorax is not identified.",
        "The previously seen pneumothorax has resolved.",
        "Pneumothorax or pleural effusion is not seen.",
    ],
)
def test_post_negation(text: str) -> None:
    assert lab(text, "Pneumothorax") == NEG


def test_pseudo_negation_does_not_negate() -> None:
    assert lab("No change in the small left pleural effusion.", "Pleural Effusion") == POS
    assert lab("Left lower lobe opacity, not seen on the prior study.", "Lung Opacity") == POS


def test_uncertainty_triggers() -> None:
    assert lab("Atelectasis versus pneumonia.", "Pneumonia") == UNC
    assert lab("Atelectasis versus pneumonia.", "Atelectasis") == UNC
    assert lab("Scarring or atelectasis at the left base.", "Atelectasis") == UNC
    assert lab("A small effusion is possible.", "Pleural Effusion") == UNC
    assert lab("No new consolidation.", "Consolidation") == UNC  # CheXpert: an old one may persist


def test_uncertainty_does_not_leak_to_the_subject() -> None:
    text = "Right basilar opacity may represent atelectasis."
    assert lab(text, "Lung Opacity") == POS
    assert lab(text, "Atelectasis") == UNC
    text = "Mild cardiomegaly with possible small effusion."
    assert lab(text, "Cardiomegaly") == POS
    assert lab(text, "Pleural Effusion") == UNC


def test_positive_beats_uncertain_beats_negative() -> None:
    assert aggregate_mentions([NEG, UNC, POS]) == POS
    assert aggregate_mentions([NEG, UNC]) == UNC
    assert aggregate_mentions([NEG, NEG]) == NEG
    assert lab("No right effusion. Small left effusion.", "Pleural Effusion") == POS
    assert lab("No right effusion. Possible small left effusion.", "Pleural Effusion") == UNC


def test_no_finding_rule() -> None:
    normal = "The heart size is normal. The lungs are clear. No pneumothorax or pleural effusion."
    assert lab(normal, "No Finding") == POS
    # a pathology (positive or uncertain) makes No Finding 0, never blank
    assert lab(normal + " Mild bibasilar atelectasis.", "No Finding") == NEG
    assert lab(normal + " Possible small nodule.", "No Finding") == NEG
    # support devices do not count as a finding
    assert lab(normal + " Right PICC line in the SVC.", "No Finding") == POS
    # abnormalities outside the 14 observations do (CheXpert's no-finding rule)
    assert lab(normal + " Large hiatal hernia.", "No Finding") == NEG
    assert lab(normal + " No hiatal hernia.", "No Finding") == POS


def test_chf_makes_cardiomegaly_uncertain() -> None:
    assert lab("Findings consistent with congestive heart failure.", "Cardiomegaly") == UNC
    assert lab("Findings consistent with congestive heart failure.", "Edema") == POS


def test_not_mentioned_is_nan_and_empty_report_is_all_nan() -> None:
    labels = label_report("No pneumothorax.")
    assert np.isnan(labels[OBSERVATIONS.index("Fracture")])
    assert np.isnan(label_report("")).all()
    assert np.isnan(label_report("   ")).all()


def test_label_reports_shape_dtype_and_consistency() -> None:
    texts = ["Mild cardiomegaly.", "", "No pleural effusion."]
    labels = label_reports(texts)
    assert labels.shape == (3, len(OBSERVATIONS)) and labels.dtype == np.float32
    np.testing.assert_array_equal(labels[0], label_report(texts[0]))
    assert np.isnan(labels[1]).all()
    assert set(np.unique(labels[~np.isnan(labels)])) <= {POS, NEG, UNC}


def test_case_and_whitespace_do_not_matter() -> None:
    a = label_report("NO PNEUMOTHORAX.\n\nMILD   CARDIOMEGALY.")
    b = label_report("no pneumothorax. mild cardiomegaly.")
    np.testing.assert_array_equal(a, b)


def test_decimal_point_is_not_a_sentence_end() -> None:
    assert lab("There is no 1.5 cm nodule.", "Lung Lesion") == NEG


def test_format_label() -> None:
    assert [format_label(v) for v in (1.0, 0.0, -1.0, float("nan"))] == ["1.0", "0.0", "-1.0", ""]


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------


def _write_csv(path, header, rows) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def test_cli_round_trip(tmp_path) -> None:
    src, out = tmp_path / "in.csv", tmp_path / "sub" / "out.csv"
    reports = ["Mild cardiomegaly. No pleural effusion.", "Possible left lower lobe pneumonia, with commas."]
    _write_csv(src, ["id", "findings"], [["a", reports[0]], ["b", reports[1]]])
    assert main([str(src), "-o", str(out), "--column", "findings"]) == 0
    with out.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["findings", *OBSERVATIONS]
    assert [r[0] for r in rows[1:]] == reports
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["Cardiomegaly"] == "1.0"
    assert first["Pleural Effusion"] == "0.0"
    assert first["No Finding"] == "0.0"
    assert first["Pneumothorax"] == ""
    second = dict(zip(rows[0], rows[2], strict=True))
    assert second["Pneumonia"] == "-1.0"
    for row in rows[1:]:
        assert len(row) == 1 + len(OBSERVATIONS)
        assert set(row[1:]) <= {"1.0", "0.0", "-1.0", ""}


def test_cli_default_column_and_empty_cells(tmp_path) -> None:
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    _write_csv(src, ["report"], [["No pneumothorax."], [""]])
    assert main([str(src), "-o", str(out)]) == 0
    with out.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[1][0] == "No pneumothorax." and rows[1][1 + OBSERVATIONS.index("Pneumothorax")] == "0.0"
    assert rows[2] == [""] + [""] * len(OBSERVATIONS)


def test_cli_missing_column_lists_available_columns(tmp_path) -> None:
    src = tmp_path / "in.csv"
    _write_csv(src, ["id", "findings"], [["a", "No effusion."]])
    with pytest.raises(DataError) as excinfo:
        main([str(src), "-o", str(tmp_path / "out.csv")])
    message = str(excinfo.value)
    assert "'report'" in message and "'findings'" in message and "'id'" in message
    assert isinstance(excinfo.value, ReportgenError)


def test_cli_missing_input_file(tmp_path) -> None:
    with pytest.raises(DataError, match="not found"):
        main([str(tmp_path / "nope.csv"), "-o", str(tmp_path / "out.csv")])
