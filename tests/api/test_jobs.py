"""Job store (SQLite) and dynamic batcher, without HTTP."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from reportgen.api.batching import DynamicBatcher, JobRunner
from reportgen.api.jobs import DONE, FAILED, QUEUED, RUNNING, JobStore, StoredFile, sqlite_path_from_url

from reportgen.errors import ConfigError, InvalidImageError


def _file(data: bytes = b"png-bytes", view: str | None = "PA") -> StoredFile:
    return StoredFile(data=data, source_format="png", view=view, dicom_json=None)


def _report(priority: str) -> dict:
    return {"findings": "f", "impression": "i", "triage": {"priority": priority, "reasons": [priority]}}


@pytest.fixture
def store(tmp_path):
    s = JobStore(tmp_path / "jobs.db")
    yield s
    s.close()


@pytest.mark.parametrize(
    ("url", "path"),
    [("sqlite:///rel/jobs.db", "rel/jobs.db"), ("sqlite:////abs/jobs.db", "/abs/jobs.db"), ("plain.db", "plain.db")],
)
def test_sqlite_url(url, path):
    assert sqlite_path_from_url(url) == path


@pytest.mark.parametrize("url", ["postgres://db/x", "sqlite:///:memory:", "sqlite:///", ""])
def test_sqlite_url_refuses(url):
    with pytest.raises(ConfigError):
        sqlite_path_from_url(url)


def test_create_get_and_files(store):
    job, created = store.create(caller="k1", files=[_file(b"a"), _file(b"b", None)], fingerprint="fp")
    assert created and job["status"] == QUEUED and job["report"] is None
    assert [i["view"] for i in job["images"]] == ["PA", None]
    assert [f.data for f in store.files(job["id"])] == [b"a", b"b"]
    assert store.get("nope") is None


def test_idempotency_key_returns_existing_job(store):
    first, created1 = store.create(caller="k", files=[_file()], fingerprint="fp", idempotency_key="k:key:1")
    again, created2 = store.create(caller="k", files=[_file()], fingerprint="fp", idempotency_key="k:key:1")
    assert created1 and not created2 and again["id"] == first["id"]
    assert store.find_by_idempotency_key("k:key:1")["id"] == first["id"]


def test_lifecycle_and_resume(store):
    a, _ = store.create(caller="k", files=[_file()], fingerprint="a")
    b, _ = store.create(caller="k", files=[_file()], fingerprint="b")
    store.mark_running([a["id"]])
    assert store.get(a["id"])["status"] == RUNNING
    assert store.requeue_interrupted() == 1
    assert store.queued_ids() == [a["id"], b["id"]]
    store.complete(a["id"], _report("urgent"))
    store.fail(b["id"], "invalid_image", "bad")
    assert store.get(a["id"])["report"]["triage"]["priority"] == "urgent"
    assert store.get(b["id"])["status"] == FAILED and store.get(b["id"])["error"]["code"] == "invalid_image"
    assert store.queued_ids() == []


def test_store_survives_reopen(tmp_path):
    s1 = JobStore(tmp_path / "j.db")
    job, _ = s1.create(caller="k", files=[_file(b"x" * 1000)], fingerprint="f")
    s1.close()
    s2 = JobStore(tmp_path / "j.db")
    assert s2.get(job["id"])["status"] == QUEUED and s2.files(job["id"])[0].data == b"x" * 1000
    s2.close()


def test_worklist_orders_by_priority_then_age(store):
    ids = {}
    for name, priority in [("r", "routine"), ("u1", "urgent"), ("p", "priority"), ("u2", "urgent")]:
        job, _ = store.create(caller="k", files=[_file()], fingerprint=name)
        store.complete(job["id"], _report(priority))
        ids[job["id"]] = name
    open_job, _ = store.create(caller="k", files=[_file()], fingerprint="open")
    items = store.worklist((QUEUED, RUNNING, DONE))
    assert [ids.get(i["id"], "open") for i in items] == ["u1", "u2", "p", "r", "open"]
    assert [i["id"] for i in store.worklist((QUEUED,))] == [open_job["id"]]


def test_audit_is_append_only(store):
    store.audit(caller="k1", action="report.create", job_id="j1", request_id="r1", detail={"n_images": 2})
    store.audit(caller="k1", action="report.read", job_id="j1")
    recs = store.audit_records("j1")
    assert [r["action"] for r in recs] == ["report.create", "report.read"]
    assert recs[0]["detail"] == {"n_images": 2}
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store._conn.execute("UPDATE audit SET caller = 'x'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store._conn.execute("DELETE FROM audit")
    assert len(store.audit_records()) == 2


# --- batcher -----------------------------------------------------------------------------------------------


def test_batcher_groups_queued_items():
    gate = threading.Event()
    calls: list[list[int]] = []

    def fn(items):
        calls.append(list(items))
        return [i * 10 for i in items]

    b = DynamicBatcher(fn, max_batch_size=3, max_wait_ms=0, gate=gate)
    b.start()
    futures = [b.submit(i) for i in range(7)]  # all queued before the gate opens
    gate.set()
    assert [f.result(timeout=10) for f in futures] == [i * 10 for i in range(7)]
    assert calls == [[0, 1, 2], [3, 4, 5], [6]]
    b.stop()


def test_batcher_waits_for_batch_mates():
    sizes: list[int] = []
    b = DynamicBatcher(lambda items: sizes.append(len(items)) or items, max_batch_size=8, max_wait_ms=2000)
    b.start()
    f1 = b.submit(1)
    f2 = b.submit(2)  # arrives well within the 2 s window of the first item
    assert f1.result(timeout=10) == 1 and f2.result(timeout=10) == 2
    assert sizes == [2]
    b.stop()


def test_batcher_error_reaches_every_waiter_and_stop_cancels():
    gate = threading.Event()

    def boom(items):
        raise RuntimeError("model exploded")

    b = DynamicBatcher(boom, max_batch_size=2, max_wait_ms=0, gate=gate)
    b.start()
    fs = [b.submit(i) for i in range(2)]
    gate.set()
    for f in fs:
        with pytest.raises(RuntimeError, match="exploded"):
            f.result(timeout=10)
    b.stop(timeout=2)
    with pytest.raises(RuntimeError, match="stopped"):
        b.submit(3)


def test_batcher_rejects_bad_sizes():
    with pytest.raises(ValueError):
        DynamicBatcher(lambda x: x, max_batch_size=0)


class _Draft:
    def __init__(self, tag):
        self.tag = tag

    def to_dict(self):
        return _report("routine") | {"findings": self.tag}


class _PickyPredictor:
    """Fails any batch containing the study tagged 'bad'; records the batch sizes it saw."""

    info = {"version": "test"}

    def __init__(self):
        self.sizes = []

    def generate_batch(self, studies):
        self.sizes.append(len(studies))
        if any(s == ["bad"] for s in studies):
            raise InvalidImageError("cannot read the bad study")
        return [_Draft(s[0]) for s in studies]


def test_runner_isolates_a_failing_study(store):
    gate = threading.Event()
    predictor = _PickyPredictor()
    runner = JobRunner(store, lambda: predictor, max_batch_size=4, max_wait_ms=0, gate=gate)
    runner.start()
    jobs = [store.create(caller="k", files=[_file()], fingerprint=t)[0]["id"] for t in ("a", "bad", "c")]
    futures = [runner.submit(jid, [tag]) for jid, tag in zip(jobs, ["a", "bad", "c"], strict=True)]
    gate.set()
    outcomes = [f.result(timeout=10) for f in futures]
    assert [o.status for o in outcomes] == [DONE, FAILED, DONE]
    assert store.get(jobs[0])["report"]["findings"] == "a"
    assert store.get(jobs[1])["error"] == {"code": "invalid_image", "message": "cannot read the bad study"}
    assert predictor.sizes == [3, 1, 1, 1]  # one batched try, then one by one
    assert runner.batch_sizes == [3]
    runner.stop()


def test_runner_hides_unexpected_exception_text(store):
    class Broken:
        info = {}

        def generate_batch(self, studies):
            raise RuntimeError("Doe^Jane 19700101")  # PHI-looking text must not reach the store

    gate = threading.Event()
    gate.set()
    runner = JobRunner(store, lambda: Broken(), max_batch_size=1, max_wait_ms=0, gate=gate)
    runner.start()
    jid = store.create(caller="k", files=[_file()], fingerprint="x")[0]["id"]
    assert runner.submit(jid, ["img"]).result(timeout=10).status == FAILED
    err = store.get(jid)["error"]
    assert err["code"] == "inference_failed" and "Doe" not in err["message"]
    runner.stop()


def test_runner_resume_submits_queued_and_interrupted(store):
    a = store.create(caller="k", files=[_file()], fingerprint="a")[0]["id"]
    b = store.create(caller="k", files=[_file()], fingerprint="b")[0]["id"]
    store.mark_running([b])  # as if the previous process died mid-batch
    predictor = _PickyPredictor()
    runner = JobRunner(store, lambda: predictor, max_batch_size=8, max_wait_ms=50)
    runner._load = lambda jid: [jid]  # the stored bytes are not images here; the job id stands in
    runner.start()
    assert runner.resume() == 2
    deadline = time.monotonic() + 10
    while any(store.get(j)["status"] != DONE for j in (a, b)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.get(a)["report"]["findings"] == a and store.get(b)["report"]["findings"] == b
    runner.stop()
