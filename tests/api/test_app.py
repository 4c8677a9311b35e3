"""The HTTP API end to end (FastAPI TestClient), with a real tiny checkpoint where the model matters.

A fake predictor is used only where a test needs control over timing or output (blocking for the
restart and batching tests, chosen triage priorities for the worklist, failures).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time
from pathlib import Path

import pydicom
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from PIL import Image
from reportgen.api.app import RequestContextMiddleware, Settings, create_app
from reportgen.api.errors import install_error_handlers
from reportgen.api.serve import main as serve_main

from reportgen.constants import DISCLAIMER, OBSERVATIONS
from reportgen.data.io import LoadedImage
from reportgen.errors import ConfigError
from reportgen.inference.predictor import DraftReport, LabelPrediction
from reportgen.inference.triage import Triage
from reportgen.testing import make_dicom, make_png

KEY = "test-key-0123456789abcdef"
AUTH = {"X-API-Key": KEY}
WAIT_S = 60.0  # generous upper bound for background work on 2 shared cores; never a timing assertion


# --- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def api_key() -> str:
    return KEY


@pytest.fixture(scope="session")
def files(tmp_path_factory) -> dict[str, bytes]:
    """Synthetic inputs (bytes) shared by the tests."""
    d = tmp_path_factory.mktemp("inputs")
    png = make_png(d / "a.png", size=(96, 96)).read_bytes()
    huge = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(huge, format="PNG")  # 400 Mpx, a few kB compressed
    return {
        "png": png,
        "png2": make_png(d / "b.png", size=(96, 96), seed=1).read_bytes(),
        "dicom": make_dicom(d / "a.dcm", size=(96, 96), study_uid="1.2.3.4").read_bytes(),
        "dicom_lat": make_dicom(d / "b.dcm", size=(96, 96), study_uid="1.2.3.4", view="LL", seed=1).read_bytes(),
        "dicom_other_study": make_dicom(d / "c.dcm", size=(96, 96), study_uid="1.2.3.5").read_bytes(),
        "dicom_phi": make_dicom(
            d / "phi.dcm", size=(96, 96), patient_name="Doe^Jane", patient_id="PID-98765", accession="ACC-777"
        ).read_bytes(),
        "dicom_no_pixels": make_dicom(d / "np.dcm", size=(96, 96), with_pixels=False).read_bytes(),
        "ct": make_dicom(d / "ct.dcm", size=(96, 96), modality="CT").read_bytes(),
        "truncated_png": png[: len(png) // 2],
        "random": bytes(range(256)) * 8,
        "empty": b"",
        "huge_png": huge.getvalue(),
    }


def upload(*items: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    """Multipart `files` entries from (file name, bytes) pairs."""
    return [("files", (name, data, "application/octet-stream")) for name, data in items]


def _draft(priority: str = "routine", findings: str = "Lungs are clear.") -> DraftReport:
    labels = {o: LabelPrediction(0.1, "negative") for o in OBSERVATIONS}
    return DraftReport(
        findings=findings,
        impression="No acute disease.",
        labels=labels,
        triage=Triage(priority, [f"fake {priority}"]),
        model={"name": "fake", "version": "0.0-fake", "sha256": "0" * 64},
        disclaimer=DISCLAIMER,
    )


class FakePredictor:
    """Same interface as `Predictor`, with controllable timing and output.

    Args:
        release: when given, generate_batch blocks until it is set.
        warm: when given, warmup blocks until it is set (the model "never finishes loading").
        priorities: triage priority of successive drafts (cycled).
        fail: generate_batch raises this.
    """

    info = {
        "name": "fake",
        "version": "0.0-fake",
        "sha256": "0" * 64,
        "labels": list(OBSERVATIONS),
        "intended_use": "tests",
    }

    def __init__(self, release=None, warm=None, priorities=("routine",), fail: Exception | None = None):
        self.release, self.warm, self.fail = release, warm, fail
        self.priorities = list(priorities)
        self.batch_sizes: list[int] = []
        self.studies: list = []
        self.calls = 0

    def warmup(self) -> None:
        if self.warm is not None:
            self.warm.wait()

    def generate_batch(self, studies, views=None):
        self.batch_sizes.append(len(studies))
        self.studies.extend(studies)
        if self.release is not None:
            self.release.wait()
        if self.fail is not None:
            raise self.fail
        out = []
        for _ in studies:
            out.append(_draft(self.priorities[self.calls % len(self.priorities)]))
            self.calls += 1
        return out

    def generate(self, images, views=None):
        return self.generate_batch([images])[0]


@pytest.fixture
def client(make_client, tiny_predictor) -> TestClient:
    return make_client(tiny_predictor)


def wait_done(client: TestClient, job_id: str) -> dict:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        job = client.get(f"/v1/reports/{job_id}", headers=AUTH).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish")


def assert_error(resp, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and {"code", "message", "request_id"} <= set(body["error"])
    assert body["error"]["request_id"] == resp.headers["x-request-id"]
    assert "Traceback" not in resp.text
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


# --- health and metadata -------------------------------------------------------------------------------------


def test_health_and_models(client, tiny_predictor):
    assert client.get("/livez").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model"]["version"] == tiny_predictor.info["version"]
    models = client.get("/v1/models", headers=AUTH).json()["models"]
    assert models[0]["sha256"] == tiny_predictor.info["sha256"] and models[0]["labels"] == list(OBSERVATIONS)
    assert models[0]["intended_use"]


def test_readyz_is_503_until_warmed_up(make_client):
    warm = threading.Event()
    client = make_client(FakePredictor(warm=warm), wait_ready=False)
    assert client.get("/livez").status_code == 200
    assert_error(client.get("/readyz"), 503, "model_not_ready")
    assert_error(client.get("/v1/models", headers=AUTH), 503, "model_not_ready")
    warm.set()
    assert client.app.state.service.ready.wait(WAIT_S)
    assert client.get("/readyz").status_code == 200


def test_readyz_reports_a_broken_checkpoint(make_client, tmp_path):
    client = make_client(None, wait_ready=False, checkpoint=str(tmp_path / "missing-ckpt"))
    deadline = time.monotonic() + WAIT_S
    while client.app.state.service.load_error is None and time.monotonic() < deadline:
        time.sleep(0.02)
    err = assert_error(client.get("/readyz"), 503, "model_load_failed")
    assert "invalid_checkpoint" in err["message"]
    assert_error(client.post("/v1/reports", files=upload(("a.png", b"x")), headers=AUTH), 503)


# --- submitting reports -----------------------------------------------------------------------------------------


def test_sync_png_report_with_real_model(client, files, tiny_predictor):
    resp = client.post(
        "/v1/reports",
        files=upload(("front.png", files["png"]), ("side.png", files["png2"])),
        data={"views": "PA,LL", "indication": "cough"},
        headers=AUTH,
    )
    assert resp.status_code == 200, resp.text
    job = resp.json()
    assert resp.headers["location"] == f"/v1/reports/{job['id']}"
    assert job["status"] == "done" and job["indication"] == "cough"
    assert [i["view"] for i in job["images"]] == ["PA", "LL"]
    report = job["report"]
    assert list(report["labels"]) == list(OBSERVATIONS)
    assert all(0.0 <= v["probability"] <= 1.0 for v in report["labels"].values())
    assert report["triage"]["priority"] in ("routine", "priority", "urgent")
    assert report["model"]["sha256"] == tiny_predictor.info["sha256"]
    assert report["disclaimer"] == DISCLAIMER
    again = client.get(f"/v1/reports/{job['id']}", headers=AUTH)
    assert again.status_code == 200 and again.json()["report"] == report


def test_dicom_study_exports_fhir_and_sr(client, files):
    resp = client.post(
        "/v1/reports", files=upload(("f.dcm", files["dicom"]), ("l.dcm", files["dicom_lat"])), headers=AUTH
    )
    assert resp.status_code == 200, resp.text
    job = resp.json()
    assert job["study_instance_uid"] == "1.2.3.4"
    assert [(i["format"], i["view"]) for i in job["images"]] == [("dicom", "PA"), ("dicom", "LL")]
    fhir = client.get(f"/v1/reports/{job['id']}?format=fhir", headers=AUTH)
    assert fhir.status_code == 200 and fhir.headers["content-type"].startswith("application/fhir+json")
    assert fhir.json()["resourceType"] == "DiagnosticReport"
    sr = client.get(f"/v1/reports/{job['id']}?format=sr", headers=AUTH)
    assert sr.status_code == 200 and sr.headers["content-type"] == "application/dicom"
    ds = pydicom.dcmread(io.BytesIO(sr.content))
    assert ds.Modality == "SR" and ds.StudyInstanceUID == "1.2.3.4"  # headers came back from the DB


@pytest.mark.parametrize("how", ["query", "prefer"])
def test_async_returns_202_and_location(make_client, files, how):
    release = threading.Event()
    client = make_client(FakePredictor(release=release))
    kwargs = {"params": {"mode": "async"}} if how == "query" else {"headers": {**AUTH, "Prefer": "respond-async"}}
    kwargs.setdefault("headers", AUTH)
    resp = client.post("/v1/reports", files=upload(("a.png", files["png"])), **kwargs)
    assert resp.status_code == 202
    job_id = resp.json()["id"]
    assert resp.headers["location"] == f"/v1/reports/{job_id}"
    assert resp.headers.get("preference-applied") == (None if how == "query" else "respond-async")
    assert client.get(resp.headers["location"], headers=AUTH).json()["status"] in ("queued", "running")
    assert_error(client.get(f"/v1/reports/{job_id}?format=fhir", headers=AUTH), 409, "conflict")
    release.set()
    assert wait_done(client, job_id)["report"]["findings"] == "Lungs are clear."


def test_idempotency_key_and_accession(make_client, files):
    fake = FakePredictor()
    client = make_client(fake)
    h = {**AUTH, "Idempotency-Key": "order-1"}
    first = client.post("/v1/reports", files=upload(("a.png", files["png"])), headers=h)
    second = client.post("/v1/reports", files=upload(("a.png", files["png"])), headers=h)
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] == second.json()["id"] and fake.calls == 1
    assert_error(client.post("/v1/reports", files=upload(("b.png", files["png2"])), headers=h), 409)
    # Same accession number -> the same job, even with another file; another accession -> a new job.
    acc1 = client.post(
        "/v1/reports", files=upload(("a.png", files["png"])), data={"accession_number": "A1"}, headers=AUTH
    )
    acc1b = client.post(
        "/v1/reports", files=upload(("b.png", files["png2"])), data={"accession_number": "A1"}, headers=AUTH
    )
    acc2 = client.post(
        "/v1/reports", files=upload(("a.png", files["png"])), data={"accession_number": "A2"}, headers=AUTH
    )
    assert acc1.json()["id"] == acc1b.json()["id"] != acc2.json()["id"]
    assert fake.calls == 3
    actions = [r["action"] for r in client.app.state.service.store.audit_records()]
    assert actions.count("report.create") == 3 and actions.count("report.replay") == 2


def test_async_job_survives_restart(tmp_path, files):
    """App A accepts a job but never finishes it; app B on the same database completes it."""
    db = f"sqlite:///{tmp_path / 'restart.db'}"
    settings = {"db_url": db, "api_keys": (KEY,), "shutdown_timeout_s": 0.2}
    release = threading.Event()
    stuck = FakePredictor(release=release)
    with TestClient(create_app(Settings(**settings), predictor=stuck)) as a:
        assert a.app.state.service.ready.wait(WAIT_S)
        job_id = a.post("/v1/reports?mode=async", files=upload(("a.png", files["png"])), headers=AUTH).json()["id"]
        queued = a.post("/v1/reports?mode=async", files=upload(("b.png", files["png2"])), headers=AUTH).json()["id"]
        deadline = time.monotonic() + WAIT_S
        while not stuck.batch_sizes and time.monotonic() < deadline:
            time.sleep(0.01)
        assert a.get(f"/v1/reports/{job_id}", headers=AUTH).json()["status"] == "running"
    fresh = FakePredictor(priorities=("urgent",))
    with TestClient(create_app(Settings(**settings), predictor=fresh)) as b:
        assert b.app.state.service.ready.wait(WAIT_S)
        for jid in (job_id, queued):
            job = wait_done(b, jid)
            assert job["status"] == "done" and job["report"]["triage"]["priority"] == "urgent"
    release.set()  # app A's stuck thread wakes after shutdown and must not overwrite anything
    time.sleep(0.1)
    with TestClient(create_app(Settings(**settings), predictor=FakePredictor())) as c:
        assert c.get(f"/v1/reports/{job_id}", headers=AUTH).json()["report"]["triage"]["priority"] == "urgent"


def test_dynamic_batching_groups_concurrent_jobs(make_client, files):
    release = threading.Event()
    fake = FakePredictor(release=release)
    client = make_client(fake, max_batch_size=4, max_wait_ms=0)
    ids = [
        client.post("/v1/reports?mode=async", files=upload((f"{i}.png", files["png"])), headers=AUTH).json()["id"]
        for i in range(5)
    ]
    deadline = time.monotonic() + WAIT_S
    while not fake.batch_sizes and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()  # job 0 was alone in the first batch; the four that queued behind it share one call
    for jid in ids:
        assert wait_done(client, jid)["status"] == "done"
    assert fake.batch_sizes == [1, 4]


def test_batch_size_one_disables_batching(make_client, files):
    release = threading.Event()
    fake = FakePredictor(release=release)
    # max_preloaded=0: queued jobs are decoded again from the stored bytes when their batch runs.
    client = make_client(fake, max_batch_size=1, max_wait_ms=50, max_preloaded=0)
    ids = [
        client.post("/v1/reports?mode=async", files=upload((f"{i}.png", files["png"])), headers=AUTH).json()["id"]
        for i in range(3)
    ]
    release.set()
    for jid in ids:
        wait_done(client, jid)
    assert fake.batch_sizes == [1, 1, 1]
    decoded = [im for study in fake.studies for im in study]
    assert all(isinstance(im, LoadedImage) and im.pixels.shape == (96, 96) for im in decoded)


def test_worklist_orders_by_triage(make_client, files):
    client = make_client(FakePredictor(priorities=("routine", "urgent", "priority")))
    ids = [
        client.post("/v1/reports", files=upload(("a.png", files["png"])), headers=AUTH).json()["id"] for _ in range(3)
    ]
    items = client.get("/v1/worklist", headers=AUTH).json()["items"]
    assert [i["id"] for i in items] == [ids[1], ids[2], ids[0]]
    assert [i["priority"] for i in items] == ["urgent", "priority", "routine"]
    assert client.get("/v1/worklist?status=open", headers=AUTH).json()["items"] == []
    assert_error(client.get("/v1/worklist?status=bogus", headers=AUTH), 422, "validation_error")


def test_inference_failure_is_a_json_error_without_internals(make_client, files):
    client = make_client(FakePredictor(fail=RuntimeError("secret Doe^Jane")))
    resp = client.post("/v1/reports", files=upload(("a.png", files["png"])), headers=AUTH)
    err = assert_error(resp, 500, "inference_failed")
    assert "Doe" not in resp.text and err["job_id"]
    assert client.get(f"/v1/reports/{err['job_id']}", headers=AUTH).json()["status"] == "failed"


def test_unexpected_exception_is_a_bare_500(make_client):
    class BadInfo(FakePredictor):
        broken = False

        @property
        def info(self):  # type: ignore[override]
            if self.broken:
                raise KeyError("Doe^Jane")
            return FakePredictor.info

    fake = BadInfo()
    client = make_client(fake)
    fake.broken = True
    resp = client.get("/v1/models", headers=AUTH)
    assert_error(resp, 500, "internal_error")
    assert "Doe" not in resp.text and "KeyError" not in resp.text


# --- input errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "status", "code"),
    [
        ([("a.png", "empty")], 422, "invalid_image"),
        ([("x.dcm", "random")], 415, "unsupported_media_type"),
        ([("x.png", "random")], 415, "unsupported_media_type"),
        ([("t.png", "truncated_png")], 422, "invalid_image"),
        ([("np.dcm", "dicom_no_pixels")], 422, "unsupported_dicom"),
        ([("ct.dcm", "ct")], 422, "unsupported_dicom"),
        ([("big.png", "huge_png")], 413, "image_too_large"),
        ([(f"{i}.png", "png") for i in range(5)], 422, "invalid_study"),
        ([("a.dcm", "dicom"), ("c.dcm", "dicom_other_study")], 422, "invalid_study"),
        ([("a.png", "png"), ("ok.png", "png"), ("bad.dcm", "random")], 415, "unsupported_media_type"),
    ],
)
def test_bad_uploads_are_4xx_json(client, files, names, status, code):
    resp = client.post("/v1/reports", files=upload(*[(n, files[k]) for n, k in names]), headers=AUTH)
    assert_error(resp, status, code)


def test_request_without_files(client, files):
    assert_error(client.post("/v1/reports", headers=AUTH), 422, "invalid_study")
    assert_error(client.post("/v1/reports", data={"indication": "x"}, headers=AUTH), 422, "invalid_study")
    assert_error(client.post("/v1/reports", data={"files": "text"}, headers=AUTH), 422)
    assert_error(
        client.post("/v1/reports", files=upload(("a.png", files["png"])), data={"views": "PA,LL"}, headers=AUTH), 422
    )
    assert_error(
        client.post("/v1/reports", files=upload(("a.png", files["png"])), data={"views": "P/A"}, headers=AUTH),
        422,
        "invalid_request",
    )
    assert_error(
        client.post(
            "/v1/reports", files=upload(("a.png", files["png"])), data={"study_instance_uid": "x;y"}, headers=AUTH
        ),
        422,
    )
    assert_error(client.post("/v1/reports?mode=later", files=upload(("a.png", files["png"])), headers=AUTH), 422)


def test_upload_limit_from_content_length(make_client, files):
    client = make_client(FakePredictor(), max_upload_bytes=10_000)
    big = files["png"] * 3
    assert len(big) > 10_000
    assert_error(client.post("/v1/reports", files=upload(("a.png", big)), headers=AUTH), 413, "payload_too_large")


def test_upload_limit_counts_streamed_bytes():
    """A body without Content-Length (chunked) is cut off once it passes the limit."""
    inner = FastAPI()

    @inner.post("/echo")
    async def echo(request: Request):
        return {"n": len(await request.body())}

    install_error_handlers(inner)
    app = RequestContextMiddleware(inner, max_body_bytes=1000)
    chunks = [b"x" * 400] * 5
    sent: list[dict] = []

    async def run():
        scope = {"type": "http", "method": "POST", "path": "/echo", "headers": [], "query_string": b""}
        scope.update({"http_version": "1.1", "scheme": "http", "server": ("t", 80), "root_path": ""})
        it = iter(chunks)

        async def receive():
            chunk = next(it, None)
            return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)

    asyncio.run(run())
    assert sent[0]["status"] == 413, sent
    assert json.loads(sent[1]["body"])["error"]["code"] == "payload_too_large"


# --- auth, ids, routing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong-key-0123456789"}, {"X-API-Key": KEY + "x"}])
def test_api_key_required(client, files, headers):
    err = assert_error(client.post("/v1/reports", files=upload(("a.png", files["png"])), headers=headers), 401)
    assert err["code"] == "unauthorized"
    assert_error(client.get("/v1/worklist", headers=headers), 401)
    assert_error(client.get("/v1/reports/abc", headers=headers), 401)


def test_unknown_job_route_and_method(client):
    assert_error(client.get("/v1/reports/0123456789abcdef", headers=AUTH), 404, "not_found")
    assert_error(client.get("/v1/nothing", headers=AUTH), 404, "not_found")
    assert_error(client.delete("/v1/reports/abc", headers=AUTH), 405, "method_not_allowed")


def test_request_id_echoed_validated_or_generated(client):
    assert client.get("/livez", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    unsafe = client.get("/livez", headers={"X-Request-ID": "bad id\twith spaces" + "x" * 100})
    assert unsafe.headers["x-request-id"] != "bad id" and len(unsafe.headers["x-request-id"]) == 32
    err = assert_error(client.get("/v1/reports/nope", headers={**AUTH, "X-Request-ID": "trace-9"}), 404)
    assert err["request_id"] == "trace-9"
    assert client.get("/livez").headers["cache-control"] == "no-store"


def test_no_phi_in_logs(client, files, caplog):
    caplog.set_level(logging.DEBUG)
    resp = client.post(
        "/v1/reports",
        files=upload(("Doe_Jane.dcm", files["dicom_phi"])),
        data={"accession_number": "ACC-777", "indication": "Jane fell off a horse"},
        headers={**AUTH, "X-Request-ID": "phi-test"},
    )
    assert resp.status_code == 200, resp.text
    job = resp.json()
    client.get(f"/v1/reports/{job['id']}", headers=AUTH)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "phi-test" in text and job["id"] in text  # the request was logged ...
    secrets = ["Doe", "Jane", "PID-98765", "ACC-777", "19700101", KEY, job["study_instance_uid"]]
    if job["report"]["findings"].strip():
        secrets.append(job["report"]["findings"])
    for secret in secrets:  # ... but nothing that identifies the patient, the key or the report
        assert secret not in text, secret


def test_auth_is_required_to_start(tmp_path, capsys, monkeypatch):
    with pytest.raises(ConfigError, match="no API keys"):
        create_app(Settings(db_url=str(tmp_path / "j.db")))
    with pytest.raises(ConfigError, match="explicit origins"):
        create_app(Settings(db_url=str(tmp_path / "j.db"), api_keys=(KEY,), cors_origins=("*",)))
    monkeypatch.delenv("REPORTGEN_API_KEYS", raising=False)
    monkeypatch.delenv("REPORTGEN_API_KEYS_FILE", raising=False)
    assert serve_main(["--db", f"sqlite:///{tmp_path / 'j.db'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no API keys")


def test_settings_from_env(tmp_path):
    keyfile = tmp_path / "keys"
    keyfile.write_text("# comment\nfile-key-0123456789abcdef\n")
    env = {
        "REPORTGEN_API_KEYS": f"{KEY}, env-key-0123456789abcdef",
        "REPORTGEN_API_KEYS_FILE": str(keyfile),
        "REPORTGEN_MAX_BATCH_SIZE": "4",
        "REPORTGEN_CORS_ORIGINS": "https://pacs.example",
    }
    s = Settings.from_env(env, max_wait_ms=3.0)
    assert s.api_keys == (KEY, "env-key-0123456789abcdef", "file-key-0123456789abcdef")
    assert s.max_batch_size == 4 and s.max_wait_ms == 3.0 and s.cors_origins == ("https://pacs.example",)
    with pytest.raises(ConfigError, match="too short"):
        Settings.from_env({"REPORTGEN_API_KEYS": "short"})
    with pytest.raises(ConfigError, match="REPORTGEN_MAX_BATCH_SIZE"):
        Settings.from_env({"REPORTGEN_MAX_BATCH_SIZE": "many"})


def test_cors_off_by_default_and_explicit_when_on(make_client, tmp_path):
    pre = {"Origin": "https://pacs.example", "Access-Control-Request-Method": "POST"}
    off = make_client(FakePredictor())
    assert "access-control-allow-origin" not in off.options("/v1/reports", headers=pre).headers
    on = make_client(
        FakePredictor(), db_url=f"sqlite:///{tmp_path / 'cors.db'}", cors_origins=("https://pacs.example",)
    )
    assert on.options("/v1/reports", headers=pre).headers["access-control-allow-origin"] == "https://pacs.example"
    evil = {**pre, "Origin": "https://evil.example"}
    assert "access-control-allow-origin" not in on.options("/v1/reports", headers=evil).headers


def test_insecure_no_auth_and_audit_file(make_client, files, tmp_path):
    audit = tmp_path / "audit.jsonl"
    client = make_client(FakePredictor(), api_keys=(), insecure_no_auth=True, audit_log_path=str(audit))
    job = client.post("/v1/reports", files=upload(("a.png", files["png"])), data={"accession_number": "A9"}).json()
    client.get(f"/v1/reports/{job['id']}")
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [r["action"] for r in records] == ["report.create", "report.read"]
    assert all(r["caller"] == "anonymous" and r["job_id"] == job["id"] for r in records)
    assert "A9" not in audit.read_text()


def test_review_page_is_served(client):
    page = Path(__file__).parents[2] / "api" / "static" / "index.html"
    resp = client.get("/")
    if page.is_file():
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    else:
        assert_error(resp, 404)


def test_serve_maps_flags_to_settings(monkeypatch, tmp_path):
    import reportgen.api.logging_utils as logging_utils
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    monkeypatch.setattr(logging_utils, "configure_logging", lambda level: None)  # keep pytest's log capture
    monkeypatch.setenv("REPORTGEN_API_KEYS", KEY)
    argv = ["--port", "0", "--db", f"sqlite:///{tmp_path / 's.db'}", "--max-batch-size", "3", "--max-wait-ms", "7"]
    assert serve_main([*argv, "--cors-origin", "https://a.example", "--torch-threads", "1"]) == 0
    s = seen["app"].state.service.settings
    assert (s.port, s.max_batch_size, s.max_wait_ms, s.torch_threads) == (0, 3, 7.0, 1)
    assert s.api_keys == (KEY,) and s.cors_origins == ("https://a.example",) and not s.insecure_no_auth
    assert seen["host"] == "127.0.0.1" and seen["access_log"] is False
