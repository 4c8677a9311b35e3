"""`reportgen serve`: run the draft-report API with uvicorn.

Flags override ``REPORTGEN_*`` environment variables (see `Settings.from_env`). API keys come only from the
environment (``REPORTGEN_API_KEYS`` / ``REPORTGEN_API_KEYS_FILE``), never from flags, so they do not show
up in ``ps`` output or shell history.
"""

from __future__ import annotations

import argparse
import logging
import sys

from reportgen.errors import ReportgenError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reportgen serve",
        description="Serve AI draft chest X-ray reports over HTTP (drafts need radiologist review).",
    )
    p.add_argument("--host", default=None, help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default 8000; 0 = any free port)")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped checkpoint)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: one per core)")
    p.add_argument("--workers", type=int, default=None, help="inference threads (default 1)")
    p.add_argument("--db", dest="db_url", default=None, help="job store URL, sqlite:///path.db")
    p.add_argument("--insecure-no-auth", action="store_true", help="run WITHOUT API keys (local development only)")
    p.add_argument("--max-batch-size", type=int, default=None, help="studies per forward pass (default 8)")
    p.add_argument("--max-wait-ms", type=float, default=None, help="batching wait for the first study (default 10)")
    p.add_argument("--max-upload-mb", type=float, default=None, help="largest request body in MiB (default 64)")
    p.add_argument("--cors-origin", action="append", default=None, help="allow this browser origin (repeatable)")
    p.add_argument("--audit-log", dest="audit_log_path", default=None, help="also append audit records to this JSONL")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse flags, build the app and run uvicorn until interrupted. Returns the exit code."""
    args = build_parser().parse_args(argv)
    from .app import Settings, create_app
    from .logging_utils import configure_logging

    overrides = {
        "host": args.host,
        "port": args.port,
        "checkpoint": args.checkpoint,
        "device": args.device,
        "workers": args.workers,
        "torch_threads": args.torch_threads,
        "db_url": args.db_url,
        "max_batch_size": args.max_batch_size,
        "max_wait_ms": args.max_wait_ms,
        "max_upload_bytes": int(args.max_upload_mb * 1024 * 1024) if args.max_upload_mb else None,
        "cors_origins": tuple(args.cors_origin) if args.cors_origin else None,
        "audit_log_path": args.audit_log_path,
        "insecure_no_auth": True if args.insecure_no_auth else None,
    }
    try:
        settings = Settings.from_env(**overrides)
        app = create_app(settings)
    except ReportgenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if settings.insecure_no_auth and not settings.api_keys:
        print("warning: serving WITHOUT authentication (--insecure-no-auth)", file=sys.stderr)

    import uvicorn

    configure_logging(args.log_level)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        access_log=False,  # our middleware logs requests without query strings or PHI
        log_config=None,  # keep the JSON logging configured above
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
