"""Dataset registry: every source becomes a list of `StudyRecord`s.

A loader reads one source's own files (R2Gen annotation.json, a manifest, a label CSV) and returns
studies with image paths, views, report text and CheXpert labels in one shape, so training, eval and
benchmarks never parse a source themselves. Loaders are registered by name (timm-style) and called
through `load_dataset(name, root, split=None, **kw)`.

Sources:

* "iu_xray", "mimic_cxr": R2Gen `annotation.json` (`{train, val, test: [{id, report, image_path}]}`),
  the split published with R2Gen; optional CheXbert-style `labels_csv`.
* "manifest": a user's own paired data as JSONL or CSV (see `load_manifest`).
* "nih_cxr14", "nlm_tb", "covid_cxr": images with labels or short readings but no report. They have
  no published split here, so one is drawn per *patient* from a hash of the patient id
  (`patient_split`): deterministic across machines and runs, and one patient never crosses splits.

Image files are only checked when asked (`require_images=True` raises on the first missing one,
`drop_missing=True` drops those studies): report-only work, such as tokenizer training on IU X-Ray
without its images, must not need them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reportgen.constants import OBSERVATIONS
from reportgen.data import labelmaps
from reportgen.errors import DataError

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(eq=False)  # identity equality: comparing numpy label arrays field-wise would raise
class StudyRecord:
    """One study: its images, what is known about them, and where it came from.

    Attributes:
        id: unique within its source.
        images: image paths (absolute or relative to the working directory); may not exist on disk
            when the loader was called with `require_images=False`.
        views: one entry per image ("frontal"/"lateral" for IU, DICOM-style "PA"/"AP"/"L" elsewhere,
            None when unknown); `view_family` maps them to frontal/lateral.
        findings: FINDINGS section (R2Gen's `report` is findings-only), or None.
        impression: IMPRESSION section, or None.
        labels: float32 (14,) in OBSERVATIONS order, 1/0/-1 and NaN = not mentioned; None = unlabelled.
        patient_id: groups studies of one patient (splits never separate them), or None.
        split: "train", "val" or "test".
        source: the registry name that produced the record.
        text: raw free text that is not a report section (TB reading, COVID case notes), or None.
        meta: small source-specific facts (e.g. {"site": "shenzhen"}); never patient identifiers.
    """

    id: str
    images: list[Path]
    views: list[str | None]
    findings: str | None
    impression: str | None
    labels: np.ndarray | None
    patient_id: str | None
    split: str
    source: str
    text: str | None = None
    meta: dict[str, str] = field(default_factory=dict)


Loader = Callable[..., list[StudyRecord]]
_REGISTRY: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator registering `fn(root: Path, **kw) -> list[StudyRecord]` under `name`."""

    def decorator(fn: Loader) -> Loader:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return decorator


def list_datasets() -> list[str]:
    """Names accepted by `load_dataset`, sorted."""
    return sorted(_REGISTRY)


def load_dataset(name: str, root: str | os.PathLike, split: str | None = None, **kw: Any) -> list[StudyRecord]:
    """Load source `name` from `root`, optionally keeping one split.

    Args:
        name: a registered name (see `list_datasets`).
        root: the source's folder (or, for "manifest" and the R2Gen sources, the file itself).
        split: "train", "val", "test" or None for all.
        **kw: loader options, e.g. `labels_csv=...`, `val_fraction=0.1`; every loader also takes
            `require_images` (DataError naming the first missing image file) and `drop_missing`
            (leave out studies with a missing image), applied here to the requested split only.

    Raises:
        DataError: unknown name or split, missing root, malformed files, missing images on request.
    """
    if name not in _REGISTRY:
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(list_datasets())}")
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    root_path = Path(root)
    if not root_path.exists():
        raise DataError(f"{name} data not found at {root_path}; pass the folder that holds it")
    # Images are checked after the split filter: a user holding only the test images can load "test".
    require_images = bool(kw.pop("require_images", False))
    drop_missing = bool(kw.pop("drop_missing", False))
    try:
        records = _REGISTRY[name](root_path, **kw)
    except TypeError as exc:  # an unknown keyword is a user mistake, not a crash
        if "unexpected keyword argument" in str(exc):
            raise DataError(f"{name}: {exc}") from None
        raise
    if split is not None:
        records = [r for r in records if r.split == split]
    return _check_images(records, require_images, drop_missing)


# ------------------------------------------------------------------------------------------ helpers


def patient_split(patient_id: str, val_fraction: float = 0.2, test_fraction: float = 0.0, salt: str = "") -> str:
    """Deterministic split for a patient: a SHA-1 of the id mapped to [0, 1).

    [0, test_fraction) -> "test", then val_fraction -> "val", the rest "train". Python's `hash()` is
    salted per process, so it would give a different split every run; SHA-1 does not.
    """
    if not (0.0 <= val_fraction and 0.0 <= test_fraction and val_fraction + test_fraction <= 1.0):
        raise DataError(f"split fractions must be >= 0 and sum to <= 1, got val={val_fraction} test={test_fraction}")
    digest = hashlib.sha1(f"{salt}{patient_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def view_family(view: str | None) -> str | None:
    """Map a view name from any source to "frontal", "lateral" or None (unknown)."""
    if view is None:
        return None
    v = view.strip().upper().replace("_", " ")
    if v in ("FRONTAL", "PA", "AP", "AP SUPINE", "AP ERECT", "AP SEMI ERECT", "PA ERECT"):
        return "frontal"
    if v in ("LATERAL", "L", "LL", "RL", "LAT", "LATERAL LEFT", "LATERAL RIGHT"):
        return "lateral"
    return None


def _check_images(records: list[StudyRecord], require_images: bool, drop_missing: bool) -> list[StudyRecord]:
    """Apply the missing-image policy: allow (default), raise (`require_images`) or drop."""
    if not (require_images or drop_missing):
        return records
    kept = []
    for rec in records:
        missing = [p for p in rec.images if not p.is_file()]
        if not missing:
            kept.append(rec)
        elif require_images:
            raise DataError(
                f"{rec.source}: image file missing: {missing[0]} (study {rec.id}); "
                "check image_dir or pass require_images=False"
            )
    return kept


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read a CSV with a header row; utf-8 with a BOM tolerated."""
    if not path.is_file():
        raise DataError(f"CSV file not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = list(reader.fieldnames or [])
    return header, rows


def _require_columns(path: Path, header: Sequence[str], needed: Iterable[str]) -> None:
    missing = [c for c in needed if c not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {list(header)}")


def _parse_label_value(value: Any, where: str) -> float:
    """One label cell: 1/0/-1 (ints, floats or strings) or blank/None/NaN -> NaN."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        value = value.strip()
        if value == "" or value.lower() in ("nan", "none", "null"):
            return math.nan
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: label value {value!r} is not 1, 0, -1 or blank") from None
    if math.isnan(x):
        return x
    if x not in (1.0, 0.0, -1.0):
        raise DataError(f"{where}: label value {value!r} is not 1, 0, -1 or blank")
    return x


def read_labels_csv(path: str | os.PathLike, id_column: str | None = None) -> dict[str, np.ndarray]:
    """Read a CheXbert-style label CSV into {id: float32 (14,)} in OBSERVATIONS order.

    The 14 observation columns may come in any order (CheXbert writes No Finding last); blank cells
    are NaN. The id column is `id_column`, else the first of "Id", "id", "study_id", "dicom_id".

    Raises:
        DataError: no id column, a missing observation column, a bad value, or a duplicated id.
    """
    path = Path(path)
    header, rows = _read_csv(path)
    if id_column is None:
        id_column = next((c for c in ("Id", "id", "study_id", "dicom_id") if c in header), None)
        if id_column is None:
            raise DataError(f"{path}: no id column (Id, id, study_id or dicom_id); found {header}")
    _require_columns(path, header, [id_column, *OBSERVATIONS])
    out: dict[str, np.ndarray] = {}
    for line, row in enumerate(rows, start=2):
        key = row[id_column].strip()
        if key in out:
            raise DataError(f"{path}:{line}: duplicate id {key!r}")
        out[key] = np.array(
            [_parse_label_value(row[o], f"{path}:{line} column {o!r}") for o in OBSERVATIONS], dtype=np.float32
        )
    return out


# -------------------------------------------------------------------------------------------- R2Gen


def _load_r2gen(
    root: Path,
    source: str,
    *,
    annotation: str | os.PathLike | None,
    image_dir: str | os.PathLike | None,
    labels_csv: str | os.PathLike | None,
    require_images: bool,
    drop_missing: bool,
) -> list[StudyRecord]:
    """Shared reader for R2Gen's annotation.json (IU X-Ray and MIMIC-CXR variants)."""
    ann_path = Path(annotation) if annotation is not None else (root if root.is_file() else root / "annotation.json")
    folder = ann_path.parent
    img_root = Path(image_dir) if image_dir is not None else folder / "images"
    if not ann_path.is_file():
        raise DataError(f"{source}: annotation file not found: {ann_path}")
    try:
        data = json.loads(ann_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{source}: {ann_path} is not valid JSON (line {exc.lineno}): {exc.msg}") from None
    if not isinstance(data, dict) or not any(s in data for s in SPLITS):
        raise DataError(f"{source}: {ann_path} must be an object with 'train'/'val'/'test' lists (R2Gen format)")
    labels = read_labels_csv(labels_csv) if labels_csv is not None else {}
    records: list[StudyRecord] = []
    seen: set[str] = set()
    for split in SPLITS:
        for k, entry in enumerate(data.get(split, [])):
            where = f"{ann_path} [{split}][{k}]"
            if not isinstance(entry, dict) or "id" not in entry or "image_path" not in entry:
                raise DataError(f"{source}: {where} needs 'id' and 'image_path'")
            sid = str(entry["id"])
            if sid in seen:
                raise DataError(f"{source}: {where} duplicate id {sid!r}")
            seen.add(sid)
            paths = entry["image_path"]
            if isinstance(paths, str):
                paths = [paths]
            images = [img_root / p for p in paths]
            if source == "iu_xray":
                # R2Gen's IU convention: 0.png is the frontal view, 1.png the lateral.
                views: list[str | None] = [("frontal", "lateral")[i] if i < 2 else None for i in range(len(images))]
                patient = sid
            else:
                views = [None] * len(images)
                patient = str(entry.get("subject_id", sid))
            report = entry.get("report")
            label = labels.get(sid)
            if label is None and "study_id" in entry:
                label = labels.get(str(entry["study_id"]))
            records.append(
                StudyRecord(
                    id=sid,
                    images=images,
                    views=views,
                    findings=str(report) if report is not None else None,
                    impression=None,
                    labels=label,
                    patient_id=patient,
                    split=split,
                    source=source,
                )
            )
    return _check_images(records, require_images, drop_missing)


@register_dataset("iu_xray")
def load_iu_xray(
    root: Path,
    *,
    annotation: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    labels_csv: str | os.PathLike | None = None,
    sections_csv: str | os.PathLike | None = None,
    require_images: bool = False,
    drop_missing: bool = False,
) -> list[StudyRecord]:
    """IU X-Ray in R2Gen's format: `root/annotation.json`, images under `root/images/<id>/{0,1}.png`.

    Args:
        root: folder with annotation.json (or the annotation file itself).
        annotation: annotation file if not `root/annotation.json`.
        image_dir: folder the `image_path` entries are relative to (default: `<annotation folder>/images`).
        labels_csv: CheXbert-style CSV (Id + 14 observation columns); studies without a row get None.
        require_images: raise DataError naming the first missing image file.
        drop_missing: drop studies with a missing image instead.
        sections_csv: Open-i `indiana_reports.csv` (uid, findings, impression); when given, each study's
            impression is attached by uid (`CXR<uid>_IM-...`). Findings stay R2Gen's, for metric parity;
            R2Gen's splits are kept, so test impressions never enter training.
    """
    records = _load_r2gen(
        root,
        "iu_xray",
        annotation=annotation,
        image_dir=image_dir,
        labels_csv=labels_csv,
        require_images=require_images,
        drop_missing=drop_missing,
    )
    if sections_csv is not None:
        header, rows = _read_csv(Path(sections_csv))
        _require_columns(Path(sections_csv), header, ["uid", "impression"])
        impressions = {r["uid"].strip(): (r.get("impression") or "").strip() for r in rows}
        for rec in records:
            uid = rec.id.split("_")[0].removeprefix("CXR")
            rec.impression = impressions.get(uid) or None
    return records


@register_dataset("mimic_cxr")
def load_mimic_cxr(
    root: Path,
    *,
    annotation: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    labels_csv: str | os.PathLike | None = None,
    require_images: bool = False,
    drop_missing: bool = False,
) -> list[StudyRecord]:
    """MIMIC-CXR in R2Gen's format (one image per entry; `subject_id` is the patient when present).

    Labels are looked up by the entry's `id`, then by its `study_id` (CheXbert's MIMIC output is per
    study). Arguments as for `load_iu_xray`.
    """
    return _load_r2gen(
        root,
        "mimic_cxr",
        annotation=annotation,
        image_dir=image_dir,
        labels_csv=labels_csv,
        require_images=require_images,
        drop_missing=drop_missing,
    )


# ----------------------------------------------------------------------------------------- manifest

_LIST_SPLIT = re.compile(r"[|;]")


def _manifest_labels(value: Any, where: str) -> np.ndarray | None:
    """A manifest `labels` field: {observation: value}, a 14-list, or empty -> None."""
    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = [v for v in _LIST_SPLIT.split(value)]
    if isinstance(value, dict):
        unknown = [k for k in value if k not in OBSERVATIONS]
        if unknown:
            raise DataError(f"{where}: unknown observation(s) {unknown} in labels")
        return np.array([_parse_label_value(value.get(o), f"{where} {o!r}") for o in OBSERVATIONS], dtype=np.float32)
    if isinstance(value, list):
        if len(value) != len(OBSERVATIONS):
            raise DataError(f"{where}: labels list has {len(value)} values, expected {len(OBSERVATIONS)}")
        return np.array([_parse_label_value(v, f"{where} labels[{i}]") for i, v in enumerate(value)], dtype=np.float32)
    raise DataError(f"{where}: labels must be an {{observation: value}} object or a list of 14 values")


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _manifest_record(
    row: dict[str, Any], where: str, folder: Path, val_fraction: float, test_fraction: float
) -> StudyRecord:
    sid = _text_or_none(row.get("id"))
    if sid is None:
        raise DataError(f"{where}: missing 'id'")
    images = row.get("images", [])
    if isinstance(images, str):
        images = [p.strip() for p in _LIST_SPLIT.split(images) if p.strip()]
    if not isinstance(images, list) or not all(isinstance(p, str) and p for p in images):
        raise DataError(f"{where}: 'images' must be a list of paths")
    if not images and not _text_or_none(row.get("findings")):
        raise DataError(f"{where}: a study needs images, findings text, or both")
    views = row.get("views", row.get("view"))
    if views is None or views == "":
        views = [None] * len(images)
    elif isinstance(views, str):
        views = [v.strip() or None for v in _LIST_SPLIT.split(views)]
    if not isinstance(views, list) or len(views) != len(images):
        raise DataError(f"{where}: 'views' must have one entry per image ({len(images)})")
    patient = _text_or_none(row.get("patient_id"))
    split = _text_or_none(row.get("split"))
    if split is None:
        split = patient_split(patient or sid, val_fraction, test_fraction)
    elif split not in SPLITS:
        raise DataError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
    return StudyRecord(
        id=sid,
        images=[(folder / p) for p in images],
        views=[_text_or_none(v) for v in views],
        findings=_text_or_none(row.get("findings")),
        impression=_text_or_none(row.get("impression")),
        labels=_manifest_labels(row.get("labels"), where),
        patient_id=patient,
        split=split,
        source="manifest",
    )


@register_dataset("manifest")
def load_manifest(
    root: Path,
    *,
    require_images: bool = False,
    drop_missing: bool = False,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
) -> list[StudyRecord]:
    """A user's paired data as JSON Lines (`.jsonl`) or CSV (`.csv`).

    One study per line/row: `id`, `images` (list; in CSV '|' or ';' separated), `findings`,
    `impression`, optional `labels` ({observation: 1/0/-1/null} or a list of 14 in OBSERVATIONS
    order; in CSV a JSON string or '|'-separated), `views` (same length as images), `patient_id`,
    `split`. Image paths are relative to the manifest's folder. Studies without `split` get one from
    `patient_split(patient_id or id, val_fraction, test_fraction)`.

    Args:
        root: the manifest file, or a folder holding `manifest.jsonl` or `manifest.csv`.

    Raises:
        DataError: naming the file and line number of the first malformed line.
    """
    path = root
    if root.is_dir():
        candidates = [root / "manifest.jsonl", root / "manifest.csv"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise DataError(f"no manifest.jsonl or manifest.csv in {root}")
    folder = path.parent
    records: list[StudyRecord] = []
    if path.suffix.lower() == ".csv":
        header, rows = _read_csv(path)
        _require_columns(path, header, ["id", "images"])
        items: Iterable[tuple[int, dict[str, Any]]] = enumerate(rows, start=2)
    elif path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        items = _jsonl_items(path)
    else:
        raise DataError(f"manifest {path} must end in .jsonl or .csv")
    seen: set[str] = set()
    for line, row in items:
        rec = _manifest_record(row, f"{path}:{line}", folder, val_fraction, test_fraction)
        if rec.id in seen:
            raise DataError(f"{path}:{line}: duplicate id {rec.id!r}")
        seen.add(rec.id)
        records.append(rec)
    return _check_images(records, require_images, drop_missing)


def _jsonl_items(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{line_no}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{line_no}: each line must be a JSON object")
            yield line_no, row


# ------------------------------------------------------------------------------- label-only images


def _label_texts_or_warn(texts: list[str], source: str) -> np.ndarray | None:
    out = labelmaps.label_texts(texts)
    if out is None:
        warnings.warn(
            f"{source}: reportgen.eval.labeler is not available; reading texts are not used for labels",
            stacklevel=3,
        )
    return out


@register_dataset("nih_cxr14")
def load_nih_cxr14(
    root: Path,
    *,
    labels_csv: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    require_images: bool = False,
    drop_missing: bool = False,
) -> list[StudyRecord]:
    """NIH ChestX-ray14 (or a sample of it): `root/labels.csv` (Data_Entry format) + `root/images/`.

    One record per image; labels via `labelmaps.nih_labels`; patient-level hash split.
    """
    path = Path(labels_csv) if labels_csv is not None else root / "labels.csv"
    img_root = Path(image_dir) if image_dir is not None else root / "images"
    header, rows = _read_csv(path)
    _require_columns(path, header, ["Image Index", "Finding Labels", "Patient ID"])
    records = []
    for line, row in enumerate(rows, start=2):
        name = row["Image Index"].strip()
        try:
            labels = labelmaps.nih_labels(row["Finding Labels"])
        except KeyError as exc:
            raise DataError(f"{path}:{line}: {exc.args[0]}") from None
        patient = row["Patient ID"].strip().lstrip("0") or "0"
        view = _text_or_none(row.get("View Position"))
        records.append(
            StudyRecord(
                id=Path(name).stem,
                images=[img_root / name],
                views=[view],
                findings=None,
                impression=None,
                labels=labels,
                patient_id=patient,
                split=patient_split(patient, val_fraction, test_fraction),
                source="nih_cxr14",
                meta={"finding_labels": row["Finding Labels"].strip()},
            )
        )
    return _check_images(records, require_images, drop_missing)


_TB_NAME = re.compile(r"^(CHNCXR|MCUCXR)_(\d+)_([01])$", re.IGNORECASE)


@register_dataset("nlm_tb")
def load_nlm_tb(
    root: Path,
    *,
    image_dir: str | os.PathLike | None = None,
    readings_csv: str | os.PathLike | None = None,
    use_labeler: bool = True,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    require_images: bool = False,
    drop_missing: bool = False,
) -> list[StudyRecord]:
    """NLM TB sets (Shenzhen `CHNCXR_*`, Montgomery `MCUCXR_*`), one record per image file.

    The file name's suffix is the ground truth (`_0` normal, `_1` TB). `shenzhen_readings.csv`
    (`study_id` = file name, `findings` = reading) supplies `text`; with `use_labeler` the readings
    of TB images are labelled by `reportgen.eval.labeler` and its positives merged
    (`labelmaps.tb_labels`). Every image is its own patient (the sets publish no patient ids).
    Files whose names do not follow the pattern are ignored. Views are "PA" (both sets are PA
    screening radiographs).
    """
    img_root = Path(image_dir) if image_dir is not None else root / "images"
    if not img_root.is_dir():
        raise DataError(f"nlm_tb: image folder not found: {img_root}")
    readings: dict[str, str] = {}
    rpath = Path(readings_csv) if readings_csv is not None else root / "shenzhen_readings.csv"
    if readings_csv is not None or rpath.is_file():
        header, rows = _read_csv(rpath)
        _require_columns(rpath, header, ["study_id", "findings"])
        readings = {Path(r["study_id"].strip()).stem.upper(): r["findings"].strip() for r in rows}
    items = []
    for p in sorted(img_root.iterdir()):
        m = _TB_NAME.match(p.stem)
        if m is None or p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".dcm"):
            continue
        items.append((p, m.group(1).upper(), m.group(3) == "1", readings.get(p.stem.upper())))
    tb_texts = [(i, text) for i, (_, _, is_tb, text) in enumerate(items) if is_tb and text]
    text_labels: dict[int, np.ndarray] = {}
    if use_labeler and tb_texts:
        out = _label_texts_or_warn([t for _, t in tb_texts], "nlm_tb")
        if out is not None:
            text_labels = {i: out[k] for k, (i, _) in enumerate(tb_texts)}
    records = []
    for i, (p, prefix, is_tb, text) in enumerate(items):
        records.append(
            StudyRecord(
                id=p.stem,
                images=[p],
                views=["PA"],
                findings=None,
                impression=None,
                labels=labelmaps.tb_labels(is_tb, text_labels.get(i)),
                patient_id=p.stem,
                split=patient_split(p.stem, val_fraction, test_fraction),
                source="nlm_tb",
                text=text,
                meta={"site": "shenzhen" if prefix == "CHNCXR" else "montgomery", "tb": str(int(is_tb))},
            )
        )
    return _check_images(records, require_images, drop_missing)


def _merge_patients(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Union patients that share an image file, returning patient -> canonical (first-seen) id.

    The COVID collection lists some images under two patient ids; splitting them apart would put
    the same pixels in train and val.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first_owner: dict[str, str] = {}
    for image, patient in pairs:
        find(patient)
        owner = first_owner.setdefault(image, patient)
        a, b = find(owner), find(patient)
        if a != b:
            parent[b] = a
    return {p: find(p) for p in parent}


@register_dataset("covid_cxr")
def load_covid_cxr(
    root: Path,
    *,
    metadata_csv: str | os.PathLike | None = None,
    use_labeler: bool = False,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    require_images: bool = False,
    drop_missing: bool = False,
) -> list[StudyRecord]:
    """COVID-19 image data collection: `root/metadata.csv`, images at `root/<folder>/<filename>`.

    Keeps X-ray rows only (the collection also has CT), one record per image file (duplicate rows
    of a file keep the first; patients sharing a file are merged for splitting). Labels from the
    `finding` string via `labelmaps.covid_labels`; `clinical_notes` goes to `text` and, with
    `use_labeler`, its positives are merged (off by default: notes often describe CT or other days).
    Views are the collection's own ("PA", "AP", "AP Supine", "L").
    """
    path = Path(metadata_csv) if metadata_csv is not None else root / "metadata.csv"
    header, rows = _read_csv(path)
    _require_columns(path, header, ["patientid", "finding", "view", "modality", "filename"])
    xray = [
        (str(Path((row.get("folder") or "").strip() or "images") / row["filename"].strip()), row)
        for row in rows
        if row["modality"].strip().lower() in ("x-ray", "xray", "cr", "dx")
    ]
    # Every X-ray row takes part in merging patients: duplicated rows are exactly where ids collide.
    canon = _merge_patients([(rel, row["patientid"].strip()) for rel, row in xray])
    kept: list[tuple[str, dict[str, str]]] = []
    seen_files: set[str] = set()
    for rel, row in xray:
        if rel not in seen_files:
            seen_files.add(rel)
            kept.append((rel, row))
    text_labels: dict[int, np.ndarray] = {}
    if use_labeler:
        noted = [(k, r["clinical_notes"]) for k, (_, r) in enumerate(kept) if (r.get("clinical_notes") or "").strip()]
        out = _label_texts_or_warn([t for _, t in noted], "covid_cxr") if noted else None
        if out is not None:
            text_labels = {k: out[j] for j, (k, _) in enumerate(noted)}
    records = []
    used_ids: set[str] = set()
    for k, (rel, row) in enumerate(kept):
        sid = Path(row["filename"].strip()).stem
        sid = rel if sid in used_ids else sid  # "a.png" and "a.jpg" must not share an id
        used_ids.add(sid)
        patient = canon[row["patientid"].strip()]
        finding = row["finding"].strip()
        records.append(
            StudyRecord(
                id=sid,
                images=[root / rel],
                views=[_text_or_none(row["view"])],
                findings=None,
                impression=None,
                labels=labelmaps.covid_labels(finding, text_labels.get(k)),
                patient_id=patient,
                split=patient_split(patient, val_fraction, test_fraction),
                source="covid_cxr",
                text=_text_or_none(row.get("clinical_notes")),
                meta={"finding": finding},
            )
        )
    return _check_images(records, require_images, drop_missing)
