"""Synthetic PNG/JPEG/DICOM files for tests across the repository.

Tests must never need real data, so every layer builds its inputs here: a seeded "chest phantom"
(two dark lung fields on a bright body, a bright mediastinum and heart) that is crude but has
structure a tiny model can learn, written as PNG, JPEG or DICOM with the header variants the
readers have to cope with (bit depth, MONOCHROME1, windowing, rescale, compressed syntaxes, ...).

Sizes are ``(width, height)`` in pixels, as in Pillow; DICOM ``Rows`` is the height. Patient
fields in the DICOMs are fake by construction.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "chest_phantom",
    "make_png",
    "make_jpeg",
    "make_dicom",
    "make_oversized_png",
    "make_study_dir",
]

#: SOP classes used for the synthetic DICOMs, keyed by Modality.
_SOP_CLASS = {
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
}
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _ellipse(h: int, w: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Boolean mask of an axis-aligned ellipse; centre and radii are fractions of the width/height."""
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx - cx * w) / (rx * w)) ** 2 + ((yy - cy * h) / (ry * h)) ** 2 <= 1.0


def chest_phantom(
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    blob: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """A crude, seeded frontal chest radiograph in display convention (bright = dense).

    Args:
        size: ``(width, height)`` in pixels.
        seed: Varies lung size/position, brightness and noise a little, so that different seeds give
            different but similar images.
        blob: Optional ``(cx, cy, r)`` in pixels: a bright disc (a "nodule") drawn over the image,
            useful as a learnable finding in tiny training tests.

    Returns:
        float32 array of shape ``(height, width)`` with values in [0, 1].
    """
    w, h = int(size[0]), int(size[1])
    rng = np.random.default_rng(seed)
    jitter = rng.uniform(-0.02, 0.02, size=6)
    img = np.full((h, w), 0.78 + jitter[0], dtype=np.float64)
    # A soft vertical gradient: the abdomen at the bottom is denser than the neck.
    img += np.linspace(-0.05, 0.08, h)[:, None]
    lung_ry = 0.33 + jitter[1]
    # Image right = patient's left (radiographic convention); the heart sits on that side.
    right_lung = _ellipse(h, w, 0.30 + jitter[2], 0.45, 0.15, lung_ry)
    left_lung = _ellipse(h, w, 0.70 + jitter[3], 0.45, 0.15, lung_ry)
    img[right_lung | left_lung] = 0.22 + jitter[4]
    heart = _ellipse(h, w, 0.58, 0.62, 0.13 + jitter[5], 0.14)
    img[heart] = 0.7
    mediastinum = np.zeros((h, w), dtype=bool)
    mediastinum[: int(0.75 * h), int(0.46 * w) : int(0.54 * w) + 1] = True
    img[mediastinum] = 0.85
    if blob is not None:
        cx, cy, r = blob
        yy, xx = np.mgrid[0:h, 0:w]
        img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r**2] = 0.97
    img += rng.normal(0.0, 0.02, size=(h, w))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _prepare(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def make_png(
    path: str | Path,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    blob: tuple[float, float, float] | None = None,
    *,
    bits: int = 8,
    mode: str = "L",
) -> Path:
    """Write a chest phantom as PNG and return its path.

    Args:
        path: Output file (parent folders are created).
        size: ``(width, height)`` in pixels.
        seed: Phantom seed (see `chest_phantom`).
        blob: Optional bright disc ``(cx, cy, r)`` in pixels.
        bits: 8 or 16 (16-bit grayscale PNG, full 0..65535 range).
        mode: ``"L"`` (grayscale), ``"RGB"`` or ``"RGBA"`` (gray replicated; 8-bit only), to test that
            readers convert any mode to grayscale.
    """
    from PIL import Image

    path = _prepare(path)
    img = chest_phantom(size, seed, blob)
    if bits == 16:
        if mode != "L":
            raise ValueError("16-bit PNGs are grayscale only")
        Image.fromarray(np.round(img * 65535).astype(np.uint16)).save(path, format="PNG")
    elif bits == 8:
        Image.fromarray(np.round(img * 255).astype(np.uint8)).convert(mode).save(path, format="PNG")
    else:
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    return path


def make_jpeg(
    path: str | Path,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    blob: tuple[float, float, float] | None = None,
    *,
    quality: int = 95,
    mode: str = "L",
) -> Path:
    """Write a chest phantom as JPEG (lossy, so pixels differ slightly from `chest_phantom`).

    Args:
        path: Output file.
        size: ``(width, height)`` in pixels.
        seed: Phantom seed.
        blob: Optional bright disc ``(cx, cy, r)`` in pixels.
        quality: JPEG quality (1-95).
        mode: ``"L"`` or ``"RGB"``.
    """
    from PIL import Image

    path = _prepare(path)
    img = chest_phantom(size, seed, blob)
    Image.fromarray(np.round(img * 255).astype(np.uint8)).convert(mode).save(path, format="JPEG", quality=quality)
    return path


def make_oversized_png(path: str | Path, width: int = 20000, height: int = 20000) -> Path:
    """Write a tiny PNG file whose header *claims* ``width x height`` pixels.

    A real small PNG has its IHDR width/height patched (and the chunk CRC recomputed), so the file is
    a few hundred bytes yet a naive reader would try to allocate the claimed size: the input for
    "reject by header before decoding" tests. Decoding it fully would fail (the data is short).
    """
    from PIL import Image

    path = _prepare(path)
    buf = io.BytesIO()
    Image.new("L", (8, 8), 0).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    # Signature (8) + IHDR length (4) + b"IHDR" (4) -> width, height are the next 8 bytes.
    assert data[12:16] == b"IHDR"
    struct.pack_into(">II", data, 16, width, height)
    crc = zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF  # type + 13-byte IHDR payload
    struct.pack_into(">I", data, 29, crc)
    path.write_bytes(bytes(data))
    return path


def make_dicom(
    path: str | Path,
    *,
    bits: int = 16,
    photometric: str = "MONOCHROME2",
    modality: str | None = "DX",
    window: tuple[float, float] | None = None,
    rescale: tuple[float, float] = (1.0, 0.0),
    frames: int = 1,
    with_pixels: bool = True,
    transfer_syntax: str | None = None,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    patient_name: str = "Test^Patient",
    patient_id: str = "TEST123",
    accession: str = "ACC1",
    study_uid: str | None = None,
    blob: tuple[float, float, float] | None = None,
    signed: bool = False,
    view: str | None = "PA",
    presentation_lut_shape: str | None = None,
    presentation_intent: str | None = None,
    preamble: bool = True,
) -> Path:
    """Write a single-file chest phantom DICOM (pydicom 3 FileDataset with file meta) and return its path.

    The stored values are the phantom scaled to the full ``bits`` range. For ``MONOCHROME1`` the stored
    values are inverted (low = white, as the standard says), so a correct reader shows the *same* chest
    for both photometric interpretations. Window and rescale are only written into the header; they
    are what a reader must apply.

    Args:
        path: Output file.
        bits: BitsStored: 8 (BitsAllocated 8), 12 or 16 (BitsAllocated 16).
        photometric: ``MONOCHROME1``, ``MONOCHROME2`` or e.g. ``RGB`` (3 samples, gray replicated) to
            test rejection.
        modality: ``DX``/``CR`` (accepted by readers), ``CT``/``MR`` (rejected); ``None`` omits it.
        window: ``(center, width)`` in modality units (after rescale), or ``None`` for no VOI window.
        rescale: ``(slope, intercept)``; written as RescaleSlope/RescaleIntercept.
        frames: NumberOfFrames; > 1 repeats the image (readers reject multi-frame).
        with_pixels: ``False`` omits PixelData (readers reject it).
        transfer_syntax: Transfer syntax UID (default Explicit VR Little Endian). For a compressed
            syntax the PixelData is encapsulated *fake* codestream bytes: enough to reach the decoder
            check (e.g. JPEG Lossless without python-gdcm -> MissingCodecError), not a decodable image.
        size: ``(width, height)`` in pixels (Columns, Rows).
        seed: Phantom seed.
        patient_name, patient_id, accession, study_uid: Fake identifiers (PHI-shaped, for de-id tests).
        blob: Optional bright disc ``(cx, cy, r)`` in pixels.
        signed: PixelRepresentation 1 (two's complement, values centred on 0).
        view: ViewPosition (``"PA"``, ``"AP"``, ``"LL"``, ...) or ``None`` to omit.
        presentation_lut_shape: Optional PresentationLUTShape (``"IDENTITY"``/``"INVERSE"``).
        presentation_intent: Optional PresentationIntentType (``"FOR PRESENTATION"``/``"FOR PROCESSING"``).
        preamble: ``False`` writes a bare dataset (no 128-byte preamble, no ``DICM``, no file meta), in
            Implicit VR Little Endian, as some old archives do.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

    if bits not in (8, 12, 16):
        raise ValueError(f"bits must be 8, 12 or 16, got {bits}")
    path = _prepare(path)
    ts = UID(transfer_syntax or (ExplicitVRLittleEndian if preamble else ImplicitVRLittleEndian))
    w, h = int(size[0]), int(size[1])
    sop_class = _SOP_CLASS.get(modality or "", _SECONDARY_CAPTURE)
    sop_instance = generate_uid()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID

    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = accession
    if modality is not None:
        ds.Modality = modality
    ds.ReferringPhysicianName = "Doctor^Referring"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "CHEST"
    if view is not None:
        ds.ViewPosition = view
    if presentation_intent is not None:
        ds.PresentationIntentType = presentation_intent

    samples = 3 if photometric.upper() in ("RGB", "YBR_FULL") else 1
    bits_allocated = 8 if bits == 8 else 16
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.Rows = h
    ds.Columns = w
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleSlope = f"{rescale[0]:g}"
    ds.RescaleIntercept = f"{rescale[1]:g}"
    ds.RescaleType = "US"
    if window is not None:
        ds.WindowCenter = f"{window[0]:g}"
        ds.WindowWidth = f"{window[1]:g}"
    if presentation_lut_shape is not None:
        ds.PresentationLUTShape = presentation_lut_shape
    if frames > 1:
        ds.NumberOfFrames = frames

    if with_pixels:
        img = chest_phantom((w, h), seed, blob)
        top = 2**bits - 1
        stored = np.round(img * top).astype(np.int64)
        if photometric.upper() == "MONOCHROME1":
            stored = top - stored  # exact integer inversion: minimum stored value = white
        if signed:
            stored -= 2 ** (bits - 1)
        dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16, (16, True): np.int16}
        arr = stored.astype(dtype[(bits_allocated, signed)])
        if samples > 1:
            arr = np.repeat(arr[..., None], samples, axis=-1)
        if frames > 1:
            arr = np.repeat(arr[None], frames, axis=0)
        if ts.is_compressed:
            # Not a real codestream: just bytes behind a JPEG SOI marker, one fragment per frame.
            fake = b"\xff\xd8\xff\xc3" + bytes(64)
            ds.PixelData = encapsulate([fake] * max(frames, 1))
            ds["PixelData"].VR = "OB"
        else:
            ds.PixelData = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
            ds["PixelData"].VR = "OB" if bits_allocated == 8 else "OW"

    if preamble:
        ds.save_as(path, enforce_file_format=True)
    else:
        # A bare dataset: what some PACS exports and old archives contain.
        bare = pydicom.Dataset()
        bare.update(ds)
        pydicom.dcmwrite(path, bare, implicit_vr=True, little_endian=True)
    return path


def make_study_dir(
    root: str | Path,
    n_images: int = 2,
    *,
    fmt: str = "png",
    size: tuple[int, int] = (128, 128),
    seed: int = 0,
    views: Sequence[str | None] = ("PA", "LL"),
) -> list[Path]:
    """Write ``n_images`` phantom images of one study into ``root`` and return their paths (sorted).

    Args:
        root: Study folder (created).
        n_images: Number of images (views).
        fmt: ``"png"``, ``"jpeg"`` or ``"dicom"``.
        size: ``(width, height)`` of every image.
        seed: Base seed; image ``i`` uses ``seed + i``.
        views: ViewPosition per image for DICOM (cycled).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_images):
        if fmt == "png":
            paths.append(make_png(root / f"view{i}.png", size=size, seed=seed + i))
        elif fmt == "jpeg":
            paths.append(make_jpeg(root / f"view{i}.jpg", size=size, seed=seed + i))
        elif fmt == "dicom":
            view = views[i % len(views)] if views else None
            paths.append(make_dicom(root / f"view{i}.dcm", size=size, seed=seed + i, view=view))
        else:
            raise ValueError(f"fmt must be png, jpeg or dicom, got {fmt!r}")
    return paths
