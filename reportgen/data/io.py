"""Read one radiograph (PNG, JPEG or DICOM; path or bytes) into a float32 (H, W) array in [0, 1].

Everything downstream sees one convention: MONOCHROME2 display values, bright = dense (bone white,
lung dark), whatever the file stored. The format is sniffed from the bytes, never trusted from a file
name. Every way bad input can fail maps to a `reportgen.errors` exception with a message a user can act
on; size limits are checked from the header *before* any pixels are decoded, so a forged header cannot
make us allocate gigabytes.

The DICOM grayscale pipeline follows PS3.3 C.11 / PS3.4 N.2.1.1:
stored values -> Modality LUT (rescale slope/intercept or LUT) -> VOI LUT (LUT or window; else the
data's min/max) -> polarity (MONOCHROME1 or Presentation LUT Shape INVERSE) -> [0, 1].
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from reportgen.errors import (
    ImageTooLargeError,
    InvalidImageError,
    MissingCodecError,
    UnsupportedDicomError,
    UnsupportedMediaError,
)

if TYPE_CHECKING:
    import pydicom

__all__ = ["LoadedImage", "sniff_format", "read_image"]

logger = logging.getLogger(__name__)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8\xff"
#: Modalities that are projection radiographs of the kind the model was trained on.
_ACCEPTED_MODALITIES = frozenset({"CR", "DX"})
_INSTALL_HINT = 'pip install "reportgen[dicom]"'


@dataclass(frozen=True)
class LoadedImage:
    """One decoded radiograph.

    Attributes:
        pixels: float32 ``(H, W)`` in [0, 1], MONOCHROME2 convention (bright = dense).
        source_format: ``"png"``, ``"jpeg"`` or ``"dicom"`` (sniffed from content).
        view: DICOM ViewPosition (``"PA"``, ``"AP"``, ``"LL"``, ...) when present, else ``None``.
        dicom_header: The DICOM dataset *without* PixelData, or ``None``. It is PHI: never log it.
    """

    pixels: np.ndarray
    source_format: str
    view: str | None = None
    dicom_header: pydicom.Dataset | None = None


def _looks_like_bare_dicom(data: bytes) -> bool:
    """True for a DICOM data set written without the 128-byte preamble and ``DICM`` prefix.

    Such files start directly with an element of group 0x0002 (file meta) or 0x0008 (identifying),
    little endian, either explicit VR (two upper-case letters after the tag) or implicit VR (a 4-byte
    length that fits in the file). Anything else is not worth handing to a forgiving parser.
    """
    if len(data) < 8 or data[0:2] not in (b"\x02\x00", b"\x08\x00"):
        return False
    vr = data[4:6]
    if vr.isalpha() and vr.isupper():
        return True
    length = int.from_bytes(data[4:8], "little")
    return length < len(data)


def sniff_format(data: bytes) -> str:
    """Name the image format from the content: ``"png"``, ``"jpeg"`` or ``"dicom"``.

    Raises:
        InvalidImageError: ``data`` is empty.
        UnsupportedMediaError: Not PNG, JPEG or DICOM.
    """
    if len(data) == 0:
        raise InvalidImageError("the image file is empty (0 bytes)")
    if data.startswith(_PNG_SIGNATURE):
        return "png"
    if data.startswith(_JPEG_SOI):
        return "jpeg"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if _looks_like_bare_dicom(data):
        return "dicom"
    raise UnsupportedMediaError(
        "unsupported image content: expected PNG, JPEG or DICOM (format is detected from the bytes, not the file name)"
    )


def _read_source(source: str | os.PathLike | bytes) -> tuple[bytes, str | None]:
    """Return the bytes and, for a path, its lower-case suffix (used only to improve messages)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), None
    path = Path(source)
    try:
        return path.read_bytes(), path.suffix.lower()
    except FileNotFoundError as e:
        raise InvalidImageError(f"image file not found: {path}") from e
    except IsADirectoryError as e:
        raise InvalidImageError(f"expected an image file, got a directory: {path}") from e
    except OSError as e:
        raise InvalidImageError(f"cannot read image file {path}: {e.strerror or e}") from e


def _check_dims(width: int, height: int, max_pixels: int, min_side: int) -> None:
    if width <= 0 or height <= 0:
        raise InvalidImageError(f"image header declares an empty image ({width}x{height} px)")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} px ({width * height:,} pixels), over the limit of {max_pixels:,}; "
            "downsample it before upload"
        )
    if min(width, height) < min_side:
        raise InvalidImageError(
            f"image is {width}x{height} px; each side must be at least {min_side} px for a chest radiograph"
        )


# --------------------------------------------------------------------------------------------- PNG / JPEG


def _png_significant_bits(data: bytes) -> int | None:
    """Significant bits from a grayscale PNG's ``sBIT`` chunk (e.g. 12 for 12-bit data in 16), else None."""
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        ctype = data[pos + 4 : pos + 8]
        if ctype == b"sBIT" and length >= 1:
            return data[pos + 8]
        if ctype in (b"IDAT", b"IEND"):
            return None  # sBIT must precede the image data
        pos += 12 + length
    return None


def _pil_to_gray(im, data: bytes, fmt: str) -> np.ndarray:
    """Convert a decoded Pillow image of any mode to float32 gray in [0, 1]."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grayscale PNG. Scale by the *real* bit range: sBIT when the writer recorded it
        # (12-bit detector data in a 16-bit container), else the full 16 bits. Pillow's own
        # convert("L") would clip everything above 255 to white.
        arr = np.asarray(im, dtype=np.float64)
        bits = _png_significant_bits(data) if fmt == "png" else None
        top = float(2 ** (bits if bits and 1 <= bits <= 16 else 16) - 1)
        return np.clip(arr / top, 0.0, 1.0).astype(np.float32)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        return ((arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)).astype(np.float32)
    if mode == "1":
        return np.asarray(im, dtype=np.float32)
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel(0), dtype=np.float32) / 255.0
    if mode != "L":
        # RGB(A), P (palette), CMYK, YCbCr: ITU-R 601-2 luma, which is the gray value for gray pixels.
        im = im.convert("L")
    return np.asarray(im, dtype=np.float32) / 255.0


def _read_raster(data: bytes, fmt: str, max_pixels: int, min_side: int) -> LoadedImage:
    from PIL import Image, ImageOps

    try:
        # Image.open parses the header only; it raises DecompressionBombError itself for sizes over
        # 2x Pillow's global limit.
        im = Image.open(io.BytesIO(data), formats=["PNG"] if fmt == "png" else ["JPEG"])
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"image dimensions are too large to decode safely ({e})") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise InvalidImageError(f"cannot read the {fmt.upper()} header: the file is corrupt or truncated") from e
    with im:
        _check_dims(im.width, im.height, max_pixels, min_side)
        try:
            im.load()
            gray = _pil_to_gray(ImageOps.exif_transpose(im) if fmt == "jpeg" else im, data, fmt)
        except Image.DecompressionBombError as e:
            raise ImageTooLargeError(f"image dimensions are too large to decode safely ({e})") from e
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise InvalidImageError(f"cannot decode the {fmt.upper()} pixels: the file is corrupt or truncated") from e
    return LoadedImage(pixels=np.ascontiguousarray(gray), source_format=fmt)


# --------------------------------------------------------------------------------------------- DICOM


def _codec_hint(ts) -> str:
    """Which optional package decodes a compressed transfer syntax (for MissingCodecError messages)."""
    from pydicom import uid

    if ts in (uid.JPEGLosslessSV1, uid.JPEGLossless):
        need = "JPEG Lossless needs python-gdcm or pylibjpeg-libjpeg"
    elif ts in (*uid.JPEG2000TransferSyntaxes, uid.HTJ2K, uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL):
        need = "JPEG 2000 needs pylibjpeg-openjpeg"
    elif ts in uid.JPEGLSTransferSyntaxes:
        need = "JPEG-LS needs python-gdcm or pylibjpeg-libjpeg"
    elif ts in (uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit):
        need = "this JPEG variant needs python-gdcm or pylibjpeg-libjpeg"
    elif ts == uid.RLELossless:
        need = "RLE Lossless needs pylibjpeg-rle"
    else:
        need = "a decoder plugin is required"
    return f"DICOM transfer syntax '{ts.name}' cannot be decoded here: {need}: {_INSTALL_HINT}"


def _ensure_transfer_syntax(ds) -> None:
    """Give a preamble-less dataset the transfer syntax pydicom detected while parsing it."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = ds.original_encoding
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _validate_dicom(ds, max_pixels: int, min_side: int) -> None:
    """Refuse, from the header alone, every DICOM we will not or cannot turn into a chest radiograph."""
    if "PixelData" not in ds:
        raise UnsupportedDicomError("DICOM has no pixel data (is it a report, SR or presentation state?)")
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality and modality not in _ACCEPTED_MODALITIES:
        raise UnsupportedDicomError(
            f"DICOM modality {modality} is not supported: only chest radiographs (CR or DX) are accepted"
        )
    if modality == "DX" and str(ds.get("PresentationIntentType", "")).upper() == "FOR PROCESSING":
        # Raw detector data: accepted (windowed by min/max), but it looks different from the
        # FOR PRESENTATION images models are trained on. Not PHI, safe to log.
        logger.info("DX image is FOR PROCESSING (raw detector data); results may be less reliable")
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        frames = 1
    if frames > 1:
        raise UnsupportedDicomError(
            f"multi-frame DICOM ({frames} frames) is not supported; send each radiograph as its own file"
        )
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnsupportedDicomError(
            f"DICOM photometric interpretation {photometric or '(missing)'} is not supported; "
            "expected a grayscale radiograph (MONOCHROME1 or MONOCHROME2)"
        )
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise UnsupportedDicomError("DICOM has more than one sample per pixel; expected a grayscale radiograph")
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if rows is None or cols is None:
        raise InvalidImageError("DICOM pixel data has no Rows/Columns; the file is incomplete")
    _check_dims(int(cols), int(rows), max_pixels, min_side)


def _decode_dicom_pixels(ds) -> np.ndarray:
    """Stored values as an integer (H, W) array; missing decoders become MissingCodecError."""
    from pydicom.pixels import get_decoder, pixel_array

    ts = ds.file_meta.TransferSyntaxUID
    if ts.is_compressed:
        try:
            available = get_decoder(ts).is_available
        except NotImplementedError:
            available = False
        if not available:
            raise MissingCodecError(_codec_hint(ts))
    try:
        arr = pixel_array(ds)
    except RuntimeError as e:
        # pydicom raises RuntimeError both for "no plugin installed" and for "every plugin failed".
        if ts.is_compressed and "missing dependencies" in str(e):
            raise MissingCodecError(_codec_hint(ts)) from e
        raise InvalidImageError("cannot decode the DICOM pixel data: it is corrupt or truncated") from e
    except (ValueError, NotImplementedError, AttributeError, KeyError, TypeError, EOFError) as e:
        raise InvalidImageError(f"cannot decode the DICOM pixel data: {type(e).__name__}") from e
    if arr.ndim != 2:
        raise UnsupportedDicomError(f"DICOM pixel array has shape {arr.shape}; expected one grayscale frame")
    return arr


def _stored_value_range(ds) -> tuple[int, int]:
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _voi_lut_table(ds) -> tuple[np.ndarray, int]:
    """The first VOI LUT as an int64 table, and the first stored value it maps (PS3.3 C.11.2.1.1).

    Read here rather than through pydicom's `apply_voi`, which indexes with the LUT's own dtype and so
    wraps around for an 8-bit LUT with more than 256 entries (e.g. 12-bit input -> 8-bit output).
    """
    item = ds.VOILUTSequence[0]
    n_entries, first_map, _ = (int(v) for v in item.LUTDescriptor)
    n_entries = n_entries or 2**16
    value = item.LUTData
    if isinstance(value, (bytes, bytearray)):
        # OW: 16-bit words whatever the nominal depth, in the dataset's byte order.
        little = ds.file_meta.TransferSyntaxUID != "1.2.840.10008.1.2.2"
        table = np.frombuffer(bytes(value), dtype="<u2" if little else ">u2")[:n_entries]
    else:
        table = np.atleast_1d(np.asarray(value))[:n_entries]
    if table.size == 0:
        raise ValueError("empty VOI LUT")
    return table.astype(np.int64), first_map


def _voi_to_unit(arr: np.ndarray, ds) -> np.ndarray:
    """Apply the VOI LUT or window (or min/max of the data when there is none) and scale to [0, 1].

    `arr` is already in modality units (after the Modality LUT). The VOI output range depends on the
    header (LUT entry range, or BitsStored and rescale for a window, as in pydicom's `apply_windowing`);
    we map that whole output range to [0, 1], i.e. what a compliant viewer shows as black..white.
    """
    from pydicom.pixels import apply_voi_lut

    has_lut = bool(ds.get("VOILUTSequence")) and all(k in ds.VOILUTSequence[0] for k in ("LUTDescriptor", "LUTData"))
    has_window = ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None
    if has_lut:
        table, first_map = _voi_lut_table(ds)
        # Inputs below the first mapped value get the first entry, above the last get the last.
        idx = np.clip(np.rint(arr).astype(np.int64) - first_map, 0, table.size - 1)
        out = table[idx].astype(np.float64)
        lo, hi = float(table.min()), float(table.max())
    elif has_window:
        with np.errstate(over="ignore"):
            out = apply_voi_lut(arr.astype(np.float64), ds, index=0, prefer_lut=False)
            # The window function clips (LINEAR) or saturates (SIGMOID) at its output range.
            lo, hi = (float(v) for v in apply_voi_lut(np.array([-1e30, 1e30]), ds, index=0, prefer_lut=False))
    else:
        out = arr.astype(np.float64)
        lo, hi = float(out.min()), float(out.max())
    lo, hi = min(lo, hi), max(lo, hi)
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.float32)
    return np.clip((out - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _dicom_to_unit(arr: np.ndarray, ds) -> np.ndarray:
    """Stored values -> display values in [0, 1], bright = dense."""
    from pydicom.pixels import apply_modality_lut

    try:
        # Rescale slope/intercept or Modality LUT Sequence; float64 out when a rescale is present.
        modality_values = apply_modality_lut(arr, ds)
        unit = _voi_to_unit(np.asarray(modality_values, dtype=np.float64), ds)
    except (ValueError, NotImplementedError, IndexError, KeyError, AttributeError) as e:
        raise InvalidImageError(f"DICOM LUT/window attributes are invalid ({type(e).__name__}: {e})") from e
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
    # MONOCHROME1 means "minimum value is white". A Presentation LUT Shape INVERSE on a MONOCHROME1
    # image (what PS3.3 C.8.11.1 requires for DX) states that *same* inversion, it is not a second
    # one; INVERSE on MONOCHROME2 does invert. So: invert once if either says so.
    if photometric == "MONOCHROME1" or shape == "INVERSE":
        unit = 1.0 - unit
    return unit


def _read_dicom(data: bytes, max_pixels: int, min_side: int) -> LoadedImage:
    import pydicom
    from pydicom.errors import InvalidDicomError

    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
    try:
        # Pixel data stays as raw bytes here; nothing is decoded before the header checks.
        ds = pydicom.dcmread(io.BytesIO(data), force=not has_preamble)
    except InvalidDicomError as e:
        raise InvalidImageError("not a valid DICOM file") from e
    except Exception as e:  # noqa: BLE001 - the parser can fail many ways on hostile bytes; all mean "corrupt"
        raise InvalidImageError("cannot parse the DICOM file: it is corrupt or truncated") from e
    if len(ds) == 0:
        raise InvalidImageError("not a valid DICOM file (no data elements)")
    _ensure_transfer_syntax(ds)
    _validate_dicom(ds, max_pixels, min_side)
    stored = _decode_dicom_pixels(ds)
    pixels = _dicom_to_unit(stored, ds)
    view = str(ds.get("ViewPosition", "") or "").strip().upper() or None
    # The header is returned for interop (SR/FHIR) but must not carry the (possibly huge) pixels.
    del ds.PixelData
    return LoadedImage(pixels=np.ascontiguousarray(pixels), source_format="dicom", view=view, dicom_header=ds)


# --------------------------------------------------------------------------------------------- entry point


def read_image(
    source: str | os.PathLike | bytes,
    *,
    max_pixels: int = 50_000_000,
    min_side: int = 64,
) -> LoadedImage:
    """Read a PNG, JPEG or DICOM radiograph from a path or from bytes.

    Args:
        source: File path, or the file's bytes (e.g. an upload).
        max_pixels: Largest accepted ``width * height``; checked from the header before decoding.
        min_side: Smallest accepted side in pixels (smaller images are thumbnails or icons).

    Returns:
        The image as float32 ``(H, W)`` in [0, 1], bright = dense, plus the DICOM view and header.

    Raises:
        InvalidImageError: Empty, truncated or corrupt file, or an image smaller than ``min_side``.
        UnsupportedMediaError: The content is not PNG, JPEG or DICOM.
        UnsupportedDicomError: DICOM without pixels, multi-frame, non-CR/DX modality, or not grayscale.
        MissingCodecError: Compressed DICOM whose decoder is not installed (message names the extra).
        ImageTooLargeError: Dimensions over ``max_pixels``.
    """
    data, suffix = _read_source(source)
    try:
        fmt = sniff_format(data)
    except UnsupportedMediaError as e:
        if suffix in (".dcm", ".dicom"):
            raise UnsupportedMediaError(
                "the file is named like a DICOM but its content is not DICOM (no 'DICM' marker at byte 128)"
            ) from e
        raise
    if fmt == "dicom":
        return _read_dicom(data, max_pixels, min_side)
    return _read_raster(data, fmt, max_pixels, min_side)
