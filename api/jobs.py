"""SQLite job store: the service's only PHI store (uploaded images, DICOM headers, reports, audit trail).

Why SQLite: one file, no server, transactional, and WAL mode lets readers run while the inference thread
writes. One connection guarded by a lock is plenty at this service's rates (a write per job state change)
and avoids per-thread connection bookkeeping.

Tables:
    jobs      one row per study request; status queued -> running -> done | failed.
    job_files the uploaded bytes (so a queued job can be resumed after a restart) and the DICOM header
              of each input as DICOM JSON (needed later for DICOM SR export).
    audit     append-only (SQLite triggers refuse UPDATE and DELETE): who did what to which job, when.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reportgen.errors import ConfigError

#: Job states, in lifecycle order.
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
OPEN_STATES = (QUEUED, RUNNING)
#: Triage priorities, most urgent first; their index is the worklist sort key (unknown sorts last).
PRIORITY_ORDER = ("urgent", "priority", "routine")
_UNKNOWN_RANK = len(PRIORITY_ORDER)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    caller TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    fingerprint TEXT NOT NULL,
    accession_number TEXT,
    study_instance_uid TEXT,
    indication TEXT,
    priority_rank INTEGER NOT NULL DEFAULT 3,
    report TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_worklist ON jobs (priority_rank, created_at);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created_at);
CREATE TABLE IF NOT EXISTS job_files (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,
    source_format TEXT NOT NULL,
    view TEXT,
    dicom_json TEXT,
    PRIMARY KEY (job_id, idx)
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    request_id TEXT,
    caller TEXT NOT NULL,
    action TEXT NOT NULL,
    job_id TEXT,
    detail TEXT
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""


def utc_now() -> str:
    """ISO 8601 UTC timestamp with milliseconds (sorts lexicographically in time order)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def sqlite_path_from_url(url: str) -> str:
    """``sqlite:///rel/path``, ``sqlite:////abs/path`` (SQLAlchemy convention) or a plain path -> a file path.

    Raises:
        ConfigError: another scheme, or an empty path; in-memory databases are refused because the store
            must outlive the process (restart resumption) and is shared across threads.
    """
    if "://" in url:
        scheme, _, rest = url.partition("://")
        if scheme != "sqlite":
            raise ConfigError(f"unsupported database URL scheme {scheme!r}: use sqlite:///path/to/jobs.db")
        path = rest[1:] if rest.startswith("/") else rest
    else:
        path = url
    if not path or path == ":memory:":
        raise ConfigError("the job database needs a file path, e.g. sqlite:///reportgen-jobs.db")
    return path


@dataclass(frozen=True)
class StoredFile:
    """One uploaded image as kept in the store."""

    data: bytes
    source_format: str
    view: str | None
    dicom_json: str | None  # pydicom Dataset.to_json() of the header without pixels (PHI)


class JobStore:
    """Thread-safe access to the job database.

    Args:
        path: SQLite file; parent folders are created.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # isolation_level=None: autocommit; multi-statement writes use explicit BEGIN IMMEDIATE.
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # --- jobs -------------------------------------------------------------------------------------------

    def create(
        self,
        *,
        caller: str,
        files: Sequence[StoredFile],
        fingerprint: str,
        idempotency_key: str | None = None,
        accession_number: str | None = None,
        study_instance_uid: str | None = None,
        indication: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Insert a queued job with its files, or return the job that already holds ``idempotency_key``.

        Returns:
            (job dict, created) where created is False for an idempotent replay.
        """
        job_id = uuid.uuid4().hex
        now = utc_now()
        try:
            with self._tx() as conn:
                conn.execute(
                    "INSERT INTO jobs (id, status, created_at, updated_at, caller, idempotency_key, fingerprint,"
                    " accession_number, study_instance_uid, indication, priority_rank)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job_id,
                        QUEUED,
                        now,
                        now,
                        caller,
                        idempotency_key,
                        fingerprint,
                        accession_number,
                        study_instance_uid,
                        indication,
                        _UNKNOWN_RANK,
                    ),
                )
                conn.executemany(
                    "INSERT INTO job_files (job_id, idx, data, source_format, view, dicom_json)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(job_id, i, f.data, f.source_format, f.view, f.dicom_json) for i, f in enumerate(files)],
                )
        except sqlite3.IntegrityError:
            existing = self.find_by_idempotency_key(idempotency_key) if idempotency_key else None
            if existing is None:
                raise
            return existing, False
        job = self.get(job_id)
        assert job is not None
        return job, True

    def find_by_idempotency_key(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM jobs WHERE idempotency_key = ?", (key,)).fetchone()
        return _row_to_job(row) if row else None

    def fingerprint_of(self, job_id: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT fingerprint FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row["fingerprint"] if row else None

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The public job dict (what GET /v1/reports/{id} returns), or None for an unknown id."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            files = self._conn.execute(
                "SELECT idx, source_format, view FROM job_files WHERE job_id = ? ORDER BY idx", (job_id,)
            ).fetchall()
        job = _row_to_job(row)
        job["images"] = [{"index": f["idx"], "format": f["source_format"], "view": f["view"]} for f in files]
        return job

    def files(self, job_id: str) -> list[StoredFile]:
        """The stored inputs of a job, in upload order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT data, source_format, view, dicom_json FROM job_files WHERE job_id = ? ORDER BY idx", (job_id,)
            ).fetchall()
        return [StoredFile(bytes(r["data"]), r["source_format"], r["view"], r["dicom_json"]) for r in rows]

    def mark_running(self, job_ids: Sequence[str]) -> None:
        with self._tx() as conn:
            conn.executemany(
                "UPDATE jobs SET status = ?, updated_at = ?, attempts = attempts + 1 WHERE id = ? AND status = ?",
                [(RUNNING, utc_now(), jid, QUEUED) for jid in job_ids],
            )

    def complete(self, job_id: str, report: dict[str, Any]) -> None:
        """Store a finished draft; the triage priority also becomes the worklist sort key."""
        priority = (report.get("triage") or {}).get("priority")
        rank = PRIORITY_ORDER.index(priority) if priority in PRIORITY_ORDER else _UNKNOWN_RANK
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET status = ?, updated_at = ?, report = ?, error = NULL, priority_rank = ? WHERE id = ?",
                (DONE, utc_now(), json.dumps(report), rank, job_id),
            )

    def fail(self, job_id: str, code: str, message: str) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET status = ?, updated_at = ?, error = ? WHERE id = ?",
                (FAILED, utc_now(), json.dumps({"code": code, "message": message}), job_id),
            )

    def requeue_interrupted(self) -> int:
        """Put jobs left ``running`` by a previous process back to ``queued``; returns how many."""
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET status = ?, updated_at = ? WHERE status = ?", (QUEUED, utc_now(), RUNNING)
            )
            return cur.rowcount

    def queued_ids(self) -> list[str]:
        """Queued job ids, oldest first (the order they are resumed in)."""
        with self._lock:
            rows = self._conn.execute("SELECT id FROM jobs WHERE status = ? ORDER BY created_at", (QUEUED,)).fetchall()
        return [r["id"] for r in rows]

    def worklist(self, states: Sequence[str], limit: int = 100) -> list[dict[str, Any]]:
        """Jobs in ``states``, most urgent triage first, then oldest first (open jobs have no triage yet)."""
        marks = ",".join("?" for _ in states)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY priority_rank, created_at LIMIT ?",
                (*states, limit),
            ).fetchall()
        items = []
        for row in rows:
            job = _row_to_job(row)
            triage = (job.get("report") or {}).get("triage") or {}
            items.append(
                {
                    "id": job["id"],
                    "status": job["status"],
                    "created_at": job["created_at"],
                    "priority": triage.get("priority"),
                    "reasons": triage.get("reasons", []),
                    "accession_number": job["accession_number"],
                }
            )
        return items

    # --- audit ------------------------------------------------------------------------------------------

    def audit(
        self,
        *,
        caller: str,
        action: str,
        job_id: str | None = None,
        request_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append one audit record (the table refuses updates and deletes)."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO audit (at, request_id, caller, action, job_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
                (utc_now(), request_id, caller, action, job_id, json.dumps(detail) if detail else None),
            )

    def audit_records(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """Read the audit trail (all of it, or one job's), oldest first."""
        with self._lock:
            if job_id is None:
                rows = self._conn.execute("SELECT * FROM audit ORDER BY seq").fetchall()
            else:
                rows = self._conn.execute("SELECT * FROM audit WHERE job_id = ? ORDER BY seq", (job_id,)).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"]) if r["detail"] else None} for r in rows]


def _row_to_job(row: sqlite3.Row) -> dict[str, Any]:
    job: dict[str, Any] = {
        "id": row["id"],
        "status": row["status"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "accession_number": row["accession_number"],
        "study_instance_uid": row["study_instance_uid"],
        "indication": row["indication"],
        "report": json.loads(row["report"]) if row["report"] else None,
    }
    if row["error"]:
        job["error"] = json.loads(row["error"])
    return job
