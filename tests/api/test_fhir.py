"""FHIR export: the DiagnosticReport validates, is preliminary and carries the disclaimer."""

import base64

import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from reportgen.api.fhir import (
    CHEXPERT_SYSTEM,
    EXT_DISCLAIMER,
    EXT_FLAGGED_SENTENCE,
    EXT_GENERATED_BY,
    ReportNotReadyError,
    report_text,
    to_fhir,
)

from reportgen.constants import DISCLAIMER, OBSERVATIONS


def make_job(**overrides) -> dict:
    labels = {name: {"probability": 0.1, "status": "negative"} for name in OBSERVATIONS}
    labels["Cardiomegaly"] = {"probability": 0.9, "status": "positive"}
    labels["Edema"] = {"probability": 0.5, "status": "uncertain"}
    job = {
        "id": "3f2a9c1e-0000-4000-8000-000000000001",
        "status": "done",
        "created_at": "2024-05-01T12:34:56.789+00:00",
        "accession_number": "ACC1",
        "study_instance_uid": "1.2.826.0.1.3680043.8.498.1",
        "report": {
            "findings": "The heart is enlarged. No pleural effusion.",
            "impression": "Cardiomegaly.",
            "labels": labels,
            "triage": {"priority": "priority", "reasons": ["Cardiomegaly"]},
            "model": {"name": "tiny", "version": "0.1.0", "sha256": "ab" * 32},
            "disclaimer": DISCLAIMER,
        },
    }
    job.update(overrides)
    return job


def extension_values(resource: dict, url: str) -> list:
    return [e.get("valueString") or e.get("valueReference") for e in resource.get("extension", []) if e["url"] == url]


def test_round_trip_validates_and_is_preliminary():
    resource = to_fhir(make_job())
    parsed = DiagnosticReport.model_validate(resource)  # raises if not a valid R4B resource
    assert parsed.status == "preliminary"
    assert resource["status"] == "preliminary"
    assert parsed.model_dump(mode="json", exclude_none=True) == resource
    assert resource["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "18748-4",
        "display": "Diagnostic imaging study",
    }
    assert resource["category"][0]["coding"][0]["code"] == "RAD"
    assert resource["conclusion"] == "Cardiomegaly."
    assert resource["issued"] == "2024-05-01T12:34:56Z"
    assert resource["id"] == "3f2a9c1e-0000-4000-8000-000000000001"


def test_accession_identifier_and_study_reference():
    resource = to_fhir(make_job())
    (identifier,) = resource["identifier"]
    assert identifier["value"] == "ACC1"
    assert identifier["type"]["coding"][0]["code"] == "ACSN"
    assert resource["imagingStudy"][0]["identifier"]["value"] == "urn:oid:1.2.826.0.1.3680043.8.498.1"


def test_works_without_accession_or_study_uid():
    job = make_job()
    del job["accession_number"], job["study_instance_uid"]
    resource = to_fhir(job)
    DiagnosticReport.model_validate(resource)
    assert "identifier" not in resource
    assert "imagingStudy" not in resource


def test_disclaimer_in_extension_narrative_and_presented_form():
    resource = to_fhir(make_job())
    assert extension_values(resource, EXT_DISCLAIMER) == [DISCLAIMER]
    assert DISCLAIMER.split(":")[0] in resource["text"]["div"]
    (form,) = resource["presentedForm"]
    text = base64.b64decode(form["data"]).decode("utf-8")
    assert text == report_text(make_job()["report"])
    assert "The heart is enlarged." in text and "Cardiomegaly." in text and DISCLAIMER in text
    assert form["contentType"].startswith("text/plain")
    assert form["title"]


def test_model_is_a_contained_device_referenced_from_the_report():
    resource = to_fhir(make_job())
    (device,) = resource["contained"]
    assert device["resourceType"] == "Device"
    assert device["deviceName"][0]["name"] == "tiny"
    assert device["version"][0]["value"] == "0.1.0"
    assert device["identifier"][0]["value"] == "ab" * 32
    (ref,) = extension_values(resource, EXT_GENERATED_BY)
    assert ref["reference"] == f"#{device['id']}"


def test_conclusion_codes_are_the_positive_labels_only():
    resource = to_fhir(make_job())
    codes = [c["coding"][0] for c in resource["conclusionCode"]]
    assert codes == [{"system": CHEXPERT_SYSTEM, "code": "Cardiomegaly", "display": "Cardiomegaly"}]


def test_flagged_sentences_are_carried():
    job = make_job()
    job["report"]["flagged_sentences"] = ["The heart is enlarged."]
    resource = to_fhir(job)
    assert extension_values(resource, EXT_FLAGGED_SENTENCE) == ["The heart is enlarged."]
    assert (
        "The heart is enlarged."
        in base64.b64decode(resource["presentedForm"][0]["data"]).decode().split("FLAGGED FOR REVIEW")[1]
    )


def test_naive_timestamp_is_utc_and_odd_job_id_is_dropped():
    resource = to_fhir(make_job(created_at="2024-05-01T08:00:00", id="job id with spaces"))
    assert resource["issued"] == "2024-05-01T08:00:00Z"
    assert "id" not in resource


def test_job_without_report_is_refused():
    with pytest.raises(ReportNotReadyError, match="queued"):
        to_fhir({"id": "x", "status": "queued"})
