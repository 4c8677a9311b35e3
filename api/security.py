"""API keys, request ids, identifier hashing and upload inspection.

Keys come from ``REPORTGEN_API_KEYS`` (comma-separated) and/or ``REPORTGEN_API_KEYS_FILE`` (one per
line, ``#`` comments). Logs and the audit trail name a caller by its *key id*, the first 12 hex digits
of the key's SHA-256, never by the key.

Uploads are trusted by content, not by name or declared type: the format is sniffed from the bytes,
image dimensions are checked from the header before any pixel is decoded (decompression bombs), and
only projection radiography DICOMs are accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from reportgen.errors import ConfigError, ImageTooLargeError, InvalidImageError, UnsupportedDicomError

from .errors import InvalidRequestError, UnauthorizedError
from .jobs import StoredFile

#: DICOM modalities of projection radiography; anything else (CT, MR, US, ...) is refused with a 422.
RADIOGRAPHY_MODALITIES = frozenset({"CR", "DX", "RG"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_VIEW = re.compile(r"^[A-Za-z0-9 _-]{1,16}$")


def key_id(key: str) -> str:
    """Short, non-reversible name of an API key for logs and the audit trail."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def hash_identifier(value: str | None) -> str | None:
    """Short SHA-256 of a DICOM UID or accession number, so logs can correlate without holding PHI."""
    return hashlib.sha256(value.encode()).hexdigest()[:12] if value else None


def load_api_keys(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Keys from ``REPORTGEN_API_KEYS`` and ``REPORTGEN_API_KEYS_FILE`` (deduplicated, order kept).

    Raises:
        ConfigError: the key file is named but unreadable, or a key is shorter than 16 characters.
    """
    env = os.environ if environ is None else environ
    keys: list[str] = [k.strip() for k in env.get("REPORTGEN_API_KEYS", "").split(",") if k.strip()]
    key_file = env.get("REPORTGEN_API_KEYS_FILE")
    if key_file:
        try:
            lines = Path(key_file).read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read REPORTGEN_API_KEYS_FILE {key_file!r}: {exc.strerror}") from exc
        keys += [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    for k in keys:
        if len(k) < 16:
            raise ConfigError(f"API key {key_id(k)} is too short: use at least 16 random characters")
    return tuple(dict.fromkeys(keys))


class ApiKeyChecker:
    """Constant-time API key check against every configured key."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = [(k.encode(), key_id(k)) for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, provided: str | None) -> str:
        """The caller's key id, or raise `UnauthorizedError`.

        Every configured key is compared (no early exit), so timing does not reveal which prefix matched.
        """
        if not provided:
            raise UnauthorizedError("missing API key: send it in the X-API-Key header")
        given = provided.encode()
        match = None
        for key, kid in self._keys:
            if hmac.compare_digest(given, key):
                match = kid
        if match is None:
            raise UnauthorizedError("invalid API key")
        return match


def request_id(value: str | None) -> str:
    """The client's X-Request-ID when it is short and safe for logs, else a fresh random one."""
    if value and _REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


def normalize_view(value: str | None) -> str | None:
    """Upper-case a view name (``"pa"`` -> ``"PA"``); empty -> None. Raises InvalidRequestError if malformed."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not _VIEW.match(value):
        raise InvalidRequestError("a view must be a short name such as PA, AP or LL")
    return value.upper()


def _check_header_dimensions(data: bytes, fmt: str, max_pixels: int) -> None:
    """Reject PNG/JPEG whose *header* claims more than ``max_pixels`` before anything is decoded."""
    if fmt not in ("png", "jpeg"):
        return  # DICOM: read_image checks Rows x Columns before touching PixelData
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:  # lazy: parses the header only
            w, h = im.size
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image is over the {max_pixels:,}-pixel limit") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(f"{fmt.upper()} header is unreadable (truncated or corrupt file?)") from exc
    if w * h > max_pixels:
        raise ImageTooLargeError(f"image is {w} x {h} pixels, over the {max_pixels:,}-pixel limit")


def inspect_upload(data: bytes, *, max_pixels: int, view: str | None = None) -> Any:
    """Validate and decode one uploaded file.

    Args:
        data: The raw bytes.
        max_pixels: Largest width x height accepted (decompression-bomb guard).
        view: Caller-supplied view; overrides nothing when None.

    Returns:
        A `reportgen.data.io.LoadedImage` (with ``view`` set when given).

    Raises:
        InvalidImageError: empty, truncated or undecodable.
        UnsupportedMediaError: not PNG, JPEG or DICOM (415).
        ImageTooLargeError: over ``max_pixels`` (413).
        UnsupportedDicomError: no pixels, multi-frame, or not a radiograph (e.g. a CT slice).
    """
    from dataclasses import replace

    from PIL import Image

    from reportgen.data.io import read_image, sniff_format

    if not data:
        raise InvalidImageError("uploaded file is empty (0 bytes)")
    fmt = sniff_format(data)
    _check_header_dimensions(data, fmt, max_pixels)
    try:
        image = read_image(data, max_pixels=max_pixels)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image is over the {max_pixels:,}-pixel limit") from exc
    header = getattr(image, "dicom_header", None)
    if header is not None:
        modality = str(getattr(header, "Modality", "") or "").upper()
        if modality and modality not in RADIOGRAPHY_MODALITIES:
            raise UnsupportedDicomError(
                f"DICOM modality {modality} is not a radiograph: send chest X-rays (CR or DX) only"
            )
    if view:
        image = replace(image, view=view)
    return image


def header_json(image: Any) -> str | None:
    """DICOM JSON of an image's header (no pixels), for SR export later; None for PNG/JPEG."""
    header = getattr(image, "dicom_header", None)
    if header is None:
        return None
    try:
        return header.to_json(bulk_data_threshold=1 << 20)
    except Exception:  # noqa: BLE001 - a header pydicom cannot serialise only loses SR export
        return None


def stored_file(data: bytes, image: Any) -> StoredFile:
    """What the job store keeps of one validated upload."""
    return StoredFile(data=data, source_format=image.source_format, view=image.view, dicom_json=header_json(image))


def decode_stored(f: StoredFile, *, max_pixels: int) -> Any:
    """Decode a stored upload again (restart resumption); the view recorded at upload time is re-applied."""
    from dataclasses import replace

    from reportgen.data.io import read_image

    image = read_image(f.data, max_pixels=max_pixels)
    return replace(image, view=f.view) if f.view and image.view != f.view else image


def headers_from_json(items: Iterable[str | None]) -> list[Any]:
    """pydicom Datasets from stored DICOM JSON (PNG/JPEG inputs have none and are skipped)."""
    import pydicom

    return [pydicom.Dataset.from_json(s) for s in items if s]


def fingerprint(parts: Iterable[bytes]) -> str:
    """SHA-256 over the uploaded files (length-prefixed), to tell a replay from a different request."""
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.hexdigest()
