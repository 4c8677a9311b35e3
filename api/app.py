"""The draft-report HTTP service: `create_app(settings, predictor=None)` builds a FastAPI app.

Request flow for ``POST /v1/reports``: the request-context middleware assigns a request id and counts
body bytes (413 past the limit) -> the API key is checked -> each file is sniffed and decoded in a thread
(415/413/422 for bad input) -> the job and its bytes are stored in SQLite -> the job joins the dynamic
batcher's queue -> a worker thread runs ``predictor.generate_batch`` for the whole batch and writes each
draft back. Sync requests wait for their job (up to ``sync_timeout_s``, then 202); async ones get 202 and
``Location`` at once.

Everything stateful (store, batcher, predictor) lives on ``app.state.service``; nothing is global, so tests
can run several apps side by side (e.g. "restart" = a second app on the same database file).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reportgen.constants import MAX_VIEWS
from reportgen.errors import ConfigError, ReportgenError, StudyError

from . import jobs as jobstates
from .batching import JobRunner
from .errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    NotReadyError,
    PayloadTooLargeError,
    error_body,
    error_response,
    install_error_handlers,
    log_unexpected,
    request_id_of,
)
from .heatmaps import HeatmapService, ModelAccess, guarded_ref, resolve_observation
from .jobs import JobStore, sqlite_path_from_url
from .security import (
    ApiKeyChecker,
    fingerprint,
    hash_identifier,
    headers_from_json,
    inspect_upload,
    load_api_keys,
    normalize_view,
    request_id,
    stored_file,
)

logger = logging.getLogger("reportgen.api")

API_TITLE = "reportgen draft-report API"
_STATIC_DIR = Path(__file__).parent / "static"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_PRINTABLE = re.compile(r"^[\x20-\x7e]+$")


@dataclass(frozen=True)
class Settings:
    """Service configuration; `reportgen serve` builds it from flags, `from_env` from environment variables.

    Attributes:
        checkpoint: checkpoint folder for `load_checkpoint` (None = the default shipped checkpoint).
        db_url: job store, ``sqlite:///relative.db`` or ``sqlite:////abs/path.db`` or a plain path.
        api_keys: accepted X-API-Key values; empty means no auth, allowed only with ``insecure_no_auth``.
        insecure_no_auth: explicitly run without API keys (local development only).
        max_batch_size: most studies per forward pass.
        max_wait_ms: how long the first queued study waits for batch-mates (milliseconds).
        workers: inference threads; each forms its own batches (1 is right for one CPU/GPU device).
        device: torch device for the model.
        torch_threads: torch intra-op threads (None = torch's default, one per core). On a shared or
            oversubscribed CPU, 1 avoids OpenMP spin-waiting that can make small models 5x slower.
        max_upload_bytes: largest request body (all files together), bytes.
        max_pixels: largest width x height per image (decompression-bomb guard).
        max_preloaded: queued jobs that keep their decoded pixels in memory; beyond that, jobs wait as ids and
            are decoded from the store when their batch runs (bounds memory during bursts).
        sync_timeout_s: a sync request waits this long for its draft, then gets 202 + Location instead.
        cors_origins: origins allowed by CORS; empty = CORS off.
        audit_log_path: optional JSONL copy of the audit table (no PHI: ids, caller key id, action, time).
        shutdown_timeout_s: how long shutdown waits for a running batch; unfinished jobs resume on restart.
        host, port: where `reportgen serve` listens.
    """

    checkpoint: str | None = None
    db_url: str = "sqlite:///reportgen-jobs.db"
    api_keys: tuple[str, ...] = ()
    insecure_no_auth: bool = False
    max_batch_size: int = 8
    max_wait_ms: float = 10.0
    workers: int = 1
    device: str = "cpu"
    torch_threads: int | None = None
    max_upload_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_preloaded: int = 64
    sync_timeout_s: float = 120.0
    cors_origins: tuple[str, ...] = ()
    audit_log_path: str | None = None
    shutdown_timeout_s: float = 10.0
    host: str = "127.0.0.1"
    port: int = 8000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``REPORTGEN_*`` variables (keys via `load_api_keys`), then ``overrides``."""
        import os

        env = os.environ if environ is None else environ
        kw: dict[str, Any] = {"api_keys": load_api_keys(env)}
        simple: dict[str, tuple[str, Callable[[str], Any]]] = {
            "checkpoint": ("REPORTGEN_CHECKPOINT", str),
            "db_url": ("REPORTGEN_DB", str),
            "max_batch_size": ("REPORTGEN_MAX_BATCH_SIZE", int),
            "max_wait_ms": ("REPORTGEN_MAX_WAIT_MS", float),
            "workers": ("REPORTGEN_WORKERS", int),
            "device": ("REPORTGEN_DEVICE", str),
            "torch_threads": ("REPORTGEN_TORCH_THREADS", int),
            "max_upload_bytes": ("REPORTGEN_MAX_UPLOAD_BYTES", int),
            "max_pixels": ("REPORTGEN_MAX_PIXELS", int),
            "sync_timeout_s": ("REPORTGEN_SYNC_TIMEOUT_S", float),
            "audit_log_path": ("REPORTGEN_AUDIT_LOG", str),
        }
        for name, (var, conv) in simple.items():
            if env.get(var):
                try:
                    kw[name] = conv(env[var])
                except ValueError as exc:
                    raise ConfigError(f"{var}={env[var]!r} is not a valid {conv.__name__}") from exc
        if env.get("REPORTGEN_CORS_ORIGINS"):
            kw["cors_origins"] = tuple(o.strip() for o in env["REPORTGEN_CORS_ORIGINS"].split(",") if o.strip())
        if env.get("REPORTGEN_INSECURE_NO_AUTH", "").lower() in ("1", "true", "yes"):
            kw["insecure_no_auth"] = True
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)

    def validate(self) -> None:
        """Raise `ConfigError` for a configuration that must not start."""
        if not self.api_keys and not self.insecure_no_auth:
            raise ConfigError(
                "no API keys configured: set REPORTGEN_API_KEYS or REPORTGEN_API_KEYS_FILE, "
                "or pass --insecure-no-auth for local development"
            )
        if self.max_batch_size < 1 or self.max_wait_ms < 0 or self.workers < 1:
            raise ConfigError("max_batch_size and workers must be >= 1 and max_wait_ms >= 0")
        if self.max_upload_bytes < 1 or self.max_pixels < 1:
            raise ConfigError("max_upload_bytes and max_pixels must be positive")
        if "*" in self.cors_origins:
            raise ConfigError("CORS needs explicit origins; '*' is refused because requests carry PHI")
        sqlite_path_from_url(self.db_url)


@dataclass
class Service:
    """Everything a running app holds: store, runner, predictor and readiness."""

    settings: Settings
    predictor: Any = None
    checker: ApiKeyChecker = field(init=False)
    store: JobStore | None = None
    runner: JobRunner | None = None
    heatmaps: HeatmapService | None = None
    #: Inference holds it shared, the heat-map explainer exclusive (CAM hooks sit on the shared backbone).
    model_access: ModelAccess = field(default_factory=ModelAccess)
    ready: threading.Event = field(default_factory=threading.Event)
    load_error: str | None = None
    _audit_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.checker = ApiKeyChecker(self.settings.api_keys)

    def start(self) -> None:
        """Open the store, resume unfinished jobs and load/warm the model in the background."""
        self.store = JobStore(sqlite_path_from_url(self.settings.db_url))
        self.runner = JobRunner(
            self.store,
            guarded_ref(lambda: self.predictor, self.model_access),
            max_batch_size=self.settings.max_batch_size,
            max_wait_ms=self.settings.max_wait_ms,
            workers=self.settings.workers,
            gate=self.ready,
            max_pixels=self.settings.max_pixels,
        )
        self.heatmaps = HeatmapService(
            self.store, lambda: self.predictor, self.model_access, self.ready, max_pixels=self.settings.max_pixels
        )
        self.runner.start()
        self.runner.resume()
        threading.Thread(target=self._load_model, name="model-loader", daemon=True).start()

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop(self.settings.shutdown_timeout_s)
        if self.heatmaps is not None:
            self.heatmaps.close()
        if self.store is not None:
            self.store.close()

    def _load_model(self) -> None:
        t0 = time.perf_counter()
        try:
            if self.settings.torch_threads:
                import torch

                torch.set_num_threads(self.settings.torch_threads)
            if self.predictor is None:
                from reportgen.inference.predictor import load_checkpoint

                self.predictor = load_checkpoint(self.settings.checkpoint, device=self.settings.device)
            self.predictor.warmup()
            info = dict(self.predictor.info)
        except ReportgenError as exc:
            # /readyz is unauthenticated: it names the error code only; the message (paths) goes to the log.
            self.load_error = exc.code
            logger.error("model load failed: %s: %s", exc.code, exc)
            return
        except Exception as exc:  # noqa: BLE001 - reported by /readyz, never crashes the server
            self.load_error = "model_load_failed"
            log_unexpected(exc, None)
            return
        logger.info(
            "model ready name=%s version=%s sha256=%s load_ms=%.0f",
            info.get("name"),
            info.get("version"),
            str(info.get("sha256", ""))[:12],
            (time.perf_counter() - t0) * 1000,
        )
        self.ready.set()

    def audit(self, request: Request, action: str, job_id: str | None = None, **detail: Any) -> None:
        """Append to the audit table and, when configured, the JSONL audit file."""
        caller = getattr(request.state, "caller", "anonymous")
        rid = request_id_of(request)
        assert self.store is not None
        self.store.audit(caller=caller, action=action, job_id=job_id, request_id=rid, detail=detail or None)
        if self.settings.audit_log_path:
            record = {
                "at": jobstates.utc_now(),
                "request_id": rid,
                "caller": caller,
                "action": action,
                "job_id": job_id,
            }
            with self._audit_lock, open(self.settings.audit_log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({**record, **detail}) + "\n")


class RequestContextMiddleware:
    """Request id, body-size limit, safety headers, access log and the last-resort 500, as one ASGI layer.

    A pure ASGI middleware (not BaseHTTPMiddleware) so it can wrap ``receive`` to count body bytes while
    they stream in, and answer 413 from ``Content-Length`` before reading anything.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        rid = request_id(headers.get("x-request-id"))
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        t0 = time.perf_counter()
        started = False
        status = 500
        received = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                hdrs = list(message.get("headers", []))
                names = {k.lower() for k, _ in hdrs}
                hdrs.append((b"x-request-id", rid.encode()))
                if b"cache-control" not in names:
                    hdrs.append((b"cache-control", b"no-store"))  # responses may carry PHI
                hdrs.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": hdrs}
            await send(message)

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise PayloadTooLargeError(f"request body is over the {self.max_body_bytes:,}-byte upload limit")
            return message

        async def send_error(exc_status: int, code: str, message: str, extra: dict[str, str] | None = None) -> None:
            response = error_response(exc_status, code, message, rid, headers=extra)
            await response(scope, receive, send_wrapper)

        try:
            declared = headers.get("content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
                if not declared.isdigit():
                    await send_error(400, "bad_request", "Content-Length must be a non-negative integer")
                else:
                    await send_error(
                        413, "payload_too_large", f"request body is over the {self.max_body_bytes:,}-byte upload limit"
                    )
                return
            await self.app(scope, receive_wrapper, send_wrapper)
        except ReportgenError as exc:
            # Raised outside a route (e.g. by receive_wrapper while FastAPI read a body).
            if not started:
                await send_error(int(exc.http_status), exc.code, str(exc), getattr(exc, "headers", None) or None)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: JSON 500, no traceback text
            log_unexpected(exc, rid)
            if not started:
                await send_error(500, "internal_error", "internal server error")
        finally:
            route = scope.get("route")
            logger.info(
                "request id=%s method=%s path=%s status=%d ms=%.1f caller=%s bytes_in=%d",
                rid,
                scope.get("method"),
                getattr(route, "path", None) or "<unmatched>",
                status,
                (time.perf_counter() - t0) * 1000,
                state.get("caller", "-"),
                received,
            )


_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (REPORTGEN_API_KEYS)")


def _service(request: Request) -> Service:
    return request.app.state.service


async def require_caller(request: Request, api_key: str | None = Security(_api_key_header)) -> str:
    """Authenticate the caller; returns its key id ("anonymous" when auth is off)."""
    svc = _service(request)
    caller = svc.checker.check(api_key) if svc.checker.enabled else "anonymous"
    request.state.caller = caller
    return caller


_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "request_id": {"type": "string"},
            },
            "required": ["code", "message"],
        }
    },
}
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    s: {"description": d, "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
    for s, d in {
        401: "Missing or invalid API key",
        404: "Unknown job",
        409: "Conflict (report not ready, idempotency key reused)",
        413: "Upload or image too large",
        415: "Not PNG, JPEG or DICOM",
        422: "Invalid input",
        503: "Model not ready",
    }.items()
}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 1,
                            "maxItems": MAX_VIEWS,
                            "description": f"1-{MAX_VIEWS} images of ONE study: DICOM (CR/DX), PNG or JPEG",
                        },
                        "indication": {"type": "string", "maxLength": 2000},
                        "accession_number": {"type": "string", "maxLength": 64},
                        "study_instance_uid": {"type": "string", "maxLength": 64},
                        "views": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "one view per file (PA, AP, LL, ...), or one comma-separated string",
                        },
                    },
                }
            }
        },
    }
}


def _form_text(form: Any, name: str, max_len: int) -> str | None:
    values = form.getlist(name)
    if not values:
        return None
    value = values[-1]
    if not isinstance(value, str):
        raise InvalidRequestError(f"form field {name!r} must be text, not a file")
    value = value.strip()
    if len(value) > max_len:
        raise InvalidRequestError(f"form field {name!r} is longer than {max_len} characters")
    return value or None


def _form_views(form: Any, n_files: int) -> list[str | None]:
    raw = [v for v in form.getlist("views") if isinstance(v, str)]
    if len(raw) == 1:
        raw = raw[0].split(",")
    if not raw or all(not v.strip() for v in raw):
        return [None] * n_files
    if len(raw) != n_files:
        raise InvalidRequestError(f"got {len(raw)} views for {n_files} files: send one view per file, in order")
    return [normalize_view(v) for v in raw]


def _idempotency_scope(caller: str, idem_key: str | None, accession: str | None) -> str | None:
    # Scoped to the caller so one client cannot read another's job by guessing its key.
    if idem_key:
        return f"{caller}:key:{hashlib.sha256(idem_key.encode()).hexdigest()}"
    if accession:
        return f"{caller}:acc:{hashlib.sha256(accession.encode()).hexdigest()}"
    return None


def _error_status(code: str) -> int:
    """HTTP status of a stored job error code (ReportgenError subclasses know theirs; unknown -> 500)."""
    stack: list[type] = [ReportgenError]
    while stack:
        cls = stack.pop()
        if getattr(cls, "code", None) == code:
            return int(cls.http_status)
        stack.extend(cls.__subclasses__())
    return 500


def create_app(settings: Settings, predictor: Any = None) -> FastAPI:
    """Build the app.

    Args:
        settings: configuration (see `Settings`).
        predictor: an already-loaded predictor (tests, embedding); None loads ``settings.checkpoint`` in the
            background at startup. It is warmed up before /readyz turns 200.

    Raises:
        ConfigError: no API keys without ``insecure_no_auth``, a bad database URL, ``*`` CORS.
    """
    settings.validate()
    service = Service(settings, predictor)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202 - FastAPI's lifespan protocol
        await run_in_threadpool(service.start)
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    app = FastAPI(
        title=API_TITLE,
        version="1",
        description=(
            "Drafts chest X-ray reports for review by a qualified radiologist. Every draft carries a disclaimer; "
            "nothing here is a diagnosis."
        ),
        lifespan=lifespan,
    )
    app.state.service = service
    install_error_handlers(app)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type", "Idempotency-Key", "Prefer", "X-Request-ID"],
            expose_headers=["Location", "X-Request-ID"],
        )
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_upload_bytes)

    @app.get("/livez", tags=["health"])
    async def livez() -> dict[str, str]:
        """Liveness: 200 whenever the process serves HTTP."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: _ERROR_RESPONSES[503]})
    async def readyz(request: Request) -> Any:
        """Readiness: 200 once the model is loaded and warmed up, else 503."""
        if service.ready.is_set():
            info = getattr(service.predictor, "info", {}) or {}
            return {"status": "ready", "model": {"name": info.get("name"), "version": info.get("version")}}
        if service.load_error:
            message = f"the model failed to load ({service.load_error}); see the server log"
            return error_response(503, "model_load_failed", message, request_id_of(request))
        return error_response(503, "model_not_ready", "model is loading or warming up", request_id_of(request))

    @app.get("/", include_in_schema=False)
    @app.get("/review", include_in_schema=False)
    async def review_page() -> Any:
        """The static review page (no PHI in it; it calls the API with the user's key)."""
        page = _STATIC_DIR / "index.html"
        if not page.is_file():
            raise NotFoundError("the review page is not installed")
        return FileResponse(page, media_type="text/html")

    if _STATIC_DIR.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount("/static", StaticFiles(directory=_STATIC_DIR), name="static")

    auth = [Depends(require_caller)]

    @app.get(
        "/v1/models",
        tags=["models"],
        dependencies=auth,
        responses={401: _ERROR_RESPONSES[401], 503: _ERROR_RESPONSES[503]},
    )
    async def models() -> dict[str, Any]:
        """The served model: name, version, sha256 of its weights, labels, intended use."""
        if not service.ready.is_set():
            raise NotReadyError("model is loading or warming up; retry when /readyz is 200")
        return {"models": [dict(service.predictor.info)]}

    @app.get("/v1/worklist", tags=["reports"], dependencies=auth, responses={401: _ERROR_RESPONSES[401]})
    async def worklist(
        request: Request,
        status: Literal["open", "done", "failed", "all"] = Query("all", description="which jobs to list"),
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        """Jobs ordered by triage priority (urgent > priority > routine), then oldest first."""
        states = {
            "open": jobstates.OPEN_STATES,
            "done": (jobstates.DONE,),
            "failed": (jobstates.FAILED,),
            "all": (*jobstates.OPEN_STATES, jobstates.DONE, jobstates.FAILED),
        }[status]
        assert service.store is not None
        items = await run_in_threadpool(service.store.worklist, states, limit)
        service.audit(request, "worklist.read", n=len(items))
        return {"items": items}

    @app.post(
        "/v1/reports",
        tags=["reports"],
        dependencies=auth,
        openapi_extra=_UPLOAD_BODY,
        status_code=200,
        responses={202: {"description": "Accepted; poll the Location"}, **_ERROR_RESPONSES},
    )
    async def create_report(
        request: Request,
        mode: Literal["sync", "async"] | None = Query(None, description="sync (default) waits for the draft"),
        prefer: str | None = Header(None, description="`respond-async` = mode=async"),
        idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=255),
    ) -> Any:
        """Submit 1-4 images of one study; returns the job (sync: with its draft) or 202 + Location (async)."""
        caller = request.state.caller
        rid = request_id_of(request)
        want_async = mode == "async" or (mode is None and prefer is not None and "respond-async" in prefer.lower())
        if idempotency_key is not None and not _PRINTABLE.match(idempotency_key):
            raise InvalidRequestError("Idempotency-Key must be 1-255 printable ASCII characters")
        if service.load_error:
            raise NotReadyError(f"the model failed to load ({service.load_error}); see the server log")

        form = await request.form(max_files=64, max_fields=64)
        try:
            uploads = form.getlist("files")
            if not uploads:
                raise StudyError("no images: send 1-4 files of one study in the multipart field 'files'")
            if any(not isinstance(u, UploadFile) for u in uploads):
                raise InvalidRequestError("field 'files' must carry file uploads, not text")
            if len(uploads) > MAX_VIEWS:
                raise StudyError(f"{len(uploads)} images: a study has at most {MAX_VIEWS} (send one study per request)")
            indication = _form_text(form, "indication", 2000)
            accession = _form_text(form, "accession_number", 64)
            study_uid = _form_text(form, "study_instance_uid", 64)
            if accession is not None and not _PRINTABLE.match(accession):
                raise InvalidRequestError("accession_number must be printable ASCII")
            if study_uid is not None and not _UID.match(study_uid):
                raise InvalidRequestError("study_instance_uid must be a DICOM UID (digits and dots)")
            views = _form_views(form, len(uploads))
            blobs = [await u.read() for u in uploads]
        finally:
            await form.close()

        fp = fingerprint(blobs)
        scope_key = _idempotency_scope(caller, idempotency_key, accession)
        assert service.store is not None and service.runner is not None
        store, runner = service.store, service.runner
        if scope_key is not None:
            existing = await run_in_threadpool(store.find_by_idempotency_key, scope_key)
            if existing is not None:
                return await _replay(request, existing, fp, idempotency_key is not None, want_async)

        def validate() -> list[Any]:
            return [
                inspect_upload(b, max_pixels=settings.max_pixels, view=v) for b, v in zip(blobs, views, strict=True)
            ]

        images = await run_in_threadpool(validate)
        study_uid = _consistent_study(images, study_uid)
        files = [stored_file(b, img) for b, img in zip(blobs, images, strict=True)]
        job, created = await run_in_threadpool(
            lambda: store.create(
                caller=caller,
                files=files,
                fingerprint=fp,
                idempotency_key=scope_key,
                accession_number=accession,
                study_instance_uid=study_uid,
                indication=indication,
            )
        )
        if not created:  # lost a race with an identical concurrent request
            return await _replay(request, job, fp, idempotency_key is not None, want_async)
        future = runner.submit(job["id"], images, max_preloaded=settings.max_preloaded)
        service.audit(request, "report.create", job["id"], n_images=len(blobs), mode="async" if want_async else "sync")
        logger.info(
            "job created id=%s request_id=%s caller=%s n_images=%d bytes=%d formats=%s study=%s",
            job["id"],
            rid,
            caller,
            len(blobs),
            sum(len(b) for b in blobs),
            ",".join(img.source_format for img in images),
            hash_identifier(study_uid),
        )
        if want_async:
            return _accepted(job, prefer_applied=mode is None)
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout=settings.sync_timeout_s)
        except asyncio.TimeoutError:
            return _accepted(await run_in_threadpool(store.get, job["id"]))
        except Exception:  # noqa: BLE001 - the job's own state (failed) tells the client what happened
            pass
        return _finished(request, await run_in_threadpool(store.get, job["id"]))

    async def _replay(request: Request, job: dict[str, Any], fp: str, strict: bool, want_async: bool) -> Any:
        assert service.store is not None
        if strict and await run_in_threadpool(service.store.fingerprint_of, job["id"]) != fp:
            raise ConflictError("this Idempotency-Key was already used for different files; use a new key")
        service.audit(request, "report.replay", job["id"])
        if want_async or job["status"] in (jobstates.DONE, jobstates.FAILED):
            return _accepted(job) if job["status"] in jobstates.OPEN_STATES else _finished(request, job)
        deadline = time.monotonic() + settings.sync_timeout_s
        while job["status"] in jobstates.OPEN_STATES and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            job = await run_in_threadpool(service.store.get, job["id"]) or job
        return _accepted(job) if job["status"] in jobstates.OPEN_STATES else _finished(request, job)

    @app.get(
        "/v1/reports/{job_id}",
        tags=["reports"],
        dependencies=auth,
        responses={
            200: {
                "content": {
                    "application/json": {},
                    "application/fhir+json": {},
                    "application/dicom": {"schema": {"type": "string", "format": "binary"}},
                }
            },
            **_ERROR_RESPONSES,
        },
    )
    async def get_report(
        request: Request,
        job_id: str,
        format: Literal["json", "fhir", "sr"] = Query("json", description="json job, FHIR DiagnosticReport, DICOM SR"),
    ) -> Any:
        """A job and its draft; ``format=fhir`` -> FHIR R4 DiagnosticReport, ``format=sr`` -> DICOM SR file."""
        assert service.store is not None
        job = await run_in_threadpool(service.store.get, job_id)
        if job is None:
            raise NotFoundError(f"no job with id {job_id[:64]!r}")
        service.audit(request, "report.read", job_id, format=format)
        location = {"Location": f"/v1/reports/{job_id}"}
        if format == "json":
            return JSONResponse(job, headers=location)
        if job["status"] != jobstates.DONE:
            raise ConflictError(f"job {job_id} is {job['status']}: export is possible once it is done")
        if format == "fhir":
            from .fhir import to_fhir

            resource = await run_in_threadpool(to_fhir, job)
            return JSONResponse(resource, media_type="application/fhir+json")
        from .sr import to_sr

        dicom_json = [f.dicom_json for f in await run_in_threadpool(service.store.files, job_id)]
        payload = await run_in_threadpool(lambda: to_sr(job, headers_from_json(dicom_json)))
        return Response(
            payload,
            media_type="application/dicom",
            headers={"Content-Disposition": f'attachment; filename="{job_id}-sr.dcm"'},
        )

    @app.get("/v1/reports/{job_id}/heatmaps", tags=["reports"], dependencies=auth, responses=_ERROR_RESPONSES)
    async def list_heatmaps(request: Request, job_id: str) -> dict[str, Any]:
        """Heat maps of the draft's positive/uncertain observations, and sentences whose side contradicts them.

        Computes (and caches) the missing Grad-CAM maps of the study's first non-lateral image. Each entry
        gives the overlay ``url``, the map's patient ``side``, ``confidence`` (mass fraction on that side) and
        ``peak_xy`` (original pixels); ``laterality_flags`` are advice for the reader, not corrections.
        """
        heatmaps = service.heatmaps
        assert heatmaps is not None
        job = await run_in_threadpool(heatmaps.done_job, job_id)
        body = await run_in_threadpool(heatmaps.listing, job)
        service.audit(request, "heatmaps.read", job_id, n=len(body["heatmaps"]))
        return body

    @app.get(
        "/v1/reports/{job_id}/heatmaps/{observation}.png",
        tags=["reports"],
        dependencies=auth,
        response_class=Response,
        responses={
            200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
            **_ERROR_RESPONSES,
        },
    )
    async def heatmap_png(request: Request, job_id: str, observation: str) -> Response:
        """One observation's Grad-CAM overlay (PNG, the explained image's original size); any status may be asked.

        ``observation`` is a CheXpert name, with spaces URL-encoded or written as underscores.
        """
        heatmaps = service.heatmaps
        assert heatmaps is not None
        obs = resolve_observation(observation)
        await run_in_threadpool(heatmaps.done_job, job_id)
        png = await run_in_threadpool(heatmaps.overlay, job_id, obs)
        service.audit(request, "heatmap.read", job_id, observation=obs)
        return Response(png, media_type="image/png")

    return app


def _consistent_study(images: list[Any], study_uid: str | None) -> str | None:
    """The study's UID; every DICOM input must share it (and match the form field when given)."""
    uids = {
        str(img.dicom_header.StudyInstanceUID)
        for img in images
        if img.dicom_header is not None and getattr(img.dicom_header, "StudyInstanceUID", None)
    }
    if len(uids) > 1:
        raise StudyError("the DICOM files belong to different studies: send one study per request")
    if uids and study_uid and study_uid not in uids:
        raise StudyError("study_instance_uid does not match the StudyInstanceUID of the uploaded DICOM files")
    return study_uid or (next(iter(uids)) if uids else None)


def _accepted(job: dict[str, Any], prefer_applied: bool = False) -> JSONResponse:
    headers = {"Location": f"/v1/reports/{job['id']}"}
    if prefer_applied:
        headers["Preference-Applied"] = "respond-async"  # RFC 7240
    return JSONResponse(job, status_code=202, headers=headers)


def _finished(request: Request, job: dict[str, Any]) -> JSONResponse:
    location = {"Location": f"/v1/reports/{job['id']}"}
    if job["status"] == jobstates.FAILED:
        err = job.get("error") or {}
        code = err.get("code", "inference_failed")
        body = error_body(code, err.get("message", "inference failed"), request_id_of(request), job_id=job["id"])
        return JSONResponse(body, status_code=_error_status(code), headers=location)
    return JSONResponse(job, status_code=200, headers=location)
