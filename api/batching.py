"""Dynamic batching: concurrent requests share one forward pass, off the event loop.

A `DynamicBatcher` owns a queue and worker thread(s). Each worker blocks for the first item, then keeps
collecting until it holds ``max_batch_size`` items or ``max_wait_ms`` have passed since that first item,
and hands the whole list to one call of the batch function. With ``max_batch_size=1`` it degenerates to
one-at-a-time processing with no added latency.

`JobRunner` is the batch function for report jobs: it loads each job's images from the store, calls
``predictor.generate_batch`` once, and writes each draft (or a per-job error) back. A bad study never takes
its batch-mates down: when the batched call fails, the jobs are retried one by one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from reportgen.errors import ReportgenError

from .jobs import DONE, FAILED, JobStore

logger = logging.getLogger("reportgen.api")

T = TypeVar("T")
R = TypeVar("R")

_STOP = object()


@dataclass
class _Pending(Generic[T, R]):
    item: T
    future: Future[R]


class DynamicBatcher(Generic[T, R]):
    """Group submitted items into batches for ``fn``.

    Args:
        fn: called with a list of items, must return one result per item, in order. If it raises, every
            future of that batch gets the exception.
        max_batch_size: most items per call.
        max_wait_ms: longest time the first item of a batch waits for company (milliseconds).
        workers: worker threads; each forms and runs its own batches.
        gate: optional event the workers wait on before their first batch (e.g. "model loaded").
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        *,
        max_batch_size: int = 8,
        max_wait_ms: float = 10.0,
        workers: int = 1,
        gate: threading.Event | None = None,
        name: str = "batcher",
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self._queue: queue.Queue[Any] = queue.Queue()
        self._gate = gate
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True) for i in range(max(1, workers))
        ]
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            for t in self._threads:
                t.start()

    def submit(self, item: T) -> Future[R]:
        """Queue one item; the future resolves with its result once its batch has run."""
        if self._stopping.is_set():
            raise RuntimeError("batcher is stopped")
        fut: Future[R] = Future()
        self._queue.put(_Pending(item, fut))
        return fut

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the workers after their current batch; queued items are left unprocessed (futures cancelled).

        Threads are daemons, so a worker stuck in a long forward pass does not block shutdown past ``timeout``.
        """
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(_STOP)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t.is_alive():
                t.join(max(0.0, deadline - time.monotonic()))
        while True:
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(pending, _Pending):
                pending.future.cancel()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def depth(self) -> int:
        """Items waiting for a batch (approximate, as any queue size)."""
        return self._queue.qsize()

    def _collect(self) -> list[_Pending[T, R]] | None:
        first = self._queue.get()
        if first is _STOP:
            return None
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                nxt = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is _STOP:
                self._queue.put(_STOP)  # leave it for this worker's next _collect
                break
            batch.append(nxt)
        return batch

    def _loop(self) -> None:
        if self._gate is not None:
            while not self._gate.wait(0.1):
                if self._stopping.is_set():
                    return
        while True:
            batch = self._collect()
            if batch is None:
                return
            if self._stopping.is_set():
                for p in batch:
                    p.future.cancel()
                continue
            live = [p for p in batch if p.future.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                results = list(self.fn([p.item for p in live]))
                if len(results) != len(live):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(live)} items")
            except BaseException as exc:  # noqa: BLE001 - delivered to every waiter
                for p in live:
                    p.future.set_exception(exc)
                continue
            for p, r in zip(live, results, strict=True):
                p.future.set_result(r)


@dataclass(frozen=True)
class JobOutcome:
    """What happened to one job in a batch."""

    job_id: str
    status: str  # "done" | "failed"
    error_code: str | None = None


class JobRunner:
    """Runs report jobs through a `DynamicBatcher` and records the results in the `JobStore`.

    Args:
        store: the job store.
        predictor_ref: zero-argument callable returning the loaded predictor (it may load after start).
        max_pixels: decompression-bomb guard re-applied when stored bytes are decoded again.
    """

    def __init__(
        self,
        store: JobStore,
        predictor_ref: Callable[[], Any],
        *,
        max_batch_size: int,
        max_wait_ms: float,
        workers: int = 1,
        gate: threading.Event | None = None,
        max_pixels: int = 50_000_000,
    ) -> None:
        self.store = store
        self._predictor_ref = predictor_ref
        self.max_pixels = max_pixels
        self.batcher: DynamicBatcher[tuple[str, list[Any] | None], JobOutcome] = DynamicBatcher(
            self._run_batch,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            workers=workers,
            gate=gate,
            name="inference",
        )
        #: Sizes of the batches run so far (bounded; for /metrics-style introspection and tests).
        self.batch_sizes: list[int] = []

    def start(self) -> None:
        self.batcher.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.batcher.stop(timeout)

    def submit(
        self, job_id: str, images: list[Any] | None = None, max_preloaded: int | None = None
    ) -> Future[JobOutcome]:
        """Queue a job.

        Args:
            job_id: a stored job.
            images: already-decoded inputs (saves a second decode); None decodes the stored bytes when the
                job's batch runs.
            max_preloaded: when more jobs than this are waiting, ``images`` are dropped so a long queue holds
                job ids, not decoded pixel arrays (memory stays bounded under bursts).
        """
        if images is not None and max_preloaded is not None and self.batcher.depth >= max_preloaded:
            images = None
        return self.batcher.submit((job_id, images))

    def resume(self) -> int:
        """Requeue jobs a previous process left running or queued; returns how many were submitted."""
        requeued = self.store.requeue_interrupted()
        ids = self.store.queued_ids()
        for jid in ids:
            self.submit(jid)
        if ids:
            logger.info("resumed jobs=%d (of which interrupted=%d)", len(ids), requeued)
        return len(ids)

    def _load(self, job_id: str) -> list[Any]:
        from .security import decode_stored

        return [decode_stored(f, max_pixels=self.max_pixels) for f in self.store.files(job_id)]

    def _run_batch(self, items: list[tuple[str, list[Any] | None]]) -> list[JobOutcome]:
        t0 = time.perf_counter()
        job_ids = [jid for jid, _ in items]
        self.store.mark_running(job_ids)
        outcomes: dict[str, JobOutcome] = {}
        ready: list[tuple[str, list[Any]]] = []
        for jid, images in items:
            try:
                ready.append((jid, images if images is not None else self._load(jid)))
            except ReportgenError as exc:
                outcomes[jid] = self._fail(jid, exc)
        if ready:
            predictor = self._predictor_ref()
            try:
                drafts = list(predictor.generate_batch([imgs for _, imgs in ready]))
                if len(drafts) != len(ready):
                    raise RuntimeError("generate_batch returned the wrong number of drafts")
                pairs = list(zip(ready, drafts, strict=True))
            except Exception as exc:  # noqa: BLE001 - isolate the failing study below
                logger.warning("batch of %d failed (%s); retrying one by one", len(ready), type(exc).__name__)
                pairs = []
                for jid, imgs in ready:
                    try:
                        pairs.append(((jid, imgs), predictor.generate_batch([imgs])[0]))
                    except Exception as one_exc:  # noqa: BLE001 - recorded as the job's error
                        outcomes[jid] = self._fail(jid, one_exc)
            if not self.batcher.stopping:
                for (jid, _), draft in pairs:
                    self.store.complete(jid, draft.to_dict())
                    outcomes[jid] = JobOutcome(jid, DONE)
        self.batch_sizes.append(len(items))
        del self.batch_sizes[:-1000]
        model_version = ""
        try:
            model_version = str(self._predictor_ref().info.get("version", ""))
        except Exception:  # noqa: BLE001 - logging only
            pass
        logger.info(
            "batch size=%d ms=%.1f model_version=%s failed=%d",
            len(items),
            (time.perf_counter() - t0) * 1000,
            model_version,
            sum(o.status == FAILED for o in outcomes.values()),
        )
        return [outcomes.get(jid, JobOutcome(jid, "interrupted")) for jid in job_ids]

    def _fail(self, job_id: str, exc: BaseException) -> JobOutcome:
        if isinstance(exc, ReportgenError):
            code, message = exc.code, str(exc)
        else:
            # Unexpected: keep the exception text out of the store and the logs (it may quote PHI).
            code, message = "inference_failed", "inference failed; see server logs for the request id"
            logger.error("job %s failed: %s", job_id, type(exc).__name__)
        if not self.batcher.stopping:
            self.store.fail(job_id, code, message)
        return JobOutcome(job_id, FAILED, code)


def with_views(images: list[Any], views: Sequence[str | None]) -> list[Any]:
    """Attach caller-supplied views to decoded images (a view from the DICOM header wins when none is given)."""
    out = []
    for img, view in zip(images, views, strict=True):
        out.append(replace(img, view=view) if view and getattr(img, "view", None) != view else img)
    return out
