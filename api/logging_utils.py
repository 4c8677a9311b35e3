"""One-line JSON log records for the server (easy to ship to a log store, no PHI by construction).

The API only ever logs ids, key ids, hashed UIDs, sizes and timings; this module just formats them.
"""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg"}`` per line; exception text is reduced to its type name."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            # The message of an exception may quote header values (PHI); the type is enough to search for.
            out["exc_type"] = record.exc_info[0].__name__
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str = "info") -> None:
    """Send ``reportgen`` and ``uvicorn`` logs to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("reportgen", "uvicorn", "uvicorn.error"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(level.upper())
        log.propagate = False
    # highdicom logs the UIDs of the datasets it copies from at INFO; UIDs identify a study (PHI).
    logging.getLogger("highdicom").setLevel(logging.WARNING)
