"""Draft report -> FHIR R4 (R4B models) DiagnosticReport.

The resource is a *preliminary* report: `status` is "preliminary", the disclaimer travels in an
extension, in the narrative and in the attached plain text, and the generating model is a contained
`Device`. R4 `DiagnosticReport.performer` may only reference Practitioner/PractitionerRole/
Organization/CareTeam, so the Device is referenced from a `generated-by` extension instead; a strict
validator (HAPI, the official one) would reject a Device performer.

Everything is validated by building the `fhir.resources` R4B model before it is returned, so a
malformed job fails here (with a `ReportgenError`) rather than at the receiving FHIR server.
"""

from __future__ import annotations

import base64
import html
import re
from datetime import datetime, timezone
from typing import Any

from fhir.resources.R4B.diagnosticreport import DiagnosticReport

from reportgen.constants import DISCLAIMER
from reportgen.errors import ReportgenError

#: Base of this project's extension and code-system URLs. Not resolvable on purpose (`.invalid`);
#: a deployment that publishes StructureDefinitions should replace it.
FHIR_BASE = "https://reportgen.invalid/fhir"
EXT_DISCLAIMER = f"{FHIR_BASE}/StructureDefinition/disclaimer"
EXT_GENERATED_BY = f"{FHIR_BASE}/StructureDefinition/generated-by"
EXT_FLAGGED_SENTENCE = f"{FHIR_BASE}/StructureDefinition/flagged-sentence"
EXT_TRIAGE = f"{FHIR_BASE}/StructureDefinition/triage"
#: CheXpert observation names used as codes (no standard terminology maps all 14 one-to-one).
CHEXPERT_SYSTEM = f"{FHIR_BASE}/CodeSystem/chexpert-observation"
MODEL_HASH_SYSTEM = f"{FHIR_BASE}/NamingSystem/model-sha256"

LOINC = "http://loinc.org"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"  # diagnostic service section
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"  # identifier type

REPORT_TITLE = "AI draft chest X-ray report"
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_DEVICE_ID = "model"


class ReportNotReadyError(ReportgenError):
    """The job has no report yet (queued, running or failed); there is nothing to export."""

    code = "report_not_ready"
    http_status = 409


def require_report(job: dict) -> dict:
    """Return `job["report"]` or raise `ReportNotReadyError` naming the job's status."""
    report = job.get("report")
    if not report:
        raise ReportNotReadyError(
            f"job {job.get('id', '?')} has no report (status {job.get('status', 'unknown')!r}); "
            "wait until its status is 'done' before exporting"
        )
    return report


def report_text(report: dict) -> str:
    """Plain-text rendering of a draft: findings, impression, flagged sentences, disclaimer.

    The review page builds the same layout client-side (api/static/app.js) for edited text.
    """
    parts = [
        "FINDINGS:",
        (report.get("findings") or "").strip(),
        "",
        "IMPRESSION:",
        (report.get("impression") or "").strip(),
    ]
    flagged = report.get("flagged_sentences") or []
    if flagged:
        parts += ["", "SENTENCES FLAGGED FOR REVIEW:", *[f"- {s}" for s in flagged]]
    parts += ["", report.get("disclaimer") or DISCLAIMER, ""]
    return "\n".join(parts)


def fhir_instant(value: str | None) -> str:
    """ISO 8601 timestamp -> FHIR `instant` (seconds precision, timezone required; naive = UTC)."""
    when = datetime.fromisoformat(value) if value else datetime.now(timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _narrative(report: dict, disclaimer: str) -> dict:
    def para(label: str, text: str) -> str:
        return f"<p><b>{label}</b> {html.escape(text)}</p>"

    body = (
        para("Findings:", report.get("findings") or "")
        + para("Impression:", report.get("impression") or "")
        + f"<p><i>{html.escape(disclaimer)}</i></p>"
    )
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


def _device(model: dict) -> dict:
    name = str(model.get("name") or "reportgen")
    device: dict[str, Any] = {
        "resourceType": "Device",
        "id": _DEVICE_ID,
        "deviceName": [{"name": name, "type": "model-name"}],
        "type": {"text": "AI report-drafting software"},
    }
    if model.get("version"):
        device["version"] = [{"value": str(model["version"])}]
    if model.get("sha256"):
        device["identifier"] = [{"system": MODEL_HASH_SYSTEM, "value": str(model["sha256"])}]
    return device


def _conclusion_codes(labels: dict) -> list[dict]:
    codes = []
    for name, label in labels.items():
        if isinstance(label, dict) and label.get("status") == "positive":
            codes.append({"coding": [{"system": CHEXPERT_SYSTEM, "code": name, "display": name}], "text": name})
    return codes


def _triage_extension(triage: dict) -> dict:
    sub: list[dict] = [{"url": "priority", "valueCode": str(triage.get("priority") or "routine")}]
    sub += [{"url": "reason", "valueString": str(r)} for r in triage.get("reasons") or []]
    return {"url": EXT_TRIAGE, "extension": sub}


def to_fhir(job: dict) -> dict:
    """Build and validate a FHIR R4 DiagnosticReport for a finished job.

    Args:
        job: the API job dict (`id`, `status`, `created_at`, optional `accession_number`,
            `study_instance_uid`, `indication`, and `report` as produced by `DraftReport.to_dict`,
            optionally with `flagged_sentences`).

    Returns:
        The resource as JSON-ready dict (`model_dump(mode="json", exclude_none=True)`).

    Raises:
        ReportNotReadyError: the job has no report.
        ReportgenError: the job's content does not make a valid resource.
    """
    report = require_report(job)
    disclaimer = report.get("disclaimer") or DISCLAIMER
    model = report.get("model") or {}
    issued = fhir_instant(job.get("created_at"))

    extensions: list[dict] = [
        {"url": EXT_DISCLAIMER, "valueString": disclaimer},
        {"url": EXT_GENERATED_BY, "valueReference": {"reference": f"#{_DEVICE_ID}", "display": model.get("name")}},
    ]
    if report.get("triage"):
        extensions.append(_triage_extension(report["triage"]))
    extensions += [{"url": EXT_FLAGGED_SENTENCE, "valueString": str(s)} for s in report.get("flagged_sentences") or []]

    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "language": "en",
        "text": _narrative(report, disclaimer),
        "contained": [_device(model)],
        "extension": extensions,
        "status": "preliminary",
        "category": [{"coding": [{"system": V2_0074, "code": "RAD", "display": "Radiology"}]}],
        "code": {
            "coding": [{"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}],
            "text": REPORT_TITLE,
        },
        "issued": issued,
        "conclusion": report.get("impression") or "",
        "presentedForm": [
            {
                "contentType": "text/plain; charset=utf-8",
                "language": "en",
                "data": base64.b64encode(report_text(report).encode("utf-8")).decode("ascii"),
                "title": REPORT_TITLE,
                "creation": issued,
            }
        ],
    }
    job_id = str(job.get("id") or "")
    if _FHIR_ID.match(job_id):
        resource["id"] = job_id
    if job.get("accession_number"):
        resource["identifier"] = [
            {
                "use": "usual",
                "type": {"coding": [{"system": V2_0203, "code": "ACSN", "display": "Accession ID"}]},
                "value": str(job["accession_number"]),
            }
        ]
    if job.get("study_instance_uid"):
        resource["imagingStudy"] = [
            {
                "type": "ImagingStudy",
                "identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{job['study_instance_uid']}"},
            }
        ]
    codes = _conclusion_codes(report.get("labels") or {})
    if codes:
        resource["conclusionCode"] = codes
    if not resource["conclusion"]:
        del resource["conclusion"]  # FHIR strings may not be empty

    try:
        validated = DiagnosticReport.model_validate(resource)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        # Name the failing fields only: pydantic's message echoes input values (report text, identifiers).
        where = ", ".join(".".join(map(str, e["loc"])) for e in getattr(exc, "errors", list)()) or type(exc).__name__
        raise ReportgenError(
            f"job {job_id or '?'} does not make a valid FHIR DiagnosticReport (fields: {where})"
        ) from exc
    return validated.model_dump(mode="json", exclude_none=True)
