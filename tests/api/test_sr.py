"""DICOM SR export: Part-10 round trip, draft flags, identity copied from the input study."""

import io

import pydicom
import pytest
from pydicom.uid import ComprehensiveSRStorage
from reportgen.api.fhir import ReportNotReadyError
from reportgen.api.sr import to_sr

from reportgen.constants import DISCLAIMER
from reportgen.testing import make_dicom

IDENTITY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
)
STUDY_UID = "1.2.826.0.1.3680043.8.498.42"


def make_job(**overrides) -> dict:
    job = {
        "id": "job-1",
        "status": "done",
        "created_at": "2024-05-01T12:00:00+00:00",
        "indication": "Cough for two weeks.",
        "report": {
            "findings": "The heart is enlarged. No pneumothorax.",
            "impression": "Cardiomegaly.",
            "labels": {},
            "triage": {"priority": "routine", "reasons": []},
            "model": {"name": "tiny", "version": "0.1.0", "sha256": "cd" * 32},
            "disclaimer": DISCLAIMER,
        },
    }
    job.update(overrides)
    return job


def read(data: bytes) -> pydicom.Dataset:
    assert data[128:132] == b"DICM"  # Part-10: preamble + magic
    return pydicom.dcmread(io.BytesIO(data))


def texts(ds: pydicom.Dataset) -> dict[str, list[str]]:
    """Code meaning -> TEXT values, over the whole content tree."""
    found: dict[str, list[str]] = {}
    for item in ds.get("ContentSequence", []):
        if item.ValueType == "TEXT":
            found.setdefault(item.ConceptNameCodeSequence[0].CodeMeaning, []).append(item.TextValue)
        for key, values in texts(item).items():
            found.setdefault(key, []).extend(values)
    return found


@pytest.fixture
def headers(tmp_path) -> list[pydicom.Dataset]:
    same = {"patient_name": "Doe^Jane", "patient_id": "PID42", "accession": "ACC42", "study_uid": STUDY_UID}
    paths = [
        make_dicom(tmp_path / "pa.dcm", view="PA", **same),
        make_dicom(tmp_path / "ll.dcm", view="LL", seed=1, **same),
    ]
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]


def test_round_trip_and_draft_flags(headers):
    ds = read(to_sr(make_job(), headers))
    assert ds.SOPClassUID == ComprehensiveSRStorage
    assert ds.file_meta.MediaStorageSOPClassUID == ComprehensiveSRStorage
    assert ds.Modality == "SR"
    assert ds.CompletionFlag == "PARTIAL"
    assert ds.VerificationFlag == "UNVERIFIED"
    assert ds.PreliminaryFlag == "PRELIMINARY"
    assert ds.ConceptNameCodeSequence[0].CodeValue == "18748-4"


def test_content_carries_findings_impression_indication_and_disclaimer(headers):
    found = texts(read(to_sr(make_job(), headers)))
    assert found["Finding"] == ["The heart is enlarged. No pneumothorax."]
    assert found["Impression"] == ["Cardiomegaly."]
    assert found["Indications for Procedure"] == ["Cough for two weeks."]
    assert DISCLAIMER in found["Comment"]
    assert found["Device Observer Name"] == ["tiny"]


def test_identity_copied_from_first_header_and_inputs_referenced(headers):
    ds = read(to_sr(make_job(), headers))
    for keyword in IDENTITY:
        assert str(ds[keyword].value) == str(headers[0][keyword].value), keyword
    assert str(ds.PatientName) == "Doe^Jane" and ds.AccessionNumber == "ACC42" and ds.StudyInstanceUID == STUDY_UID
    assert ds.SeriesInstanceUID != headers[0].SeriesInstanceUID
    assert ds.SOPInstanceUID not in {h.SOPInstanceUID for h in headers}
    evidence = {
        ref.ReferencedSOPInstanceUID
        for series in ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }
    assert evidence == {h.SOPInstanceUID for h in headers}
    finding = next(i for i in ds.ContentSequence if i.ValueType == "CONTAINER").ContentSequence[0]
    images = [i for i in finding.ContentSequence if i.ValueType == "IMAGE"]
    assert {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in images} == evidence
    assert all(i.RelationshipType == "INFERRED FROM" for i in images)


def test_headers_stored_as_dicom_json_work(headers):
    # The API keeps input headers as DICOM JSON and rebuilds Datasets from it for export.
    rebuilt = [pydicom.Dataset.from_json(h.to_json()) for h in headers]
    ds = read(to_sr(make_job(), rebuilt))
    assert ds.PatientID == "PID42" and ds.StudyInstanceUID == STUDY_UID
    assert "CurrentRequestedProcedureEvidenceSequence" in ds


def test_png_study_gets_new_study_and_empty_patient():
    first, second = read(to_sr(make_job(), [])), read(to_sr(make_job(), []))
    for ds in (first, second):
        assert str(ds.PatientName) == "" and ds.PatientID == "" and ds.PatientBirthDate == "" and ds.PatientSex == ""
        assert ds.AccessionNumber == ""
        assert "CurrentRequestedProcedureEvidenceSequence" not in ds
        assert "PertinentOtherEvidenceSequence" not in ds
        assert ds.CompletionFlag == "PARTIAL" and ds.VerificationFlag == "UNVERIFIED"
    assert first.StudyInstanceUID != second.StudyInstanceUID
    assert pydicom.uid.UID(first.StudyInstanceUID).is_valid


def test_png_study_uses_job_identifiers_when_given():
    job = make_job(study_instance_uid="1.2.826.0.1.3680043.8.498.7", accession_number="ACC9")
    ds = read(to_sr(job, []))
    assert ds.StudyInstanceUID == "1.2.826.0.1.3680043.8.498.7"
    assert ds.AccessionNumber == "ACC9"


def test_non_ascii_text_and_flagged_sentences_survive():
    job = make_job()
    job["report"]["findings"] = "Opacité 2×3 cm in the right upper lobe."
    job["report"]["flagged_sentences"] = ["Opacité 2×3 cm in the right upper lobe."]
    found = texts(read(to_sr(job, [])))
    assert found["Finding"] == ["Opacité 2×3 cm in the right upper lobe."]
    assert "Flagged for review: Opacité 2×3 cm in the right upper lobe." in found["Comment"]


def test_job_without_report_is_refused():
    with pytest.raises(ReportNotReadyError):
        to_sr({"id": "x", "status": "failed"}, [])
