"""Draft report -> DICOM Comprehensive SR (Part-10 bytes) for PACS/RIS that take reports as DICOM.

The document is explicitly a draft: CompletionFlag PARTIAL, VerificationFlag UNVERIFIED and
PreliminaryFlag PRELIMINARY; the disclaimer is a TEXT item in the content tree. Patient and study
attributes are copied from the first input DICOM header so the SR files into the same study; the
input instances are referenced from the findings (INFERRED FROM) and listed as evidence. PNG/JPEG
studies have no DICOM identity: the SR gets a new (or the job's) StudyInstanceUID, empty patient
attributes and no evidence references.

Content tree (codes from DCM/LOINC, no template claimed):

    CONTAINER (LN 18748-4 Diagnostic Imaging Report)
      HAS CONCEPT MOD  Language of Content = English
      HAS OBS CONTEXT  Observer Type = Device (+ device UID, name, model name)
      CONTAINS TEXT    Indications for Procedure          (when the job has an indication)
      CONTAINS CONTAINER Findings
        CONTAINS TEXT Finding
          INFERRED FROM IMAGE Source image                (one per input DICOM instance)
      CONTAINS CONTAINER Impressions
        CONTAINS TEXT Impression
      CONTAINS TEXT    Comment = "Flagged for review: ..." (one per flagged sentence)
      CONTAINS TEXT    Comment = disclaimer
"""

from __future__ import annotations

from collections.abc import Sequence
from io import BytesIO

import highdicom as hd
import pydicom
from highdicom.sr import (
    CodedConcept,
    ComprehensiveSR,
    ContainerContentItem,
    DeviceObserverIdentifyingAttributes,
    ImageContentItem,
    LanguageOfContentItemAndDescendants,
    ObserverContext,
    RelationshipTypeValues,
    TextContentItem,
)
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from reportgen.api.fhir import require_report

from reportgen.constants import DISCLAIMER
from reportgen.errors import ReportgenError

SERIES_NUMBER = 9901  # high on purpose: sorts after acquisition series in PACS viewers
SERIES_DESCRIPTION = "AI draft report (unverified)"
MANUFACTURER = "reportgen"

_PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
)
_CONTAINS = RelationshipTypeValues.CONTAINS
_ENGLISH = CodedConcept(value="en-US", scheme_designator="RFC5646", meaning="English (United States)")


def _text(name, value: str) -> TextContentItem:
    return TextContentItem(name=name, value=value, relationship_type=_CONTAINS)


def _evidence(job: dict, source_headers: Sequence[pydicom.Dataset]) -> tuple[list[pydicom.Dataset], bool]:
    """Datasets highdicom takes patient/study identity from; second value: they are real instances."""
    headers = [h for h in source_headers if "SOPInstanceUID" in h and "SOPClassUID" in h]
    if headers:
        first = pydicom.Dataset()
        for keyword in (*_PATIENT_STUDY_KEYWORDS, "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID"):
            setattr(first, keyword, headers[0].get(keyword, ""))
        if not first.StudyInstanceUID:
            first.StudyInstanceUID = job.get("study_instance_uid") or generate_uid()
        if not first.SeriesInstanceUID:
            first.SeriesInstanceUID = generate_uid()
        if not first.AccessionNumber and job.get("accession_number"):
            first.AccessionNumber = str(job["accession_number"])
        return [first, *headers[1:]], True
    # No DICOM input: a placeholder carrying the identity only; it is never referenced nor recorded.
    placeholder = pydicom.Dataset()
    for keyword in _PATIENT_STUDY_KEYWORDS:
        setattr(placeholder, keyword, "")
    placeholder.StudyInstanceUID = job.get("study_instance_uid") or generate_uid()
    placeholder.AccessionNumber = str(job.get("accession_number") or "")
    placeholder.SOPClassUID = SecondaryCaptureImageStorage
    placeholder.SOPInstanceUID = generate_uid()
    placeholder.SeriesInstanceUID = generate_uid()
    return [placeholder], False


def _content(job: dict, report: dict, referenced: Sequence[pydicom.Dataset]) -> ContainerContentItem:
    model = report.get("model") or {}
    model_name = str(model.get("name") or "reportgen")
    # The same model (sha256) always gets the same Device Observer UID.
    device_uid = generate_uid(entropy_srcs=[str(model.get("sha256") or model_name)])
    root = ContainerContentItem(name=codes.LN.DiagnosticImagingReport)
    items = list(LanguageOfContentItemAndDescendants(_ENGLISH))  # a template: a list of items
    items += ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=device_uid,
            name=model_name,
            manufacturer_name=MANUFACTURER,
            model_name=f"{model_name} {model.get('version') or ''}".strip(),
        ),
    )
    if job.get("indication"):
        items.append(_text(codes.DCM.IndicationsForProcedure, str(job["indication"])))

    finding = _text(codes.DCM.Finding, report.get("findings") or "(none)")
    if referenced:
        finding.ContentSequence = [
            ImageContentItem(
                name=codes.DCM.SourceImage,
                referenced_sop_class_uid=ds.SOPClassUID,
                referenced_sop_instance_uid=ds.SOPInstanceUID,
                relationship_type=RelationshipTypeValues.INFERRED_FROM,
            )
            for ds in referenced
        ]
    findings = ContainerContentItem(name=codes.DCM.Findings, relationship_type=_CONTAINS)
    findings.ContentSequence = [finding]
    impressions = ContainerContentItem(name=codes.DCM.Impressions, relationship_type=_CONTAINS)
    impressions.ContentSequence = [_text(codes.DCM.Impression, report.get("impression") or "(none)")]
    items += [findings, impressions]
    items += [_text(codes.DCM.Comment, f"Flagged for review: {s}") for s in report.get("flagged_sentences") or []]
    items.append(_text(codes.DCM.Comment, report.get("disclaimer") or DISCLAIMER))
    root.ContentSequence = items
    return root


def to_sr(job: dict, source_headers: list[pydicom.Dataset]) -> bytes:
    """Encode a finished job's draft as an unverified, preliminary Comprehensive SR.

    Args:
        job: the API job dict (see `reportgen.api.fhir.to_fhir`).
        source_headers: DICOM headers (without PixelData) of the study's input images, in upload
            order; empty for PNG/JPEG studies. PHI: nothing from them is logged.

    Returns:
        A DICOM Part-10 file (preamble, "DICM", file meta; Explicit VR Little Endian).

    Raises:
        ReportNotReadyError: the job has no report.
        ReportgenError: the headers or report cannot be encoded.
    """
    report = require_report(job)
    evidence, real = _evidence(job, source_headers)
    try:
        sr = ComprehensiveSR(
            evidence=evidence,
            content=_content(job, report, evidence if real else []),
            series_instance_uid=hd.UID(),
            series_number=SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=False,
            is_final=False,
            is_verified=False,
            record_evidence=real,
            transfer_syntax_uid=ExplicitVRLittleEndian,
            specific_character_set="ISO_IR 192",  # UTF-8: report text and names may be non-ASCII
            series_description=SERIES_DESCRIPTION,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        # The message may quote header values (PHI); name the failure type only.
        raise ReportgenError(f"cannot encode job {job.get('id', '?')} as DICOM SR ({type(exc).__name__})") from exc
    if not real:
        for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
            if keyword in sr:
                delattr(sr, keyword)
    buffer = BytesIO()
    pydicom.dcmwrite(buffer, sr, enforce_file_format=True)
    return buffer.getvalue()
