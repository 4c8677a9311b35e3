"""One JSON error shape for every failure: ``{"error": {"code", "message", "request_id"}}``.

Library errors (`reportgen.errors.ReportgenError`) already carry a stable ``code`` and an ``http_status``;
the API adds a few of its own (auth, size, unknown job, not ready). Everything else becomes a 500 whose body
never carries exception text, because exception messages can quote DICOM values (PHI).
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from reportgen.errors import ReportgenError

logger = logging.getLogger("reportgen.api")


class ApiError(ReportgenError):
    """An error raised by the API layer itself (not by the library)."""

    code = "api_error"
    http_status = 400
    #: Extra response headers (e.g. ``WWW-Authenticate``, ``Retry-After``).
    headers: dict[str, str] = {}


class UnauthorizedError(ApiError):
    """No API key, or one that is not configured."""

    code = "unauthorized"
    http_status = 401
    headers = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'}


class PayloadTooLargeError(ApiError):
    """The request body is over the configured upload limit."""

    code = "payload_too_large"
    http_status = 413


class NotFoundError(ApiError):
    """Unknown job id or route."""

    code = "not_found"
    http_status = 404


class ConflictError(ApiError):
    """The request clashes with the job's state (e.g. an export of an unfinished job, a reused key)."""

    code = "conflict"
    http_status = 409


class NotReadyError(ApiError):
    """The model is still loading or warming up."""

    code = "model_not_ready"
    http_status = 503
    headers = {"Retry-After": "5"}


class InvalidRequestError(ApiError):
    """A form field or header is malformed."""

    code = "invalid_request"
    http_status = 422


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "service_unavailable",
}


def request_id_of(request: Request) -> str | None:
    """The id the request-context middleware put into the ASGI scope (None outside a request)."""
    return request.scope.get("state", {}).get("request_id")


def error_body(code: str, message: str, request_id: str | None, **extra: Any) -> dict[str, Any]:
    """The one error shape; ``extra`` adds fields such as ``job_id`` next to code/message."""
    return {"error": {"code": code, "message": message, "request_id": request_id, **extra}}


def error_response(
    status: int, code: str, message: str, request_id: str | None, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A JSONResponse with the error shape."""
    return JSONResponse(error_body(code, message, request_id, **extra), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    # Pydantic's messages name the field and the rule; the offending *input* is deliberately left out
    # because it may be PHI (an accession number, an indication).
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid")))
    return "; ".join(parts) or "request validation failed"


def log_unexpected(exc: BaseException, request_id: str | None) -> None:
    """Log an unexpected exception's type and stack frames, but not its message (it may quote PHI)."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    logger.error("unhandled %s request_id=%s\n%s", type(exc).__name__, request_id, frames)


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception FastAPI can hand to a handler onto the JSON error shape."""

    @app.exception_handler(ReportgenError)
    async def _reportgen_error(request: Request, exc: ReportgenError) -> JSONResponse:
        status = int(getattr(exc, "http_status", 400))
        if status >= 500:
            log_unexpected(exc, request_id_of(request))
            message = "internal error" if status == 500 else str(exc)
        else:
            message = str(exc) or exc.code
        headers = dict(getattr(exc, "headers", {}) or {})
        return error_response(status, exc.code, message, request_id_of(request), headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "validation_error", _validation_message(exc), request_id_of(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, request_id_of(request), headers=exc.headers)
