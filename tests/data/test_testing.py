"""reportgen.testing: the synthetic files other tests rely on are valid and shaped as documented."""

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian

from reportgen.data.io import read_image
from reportgen.testing import (
    chest_phantom,
    make_dicom,
    make_jpeg,
    make_oversized_png,
    make_png,
    make_study_dir,
)


def test_phantom_is_seeded_and_chest_like():
    a, b, c = chest_phantom(seed=0), chest_phantom(seed=0), chest_phantom(seed=1)
    assert a.dtype == np.float32 and a.shape == (256, 256)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert 0.0 <= a.min() and a.max() <= 1.0
    # Dark lungs on both sides of a bright mediastinum.
    assert a[115, 75].item() < 0.4 and a[115, 180].item() < 0.4 and a[60, 128].item() > 0.75


def test_phantom_blob_and_size_convention():
    img = chest_phantom((300, 200), blob=(75, 115, 10))
    assert img.shape == (200, 300)  # size is (width, height)
    assert img[115, 75] > 0.9  # the disc is drawn at column 75, row 115 (inside the right lung)


def test_make_png_and_jpeg(tmp_path):
    p8 = make_png(tmp_path / "sub" / "a.png", size=(120, 80))
    with Image.open(p8) as im:
        assert (im.format, im.mode, im.size) == ("PNG", "L", (120, 80))
    with Image.open(make_png(tmp_path / "b.png", bits=16)) as im:
        assert im.mode.startswith("I") and np.asarray(im).max() > 255
    with Image.open(make_jpeg(tmp_path / "c.jpg", mode="RGB")) as im:
        assert (im.format, im.mode) == ("JPEG", "RGB")
    with pytest.raises(ValueError):
        make_png(tmp_path / "d.png", bits=12)


def test_make_dicom_is_a_valid_part10_file(tmp_path):
    p = make_dicom(tmp_path / "x.dcm", modality="CR", study_uid="1.2.3.4", patient_id="PID9", size=(100, 90))
    data = p.read_bytes()
    assert data[128:132] == b"DICM"
    ds = pydicom.dcmread(p)  # no force: a conformant file
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1"
    assert ds.SOPInstanceUID.is_valid and ds.SeriesInstanceUID.is_valid
    assert ds.StudyInstanceUID == "1.2.3.4" and ds.PatientID == "PID9"
    assert (ds.Rows, ds.Columns) == (90, 100)
    assert ds.pixel_array.shape == (90, 100)
    dx = pydicom.dcmread(make_dicom(tmp_path / "dx.dcm"))
    assert dx.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray, For Presentation


def test_make_dicom_variants(tmp_path):
    ds = pydicom.dcmread(make_dicom(tmp_path / "w.dcm", bits=12, window=(2048, 4096), rescale=(2, -10)))
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 12, 11)
    assert float(ds.WindowCenter) == 2048 and float(ds.RescaleSlope) == 2 and float(ds.RescaleIntercept) == -10
    assert ds.pixel_array.max() <= 4095
    ds = pydicom.dcmread(make_dicom(tmp_path / "s.dcm", bits=8, signed=True))
    assert ds.pixel_array.dtype == np.int8 and ds.pixel_array.min() < 0
    ds = pydicom.dcmread(make_dicom(tmp_path / "f.dcm", frames=2))
    assert ds.pixel_array.shape == (2, 256, 256)
    assert "PixelData" not in pydicom.dcmread(make_dicom(tmp_path / "n.dcm", with_pixels=False))


def test_make_oversized_png_header_only(tmp_path):
    p = make_oversized_png(tmp_path / "big.png", 12345, 6789)
    data = p.read_bytes()
    assert len(data) < 1000
    assert int.from_bytes(data[16:20], "big") == 12345 and int.from_bytes(data[20:24], "big") == 6789


@pytest.mark.parametrize("fmt", ["png", "jpeg", "dicom"])
def test_make_study_dir_readable(tmp_path, fmt):
    paths = make_study_dir(tmp_path / "study", n_images=2, fmt=fmt)
    assert len(paths) == 2 and all(p.exists() for p in paths)
    images = [read_image(p) for p in paths]
    assert all(im.pixels.shape == (128, 128) for im in images)
    if fmt == "dicom":
        assert [im.view for im in images] == ["PA", "LL"]
