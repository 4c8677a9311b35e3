"""Dataset registry and loaders, on tiny synthetic copies of each source's file layout."""

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reportgen.constants import OBSERVATIONS
from reportgen.data import datasets as ds
from reportgen.data import labelmaps
from reportgen.data.datasets import StudyRecord, list_datasets, load_dataset, patient_split, view_family
from reportgen.errors import DataError

IDX = {name: i for i, name in enumerate(OBSERVATIONS)}


def png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), 128, dtype=np.uint8)).save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def assert_patient_disjoint(records: list[StudyRecord]) -> None:
    split_of: dict[str, str] = {}
    for r in records:
        assert split_of.setdefault(r.patient_id, r.split) == r.split, f"patient {r.patient_id} crosses splits"


# ---------------------------------------------------------------------------------------- registry


def test_registry_names():
    assert {"iu_xray", "mimic_cxr", "manifest", "nih_cxr14", "nlm_tb", "covid_cxr"} <= set(list_datasets())


def test_register_rejects_duplicate_name():
    with pytest.raises(ValueError):
        ds.register_dataset("iu_xray")(lambda root: [])


def test_load_dataset_errors(tmp_path):
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("chexpert_full", tmp_path)
    with pytest.raises(DataError, match="unknown split"):
        load_dataset("iu_xray", tmp_path, split="validation")
    with pytest.raises(DataError, match="not found"):
        load_dataset("iu_xray", tmp_path / "nope")
    with pytest.raises(DataError, match="annotation file not found"):
        load_dataset("iu_xray", tmp_path)
    iu = make_iu(tmp_path)
    with pytest.raises(DataError, match="unexpected keyword"):
        load_dataset("iu_xray", iu, image_folder="x")


# ------------------------------------------------------------------------------------------- R2Gen


def make_iu(tmp_path: Path, with_images: bool = False) -> Path:
    root = tmp_path / "iu"
    root.mkdir(exist_ok=True)

    def entry(i: int, split: str) -> dict:
        sid = f"CXR{i}_IM-{i:04d}"
        return {"id": sid, "report": f"Report {i}.", "image_path": [f"{sid}/0.png", f"{sid}/1.png"], "split": split}

    ann = {"train": [entry(1, "train"), entry(2, "train")], "val": [entry(3, "val")], "test": [entry(4, "test")]}
    (root / "annotation.json").write_text(json.dumps(ann))
    if with_images:
        for split in ann.values():
            for e in split:
                for p in e["image_path"]:
                    png(root / "images" / p)
    return root


def labels_csv(path: Path, rows: dict[str, dict[str, float]]) -> Path:
    # CheXbert's own column order: No Finding last, Lung Opacity before Lung Lesion.
    cols = [o for o in OBSERVATIONS if o != "No Finding"] + ["No Finding"]
    cols[2], cols[3] = cols[3], cols[2]
    body = [[sid] + ["" if vals.get(c) is None else vals[c] for c in cols] for sid, vals in rows.items()]
    return write_csv(path, ["Id", *cols], body)


def test_iu_xray_parses_r2gen_annotation(tmp_path):
    root = make_iu(tmp_path)
    recs = load_dataset("iu_xray", root)
    assert [r.split for r in recs] == ["train", "train", "val", "test"]
    r = recs[0]
    assert r.id == "CXR1_IM-0001" and r.patient_id == r.id and r.source == "iu_xray"
    assert r.findings == "Report 1." and r.impression is None and r.labels is None
    assert r.views == ["frontal", "lateral"]
    assert r.images == [root / "images/CXR1_IM-0001/0.png", root / "images/CXR1_IM-0001/1.png"]
    assert [x.id for x in load_dataset("iu_xray", root, split="val")] == ["CXR3_IM-0003"]
    # The annotation file itself is accepted as root, and image_dir overrides where images live.
    same = load_dataset("iu_xray", root / "annotation.json", image_dir=tmp_path / "elsewhere")
    assert same[0].images[0] == tmp_path / "elsewhere/CXR1_IM-0001/0.png"


def test_iu_xray_labels_csv_columns_in_any_order(tmp_path):
    root = make_iu(tmp_path)
    csv_path = labels_csv(
        tmp_path / "labels.csv",
        {"CXR1_IM-0001": {"Cardiomegaly": 1.0, "Lung Lesion": -1.0, "No Finding": 0.0}, "CXR3_IM-0003": {}},
    )
    recs = {r.id: r for r in load_dataset("iu_xray", root, labels_csv=csv_path)}
    lab = recs["CXR1_IM-0001"].labels
    assert lab.dtype == np.float32 and lab.shape == (14,)
    assert lab[IDX["Cardiomegaly"]] == 1.0 and lab[IDX["Lung Lesion"]] == -1.0 and lab[IDX["No Finding"]] == 0.0
    assert np.isnan(lab[IDX["Lung Opacity"]]) and np.isnan(lab[IDX["Edema"]])
    assert np.isnan(recs["CXR3_IM-0003"].labels).all()
    assert recs["CXR2_IM-0002"].labels is None  # no row: unlabelled, not "all blank"


def test_labels_csv_errors(tmp_path):
    bad = write_csv(tmp_path / "a.csv", ["Id", "Edema"], [["x", "1"]])
    with pytest.raises(DataError, match="missing column"):
        ds.read_labels_csv(bad)
    labels_csv(tmp_path / "b.csv", {"x": {"Edema": 2.0}})
    with pytest.raises(DataError, match=r"b.csv:2 column 'Edema'"):
        ds.read_labels_csv(tmp_path / "b.csv")


def test_iu_xray_missing_images(tmp_path):
    root = make_iu(tmp_path)
    assert len(load_dataset("iu_xray", root)) == 4  # reports-only use: missing images allowed
    with pytest.raises(DataError, match=r"CXR1_IM-0001[/\\]0\.png"):
        load_dataset("iu_xray", root, require_images=True)
    root = make_iu(tmp_path, with_images=True)
    (root / "images/CXR3_IM-0003/1.png").unlink()
    assert len(load_dataset("iu_xray", root, require_images=True, split="train")) == 2
    with pytest.raises(DataError, match=r"CXR3_IM-0003[/\\]1\.png"):
        load_dataset("iu_xray", root, require_images=True)
    kept = load_dataset("iu_xray", root, drop_missing=True)
    assert [r.id for r in kept] == ["CXR1_IM-0001", "CXR2_IM-0002", "CXR4_IM-0004"]


def test_r2gen_malformed(tmp_path):
    (tmp_path / "annotation.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_dataset("iu_xray", tmp_path)
    (tmp_path / "annotation.json").write_text(json.dumps([1, 2]))
    with pytest.raises(DataError, match="R2Gen format"):
        load_dataset("iu_xray", tmp_path)
    (tmp_path / "annotation.json").write_text(json.dumps({"train": [{"id": "a"}]}))
    with pytest.raises(DataError, match=r"\[train\]\[0\]"):
        load_dataset("iu_xray", tmp_path)


def test_mimic_uses_subject_and_study_ids(tmp_path):
    ann = {
        "train": [
            {"id": "d1", "study_id": 501, "subject_id": 10, "report": "A.", "image_path": ["p10/s501/d1.jpg"]},
            {"id": "d2", "study_id": 502, "subject_id": 10, "report": "B.", "image_path": ["p10/s502/d2.jpg"]},
        ],
        "val": [],
        "test": [{"id": "d3", "study_id": 503, "subject_id": 11, "report": "C.", "image_path": ["p11/s503/d3.jpg"]}],
    }
    (tmp_path / "annotation.json").write_text(json.dumps(ann))
    csv_path = labels_csv(tmp_path / "l.csv", {"501": {"Edema": 1.0}, "d3": {"Fracture": 1.0}})
    recs = load_dataset("mimic_cxr", tmp_path, labels_csv=csv_path)
    assert [r.patient_id for r in recs] == ["10", "10", "11"]
    assert recs[0].views == [None] and recs[0].source == "mimic_cxr"
    assert recs[0].labels[IDX["Edema"]] == 1.0  # found by study_id
    assert recs[1].labels is None
    assert recs[2].labels[IDX["Fracture"]] == 1.0  # found by id


# ---------------------------------------------------------------------------------------- manifest


def test_manifest_jsonl(tmp_path):
    lines = [
        {"id": "s1", "images": ["img/a.png", "img/b.png"], "findings": "Clear.", "impression": "Normal.",
         "labels": {"No Finding": 1, "Edema": 0}, "views": ["PA", "LL"], "patient_id": "p1", "split": "test"},
        {"id": "s2", "images": ["img/c.png"], "findings": "Effusion.", "impression": "",
         "labels": [None] * 10 + [1, None, None, None]},
        {"id": "s3", "images": ["img/d.png"], "findings": None, "impression": "Cardiomegaly.", "labels": None},
    ]  # fmt: skip
    path = tmp_path / "data" / "manifest.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    recs = load_dataset("manifest", path)
    assert [r.id for r in recs] == ["s1", "s2", "s3"]
    s1, s2, s3 = recs
    assert s1.images == [path.parent / "img/a.png", path.parent / "img/b.png"]
    assert s1.views == ["PA", "LL"] and s1.patient_id == "p1" and s1.split == "test"
    assert s1.findings == "Clear." and s1.impression == "Normal."
    assert s1.labels[IDX["No Finding"]] == 1.0 and s1.labels[IDX["Edema"]] == 0.0
    assert np.isnan(s1.labels[IDX["Cardiomegaly"]])
    assert s2.labels[IDX["Pleural Effusion"]] == 1.0 and np.nansum(np.abs(s2.labels)) == 1.0
    assert s2.impression is None and s2.views == [None] and s2.source == "manifest"
    assert s3.findings is None and s3.labels is None
    # No split given: drawn from the id hash, deterministically.
    assert s2.split == patient_split("s2") and s3.split == patient_split("s3")
    # A folder holding manifest.jsonl works as root.
    assert [r.id for r in load_dataset("manifest", path.parent, split="test")] == ["s1"]


def test_manifest_csv(tmp_path):
    path = write_csv(
        tmp_path / "m.csv",
        ["id", "images", "findings", "impression", "labels", "views", "patient_id", "split"],
        [
            ["a", "x/1.png|x/2.png", "F.", "I.", '{"Pneumothorax": 1}', "PA|LATERAL", "p", "train"],
            ["b", "x/3.png; x/4.png", "", "I2.", "", "", "", "val"],
        ],
    )
    a, b = load_dataset("manifest", path)
    assert a.images == [tmp_path / "x/1.png", tmp_path / "x/2.png"] and a.views == ["PA", "LATERAL"]
    assert a.labels[IDX["Pneumothorax"]] == 1.0
    assert b.images == [tmp_path / "x/3.png", tmp_path / "x/4.png"] and b.views == [None, None]
    assert b.findings is None and b.labels is None and b.split == "val" and b.patient_id is None


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"images": ["a.png"]}', "missing 'id'"),
        ('{"id": "z", "images": []}', "images, findings text, or both"),
        ('{"id": "z", "images": ["a.png"], "views": ["PA", "LL"]}', "one entry per image"),
        ('{"id": "z", "images": ["a.png"], "labels": [1, 0]}', "expected 14"),
        ('{"id": "z", "images": ["a.png"], "labels": {"Effusion": 1}}', "unknown observation"),
        ('{"id": "z", "images": ["a.png"], "labels": {"Edema": 3}}', "not 1, 0, -1"),
        ('{"id": "z", "images": ["a.png"], "split": "dev"}', "split 'dev'"),
        ('{"id": "ok", "images": ["a.png"]}', "duplicate id"),
    ],
)
def test_manifest_malformed_line_reports_line_number(tmp_path, bad_line, message):
    path = tmp_path / "manifest.jsonl"
    good = json.dumps({"id": "ok", "images": ["a.png"]})
    path.write_text(f"{good}\n\n{bad_line}\n")
    with pytest.raises(DataError, match=message) as info:
        load_dataset("manifest", path)
    assert "manifest.jsonl:3" in str(info.value)


def test_manifest_missing_images_and_bad_suffix(tmp_path):
    png(tmp_path / "a.png")
    path = tmp_path / "manifest.jsonl"
    path.write_text(json.dumps({"id": "1", "images": ["a.png"]}) + "\n" + json.dumps({"id": "2", "images": ["b.png"]}))
    assert len(load_dataset("manifest", path)) == 2
    with pytest.raises(DataError, match="b.png"):
        load_dataset("manifest", path, require_images=True)
    assert [r.id for r in load_dataset("manifest", path, drop_missing=True)] == ["1"]
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(DataError, match=".jsonl or .csv"):
        load_dataset("manifest", tmp_path / "m.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no manifest"):
        load_dataset("manifest", tmp_path / "empty")


# --------------------------------------------------------------------------------------- splitting


def test_patient_split_is_deterministic_and_proportional():
    ids = [f"patient-{i}" for i in range(2000)]
    first = [patient_split(p) for p in ids]
    assert first == [patient_split(p) for p in ids]
    assert set(first) == {"train", "val"}
    assert 0.15 < first.count("val") / len(ids) < 0.25
    three = [patient_split(p, val_fraction=0.1, test_fraction=0.1) for p in ids]
    assert 0.05 < three.count("test") / len(ids) < 0.15 and 0.05 < three.count("val") / len(ids) < 0.15
    # Adding a test split only moves patients out of val/train into test, never between val and train.
    assert all(t == "test" or t == f for f, t in zip(first, [patient_split(p, 0.2, 0.0) for p in ids], strict=True))
    assert [patient_split(p, val_fraction=0.0) for p in ids[:50]] == ["train"] * 50
    assert patient_split("x", salt="a") in ds.SPLITS
    with pytest.raises(DataError):
        patient_split("x", val_fraction=0.8, test_fraction=0.3)


@pytest.mark.parametrize(
    ("view", "family"),
    [("PA", "frontal"), ("AP Supine", "frontal"), ("frontal", "frontal"), ("L", "lateral"), ("LL", "lateral"),
     ("lateral", "lateral"), (None, None), ("oblique", None)],
)  # fmt: skip
def test_view_family(view, family):
    assert view_family(view) == family


# --------------------------------------------------------------------------------------------- NIH


def make_nih(tmp_path: Path, patients: int = 3, per_patient: int = 2, images: bool = True) -> Path:
    root = tmp_path / "nih"
    findings = ["No Finding", "Effusion|Infiltration", "Cardiomegaly", "Hernia", "Mass|Nodule"]
    rows = []
    for p in range(patients):
        for k in range(per_patient):
            name = f"{p + 1:08d}_{k:03d}.png"
            rows.append([name, findings[(p + k) % len(findings)], k, p + 1, 50, "F", "PA" if k % 2 == 0 else "AP"])
            if images:
                png(root / "images" / name)
    write_csv(
        root / "labels.csv",
        ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender"]
        + ["View Position"],
        rows,
    )
    return root


def test_nih_parses_labels_and_views(tmp_path):
    root = make_nih(tmp_path)
    recs = {r.id: r for r in load_dataset("nih_cxr14", root, require_images=True)}
    assert len(recs) == 6
    r = recs["00000001_001"]
    assert r.images == [root / "images/00000001_001.png"] and r.views == ["AP"] and r.patient_id == "1"
    assert r.findings is None and r.impression is None and r.source == "nih_cxr14"
    np.testing.assert_array_equal(r.labels, labelmaps.nih_labels("Effusion|Infiltration"))
    assert r.labels[IDX["Pleural Effusion"]] == 1.0 and r.labels[IDX["Lung Opacity"]] == 1.0
    assert np.isnan(r.labels[IDX["Fracture"]])
    assert recs["00000001_000"].labels[IDX["No Finding"]] == 1.0


def test_nih_splits_patient_disjoint(tmp_path):
    root = make_nih(tmp_path, patients=120, per_patient=3, images=False)
    recs = load_dataset("nih_cxr14", root)
    assert_patient_disjoint(recs)
    assert {r.split for r in recs} == {"train", "val"}
    with_test = load_dataset("nih_cxr14", root, val_fraction=0.2, test_fraction=0.2)
    assert_patient_disjoint(with_test)
    assert {r.split for r in with_test} == {"train", "val", "test"}
    assert [r.split for r in recs] == [r.split for r in load_dataset("nih_cxr14", root)]


def test_nih_errors(tmp_path):
    root = make_nih(tmp_path, images=False)
    with pytest.raises(DataError, match="image file missing"):
        load_dataset("nih_cxr14", root, require_images=True)
    write_csv(root / "labels.csv", ["Image Index", "Finding Labels", "Patient ID"], [["a.png", "Effusion", 1],
              ["b.png", "Pneumonitis", 2]])  # fmt: skip
    with pytest.raises(DataError, match=r"labels.csv:3: unknown NIH finding 'Pneumonitis'"):
        load_dataset("nih_cxr14", root)
    write_csv(root / "labels.csv", ["Image Index", "Labels"], [["a.png", "Effusion"]])
    with pytest.raises(DataError, match="missing column"):
        load_dataset("nih_cxr14", root)


# ---------------------------------------------------------------------------------------------- TB


def make_tb(tmp_path: Path) -> Path:
    root = tmp_path / "tb"
    for name in ["CHNCXR_0001_0", "CHNCXR_0002_1", "CHNCXR_0003_1", "MCUCXR_0001_0", "MCUCXR_0002_1"]:
        png(root / "images" / f"{name}.png")
    png(root / "images" / "other.png")  # not part of the set: ignored
    (root / "images" / "CHNCXR_0009_1.txt").write_text("not an image")
    write_csv(
        root / "shenzhen_readings.csv",
        ["study_id", "sex", "age", "findings"],
        [
            ["CHNCXR_0001_0.png", "Male", 45, "normal"],
            ["CHNCXR_0002_1.png", "Male", 30, "PTB in the right upper field"],
            ["CHNCXR_0003_1.png", "Female", 50, "left PTB, left pleural effusion"],
        ],
    )
    return root


def test_nlm_tb_without_labeler(tmp_path):
    root = make_tb(tmp_path)
    recs = {r.id: r for r in load_dataset("nlm_tb", root, use_labeler=False, require_images=True)}
    assert sorted(recs) == ["CHNCXR_0001_0", "CHNCXR_0002_1", "CHNCXR_0003_1", "MCUCXR_0001_0", "MCUCXR_0002_1"]
    np.testing.assert_array_equal(recs["CHNCXR_0001_0"].labels, labelmaps.normal_labels())
    np.testing.assert_array_equal(recs["MCUCXR_0002_1"].labels, labelmaps.tb_labels(True))
    assert recs["CHNCXR_0002_1"].text == "PTB in the right upper field"
    assert recs["MCUCXR_0001_0"].text is None
    assert recs["CHNCXR_0002_1"].meta == {"site": "shenzhen", "tb": "1"}
    assert recs["MCUCXR_0001_0"].meta["site"] == "montgomery"
    for r in recs.values():
        assert r.patient_id == r.id and r.views == ["PA"] and r.findings is None and r.split in ("train", "val")


def test_nlm_tb_merges_labeler_positives(tmp_path, monkeypatch):
    root = make_tb(tmp_path)
    seen: list[list[str]] = []

    def fake_label_texts(texts):
        seen.append(list(texts))
        out = np.full((len(texts), 14), np.nan, dtype=np.float32)
        for i, t in enumerate(texts):
            if "effusion" in t:
                out[i, IDX["Pleural Effusion"]] = 1.0
        return out

    monkeypatch.setattr(labelmaps, "label_texts", fake_label_texts)
    recs = {r.id: r for r in load_dataset("nlm_tb", root)}
    assert seen == [["PTB in the right upper field", "left PTB, left pleural effusion"]]  # TB readings only
    assert recs["CHNCXR_0003_1"].labels[IDX["Pleural Effusion"]] == 1.0
    assert np.isnan(recs["CHNCXR_0002_1"].labels[IDX["Pleural Effusion"]])


def test_nlm_tb_warns_when_labeler_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(labelmaps, "label_texts", lambda texts: None)
    with pytest.warns(UserWarning, match="labeler is not available"):
        recs = load_dataset("nlm_tb", make_tb(tmp_path))
    assert len(recs) == 5


def test_nlm_tb_errors(tmp_path):
    with pytest.raises(DataError, match="image folder not found"):
        load_dataset("nlm_tb", tmp_path)
    root = make_tb(tmp_path)
    write_csv(root / "shenzhen_readings.csv", ["study_id", "reading"], [["CHNCXR_0001_0.png", "normal"]])
    with pytest.raises(DataError, match="missing column"):
        load_dataset("nlm_tb", root)


# ------------------------------------------------------------------------------------------- COVID

COVID_HEADER = ["patientid", "offset", "finding", "view", "modality", "folder", "filename", "clinical_notes"]


def make_covid(tmp_path: Path, missing: tuple[str, ...] = ()) -> Path:
    root = tmp_path / "covid"
    rows = [
        ["1", "0", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "images", "a.png", "Bilateral opacities."],
        ["1", "3", "COVID-19", "AP Supine", "X-ray", "images", "b.jpg", ""],
        ["2", "", "No Finding", "PA", "X-ray", "images", "c.png", ""],
        ["2", "", "No Finding", "Axial", "CT", "volumes", "ct.png", ""],  # CT: dropped
        ["3", "", "Streptococcus", "L", "X-ray", "images", "d.png", "Lobar pneumonia."],
        ["4", "", "Streptococcus", "PA", "X-ray", "images", "d.png", "Same image under another id."],
        ["4", "", "Streptococcus", "AP", "X-ray", "images", "e.png", ""],
    ]
    write_csv(root / "metadata.csv", COVID_HEADER, rows)
    for r in rows:
        if r[6] not in missing:
            png(root / r[5] / r[6])
    return root


def test_covid_parses_xray_rows(tmp_path):
    root = make_covid(tmp_path)
    recs = {r.id: r for r in load_dataset("covid_cxr", root, require_images=True)}
    assert sorted(recs) == ["a", "b", "c", "d", "e"]  # CT row dropped, duplicated file kept once
    assert recs["a"].images == [root / "images/a.png"] and recs["a"].views == ["PA"]
    assert recs["b"].views == ["AP Supine"] and recs["d"].views == ["L"]
    assert recs["a"].text == "Bilateral opacities." and recs["b"].text is None
    assert recs["a"].meta == {"finding": "Pneumonia/Viral/COVID-19"}
    np.testing.assert_array_equal(recs["a"].labels, labelmaps.covid_labels("COVID-19"))
    assert recs["a"].labels[IDX["Pneumonia"]] == 1.0
    np.testing.assert_array_equal(recs["c"].labels, labelmaps.normal_labels())
    # Patients 3 and 4 share d.png, so they are one patient for splitting.
    assert recs["d"].patient_id == recs["e"].patient_id == "3"
    assert recs["a"].patient_id == recs["b"].patient_id == "1"
    assert_patient_disjoint(list(recs.values()))


def test_covid_missing_images(tmp_path):
    root = make_covid(tmp_path, missing=("b.jpg",))
    assert len(load_dataset("covid_cxr", root)) == 5
    with pytest.raises(DataError, match="b.jpg"):
        load_dataset("covid_cxr", root, require_images=True)
    assert sorted(r.id for r in load_dataset("covid_cxr", root, drop_missing=True)) == ["a", "c", "d", "e"]


def test_covid_labeler_on_notes_is_opt_in(tmp_path, monkeypatch):
    calls: list[list[str]] = []

    def fake(texts):
        calls.append(list(texts))
        out = np.full((len(texts), 14), np.nan, dtype=np.float32)
        out[:, IDX["Pleural Effusion"]] = 1.0
        return out

    monkeypatch.setattr(labelmaps, "label_texts", fake)
    root = make_covid(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = {r.id: r for r in load_dataset("covid_cxr", root)}
    assert calls == [] and np.isnan(plain["a"].labels[IDX["Pleural Effusion"]])
    refined = {r.id: r for r in load_dataset("covid_cxr", root, use_labeler=True)}
    assert calls == [["Bilateral opacities.", "Lobar pneumonia."]]
    assert refined["a"].labels[IDX["Pleural Effusion"]] == 1.0
    assert np.isnan(refined["b"].labels[IDX["Pleural Effusion"]])  # no notes
    np.testing.assert_array_equal(refined["c"].labels, labelmaps.normal_labels())


def test_covid_same_stem_different_files_get_distinct_ids(tmp_path):
    root = tmp_path / "covid"
    rows = [["1", "", "COVID-19", "PA", "X-ray", "images", n, ""] for n in ("a.png", "a.jpg")]
    write_csv(root / "metadata.csv", COVID_HEADER, rows)
    ids = [r.id for r in load_dataset("covid_cxr", root)]
    assert len(set(ids)) == 2 and ids[0] == "a"
