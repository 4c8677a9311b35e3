"""Exceptions a user can act on.

Every error that bad input can cause is a `ReportgenError` subclass with a one-line message saying
what is wrong and what to do. The CLI prints `error: <message>` and exits non-zero; the API maps
`http_status`/`code` to a JSON body. Nothing else should reach a user as a traceback.
"""


class ReportgenError(Exception):
    """Base class: `code` is a stable machine-readable name, `http_status` the API's 4xx."""

    code = "reportgen_error"
    http_status = 400


class InvalidImageError(ReportgenError):
    """The bytes are not a readable image (not an image, truncated, zero bytes, too small)."""

    code = "invalid_image"
    http_status = 422


class UnsupportedMediaError(ReportgenError):
    """The content is not PNG, JPEG or DICOM (sniffed, not trusted from a file name)."""

    code = "unsupported_media_type"
    http_status = 415


class UnsupportedDicomError(ReportgenError):
    """A DICOM we refuse on purpose: no pixels, multi-frame, wrong modality or photometric."""

    code = "unsupported_dicom"
    http_status = 422


class MissingCodecError(ReportgenError):
    """A compressed transfer syntax whose decoder is not installed; the message names the extra."""

    code = "missing_codec"
    http_status = 422


class ImageTooLargeError(ReportgenError):
    """Image dimensions over the limit (also guards against decompression bombs)."""

    code = "image_too_large"
    http_status = 413


class StudyError(ReportgenError):
    """A study is malformed as a whole: no images or more than MAX_VIEWS views."""

    code = "invalid_study"
    http_status = 422


class CheckpointError(ReportgenError):
    """A checkpoint folder is missing a file or is inconsistent."""

    code = "invalid_checkpoint"
    http_status = 500


class ConfigError(ReportgenError):
    """A YAML config or a --key=value override is wrong."""

    code = "invalid_config"


class DataError(ReportgenError):
    """A dataset manifest/annotation file is missing, malformed, or inconsistent."""

    code = "invalid_data"
