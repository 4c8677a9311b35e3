"""Heat maps for finished jobs: Grad-CAM overlays computed on demand, cached in SQLite, never run beside inference.

    GET /v1/reports/{id}/heatmaps                     -> positive/uncertain observations + laterality flags
    GET /v1/reports/{id}/heatmaps/{observation}.png   -> one overlay PNG at the original image size

Why a readers-writer lock (`ModelAccess`) and not a second executor: `HeatmapExplainer` puts forward and
backward hooks on the *shared* backbone while it runs, so any forward pass in another thread at that moment
would mix its activations into the CAM (and the CAM's gradients into nothing useful). Batch inference runs
in the `JobRunner`'s worker thread(s) through ``predictor.generate_batch``; the runner is handed a
`GuardedPredictor` whose ``generate``/``generate_batch`` hold the lock *shared*, and the explainer holds it
*exclusive*. Shared mode keeps ``workers > 1`` parallel among themselves (plain no-grad forwards do not
interfere), and the lock prefers a waiting writer, so a heat-map request waits at most for the batches
already running, never for a queue that keeps refilling. A heat map never waits for the batching window.

Which image: the study's first non-lateral stored image (the model's view slot 0, see
`reportgen.inference.heatmap.frontal_image`), decoded again from the job store. The PNG is an overlay at that
image's original pixel size. Cache rows are keyed by (job, observation, model sha256): a server restarted
with other weights recomputes instead of showing another model's map. Overlays contain the radiograph, so
they are PHI and live in the same database as the uploads.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reportgen.constants import OBSERVATIONS

from .errors import ApiError, ConflictError, NotFoundError, NotReadyError
from .jobs import DONE, JobStore, utc_now

#: Draft label statuses whose heat maps the JSON listing computes (what a reader would want to check).
LISTED_STATUSES = ("positive", "uncertain")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS heatmaps (
    job_id TEXT NOT NULL,
    observation TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    image_index INTEGER NOT NULL,
    png BLOB NOT NULL,
    summary TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (job_id, observation, model_sha256)
);
"""


class HeatmapsUnavailableError(ApiError):
    """The served model cannot be explained (e.g. a predictor without a timm backbone)."""

    code = "heatmaps_unavailable"
    http_status = 501


class ModelAccess:
    """Readers-writer lock over the shared model: inference is a reader, the CAM explainer the only writer.

    Writer-preferring: once a writer waits, new readers queue behind it, so a heat map is not starved by a
    stream of batches; running readers finish first.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class GuardedPredictor:
    """A predictor proxy whose forward passes hold `ModelAccess` shared; every other attribute passes through."""

    def __init__(self, predictor: Any, access: ModelAccess) -> None:
        self._predictor = predictor
        self._access = access

    def generate_batch(self, *args: Any, **kwargs: Any) -> Any:
        with self._access.shared():
            return self._predictor.generate_batch(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        with self._access.shared():
            return self._predictor.generate(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._predictor, name)


def guarded_ref(predictor_ref: Callable[[], Any], access: ModelAccess) -> Callable[[], Any]:
    """Wrap a ``predictor_ref`` (as `JobRunner` takes it) so its forward passes go through ``access``."""

    def ref() -> Any:
        predictor = predictor_ref()
        return None if predictor is None else GuardedPredictor(predictor, access)

    return ref


def resolve_observation(name: str) -> str:
    """A CheXpert name from a URL segment: exact, with underscores for spaces, any case.

    Raises:
        NotFoundError: not one of the 14 observations (the message lists them).
    """
    wanted = name.replace("_", " ").strip().casefold()
    for obs in OBSERVATIONS:
        if obs.casefold() == wanted:
            return obs
    valid = ", ".join(o.replace(" ", "_") for o in OBSERVATIONS)
    raise NotFoundError(f"unknown observation {name[:64]!r}; use one of: {valid}")


def png_path(job_id: str, observation: str) -> str:
    """The overlay's URL path (underscores for spaces, so it needs no percent-encoding)."""
    return f"/v1/reports/{job_id}/heatmaps/{observation.replace(' ', '_')}.png"


@dataclass(frozen=True)
class CachedHeatmap:
    """One stored overlay and the numbers the laterality check and the listing need.

    Attributes:
        observation: CheXpert name.
        png: overlay PNG bytes, at the explained image's original size.
        image_index: which uploaded image (upload order) was explained.
        side: patient side of the map's peak ("left" | "right" | "midline" | None).
        confidence: fraction of the map's mass on that side, in [0, 1].
        peak_xy: peak (x, y) in original image pixels.
        probability: the findings head's probability for the observation.
    """

    observation: str
    png: bytes
    image_index: int
    side: str | None
    confidence: float
    peak_xy: tuple[float, float]
    probability: float

    def summary(self, job_id: str) -> dict[str, Any]:
        return {
            "url": png_path(job_id, self.observation),
            "image_index": self.image_index,
            "side": self.side,
            "confidence": round(self.confidence, 4),
            "peak_xy": [round(self.peak_xy[0], 1), round(self.peak_xy[1], 1)],
            "probability": round(self.probability, 4),
        }


class HeatmapCache:
    """The ``heatmaps`` table, on its own connection to the job database (WAL lets it share the file)."""

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        with self._lock:
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def get(self, job_id: str, observation: str, model_sha256: str) -> CachedHeatmap | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT png, image_index, summary FROM heatmaps"
                " WHERE job_id = ? AND observation = ? AND model_sha256 = ?",
                (job_id, observation, model_sha256),
            ).fetchone()
        if row is None:
            return None
        s = json.loads(row[2])
        return CachedHeatmap(
            observation, bytes(row[0]), int(row[1]), s["side"], float(s["confidence"]), tuple(s["peak_xy"]), s["p"]
        )

    def put(self, job_id: str, model_sha256: str, hm: CachedHeatmap) -> None:
        summary = {"side": hm.side, "confidence": hm.confidence, "peak_xy": list(hm.peak_xy), "p": hm.probability}
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO heatmaps (job_id, observation, model_sha256, image_index, png, summary,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job_id, hm.observation, model_sha256, hm.image_index, hm.png, json.dumps(summary), utc_now()),
            )


class HeatmapService:
    """Computes, caches and lists a job's heat maps.

    Args:
        store: the job store (jobs and their uploaded bytes).
        predictor_ref: zero-argument callable returning the loaded (unguarded) predictor.
        access: the lock shared with the inference workers.
        ready: set once the model is loaded and warmed up.
        max_pixels: decompression-bomb guard for decoding stored uploads again.
        method: CAM method (a key of `reportgen.inference.heatmap.CAM_METHODS`).
    """

    def __init__(
        self,
        store: JobStore,
        predictor_ref: Callable[[], Any],
        access: ModelAccess,
        ready: threading.Event,
        *,
        max_pixels: int,
        method: str = "gradcam++",
    ) -> None:
        self.store = store
        self.cache = HeatmapCache(store.path)
        self._predictor_ref = predictor_ref
        self._access = access
        self._ready = ready
        self.max_pixels = max_pixels
        self.method = method
        self._explainer: Any = None
        # One computation at a time: a second request for the same map waits and then finds it cached.
        self._compute_lock = threading.Lock()

    def close(self) -> None:
        self.cache.close()

    def done_job(self, job_id: str) -> dict[str, Any]:
        """The job, or 404 (unknown) / 409 (not done)."""
        job = self.store.get(job_id)
        if job is None:
            raise NotFoundError(f"no job with id {job_id[:64]!r}")
        if job["status"] != DONE or not job.get("report"):
            raise ConflictError(f"job {job_id} is {job['status']}: heat maps are available once it is done")
        return job

    def overlay(self, job_id: str, observation: str) -> bytes:
        """PNG bytes of one observation's overlay (computed and cached on the first request)."""
        return self.heatmaps(job_id, [observation])[observation].png

    def listing(self, job: dict[str, Any]) -> dict[str, Any]:
        """Heat maps of the draft's positive/uncertain observations and the laterality flags they raise."""
        from reportgen.inference.laterality import check_draft

        report = job["report"]
        wanted = [o for o, lab in (report.get("labels") or {}).items() if lab.get("status") in LISTED_STATUSES]
        wanted = [o for o in OBSERVATIONS if o in wanted]
        maps = self.heatmaps(job["id"], wanted) if wanted else {}
        flags = check_draft(report.get("findings") or "", report.get("impression") or "", maps)
        return {
            "job_id": job["id"],
            "method": self.method,
            "statuses": list(LISTED_STATUSES),
            "heatmaps": {o: hm.summary(job["id"]) for o, hm in maps.items()},
            "laterality_flags": [f.to_dict() for f in flags],
        }

    def heatmaps(self, job_id: str, observations: Sequence[str]) -> dict[str, CachedHeatmap]:
        """Cached heat maps for ``observations``; missing ones are computed together (one backward pass)."""
        sha = self._model_sha()
        found = {o: self.cache.get(job_id, o, sha) for o in observations}
        if all(found.values()):
            return found  # type: ignore[return-value]
        with self._compute_lock:
            found = {o: self.cache.get(job_id, o, sha) for o in observations}
            missing = [o for o, hm in found.items() if hm is None]
            if missing:
                for hm in self._compute(job_id, missing):
                    self.cache.put(job_id, sha, hm)
                    found[hm.observation] = hm
        return found  # type: ignore[return-value]

    def _model_sha(self) -> str:
        if not self._ready.is_set():
            raise NotReadyError("model is loading or warming up; retry when /readyz is 200")
        info = getattr(self._predictor_ref(), "info", None) or {}
        return str(info.get("sha256") or "unknown")

    def _compute(self, job_id: str, observations: list[str]) -> list[CachedHeatmap]:
        from reportgen.inference.heatmap import frontal_image, overlay_png

        from .security import decode_stored

        images = [decode_stored(f, max_pixels=self.max_pixels) for f in self.store.files(job_id)]
        image = frontal_image(images)
        index = next(i for i, im in enumerate(images) if im is image)
        with self._access.exclusive():  # no inference forward pass while the CAM hooks sit on the backbone
            maps = self._get_explainer().explain(image, observations)
        return [
            CachedHeatmap(
                observation=o,
                png=overlay_png(image, hm),
                image_index=index,
                side=hm.side,
                confidence=float(hm.confidence),
                peak_xy=(float(hm.peak_xy[0]), float(hm.peak_xy[1])),
                probability=float(hm.probability),
            )
            for o, hm in maps.items()
        ]

    def _get_explainer(self) -> Any:
        """The explainer for the current predictor (built once; building probes the backbone, so it needs the lock)."""
        from reportgen.inference.heatmap import HeatmapExplainer

        predictor = self._predictor_ref()
        if self._explainer is None or self._explainer.predictor is not predictor:
            try:
                self._explainer = HeatmapExplainer(predictor, method=self.method)
            except AttributeError as exc:
                raise HeatmapsUnavailableError("the served model does not support heat maps") from exc
        return self._explainer
