"""Heat-map endpoints: PNG overlays, the SQLite cache, the JSON listing with laterality flags, errors, locking."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from reportgen.api.heatmaps import GuardedPredictor, ModelAccess, resolve_observation

from reportgen.constants import DISCLAIMER, OBSERVATIONS
from reportgen.errors import ReportgenError
from reportgen.inference.heatmap import Heatmap, HeatmapExplainer
from reportgen.inference.predictor import DraftReport, LabelPrediction
from reportgen.inference.triage import Triage
from reportgen.testing import make_png

KEY = "heatmap-test-key-0123456789"
AUTH = {"X-API-Key": KEY}
WAIT_S = 60.0  # upper bound for background work on shared cores; never a timing assertion


@pytest.fixture(scope="session")
def api_key() -> str:
    return KEY


@pytest.fixture
def client(make_client, tiny_predictor) -> TestClient:
    return make_client(tiny_predictor, max_wait_ms=0)


@pytest.fixture
def explain_calls(monkeypatch) -> list[list[str]]:
    """Counts real explainer runs (observations asked for, per call)."""
    calls: list[list[str]] = []
    original = HeatmapExplainer.explain

    def counting(self, image, observations=None, view=None):
        calls.append(list(observations or []))
        return original(self, image, observations, view)

    monkeypatch.setattr(HeatmapExplainer, "explain", counting)
    return calls


def _png(tmp_path, name: str, size: tuple[int, int], seed: int = 0) -> bytes:
    return make_png(tmp_path / name, size=size, seed=seed, blob=(size[0] // 3, size[1] // 2, 12)).read_bytes()


def _submit(client: TestClient, *images: bytes, views: str | None = None) -> dict:
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    resp = client.post("/v1/reports", files=files, data={"views": views} if views else None, headers=AUTH)
    assert resp.status_code == 200 and resp.json()["status"] == "done", resp.text
    return resp.json()


def assert_error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert body["error"]["request_id"] == resp.headers["x-request-id"] and body["error"]["message"]
    return body["error"]


def _set_report(client: TestClient, job_id: str, findings: str, statuses: dict[str, str]) -> None:
    """Replace a finished job's draft (the text decides what the laterality check reads)."""
    labels = {o: LabelPrediction(0.9 if o in statuses else 0.1, statuses.get(o, "negative")) for o in OBSERVATIONS}
    draft = DraftReport(findings, "See findings.", labels, Triage("priority", ["test"]), {"sha256": "x"}, DISCLAIMER)
    client.app.state.service.store.complete(job_id, draft.to_dict())


# --- PNG endpoint ---------------------------------------------------------------------------------------------


def test_png_overlay_at_original_size_and_cached(client, tmp_path, explain_calls):
    job = _submit(client, _png(tmp_path, "a.png", (120, 96)))
    url = f"/v1/reports/{job['id']}/heatmaps/Pleural%20Effusion.png"
    first = client.get(url, headers=AUTH)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/png" and first.headers["cache-control"] == "no-store"
    img = Image.open(io.BytesIO(first.content))
    assert img.format == "PNG" and img.size == (120, 96) and img.mode == "RGB"
    assert np.asarray(img).std() > 0  # an actual picture, not a blank
    assert explain_calls == [["Pleural Effusion"]]

    # Cached: the underscore and lower-case spellings hit the same row, and nothing is recomputed.
    for spelling in ("Pleural%20Effusion", "Pleural_Effusion", "pleural_effusion"):
        again = client.get(f"/v1/reports/{job['id']}/heatmaps/{spelling}.png", headers=AUTH)
        assert again.status_code == 200 and again.content == first.content
    assert len(explain_calls) == 1

    other = client.get(f"/v1/reports/{job['id']}/heatmaps/Edema.png", headers=AUTH)
    assert other.status_code == 200 and other.content != first.content
    assert explain_calls == [["Pleural Effusion"], ["Edema"]]
    actions = [r["action"] for r in client.app.state.service.store.audit_records(job["id"])]
    assert actions.count("heatmap.read") == 5


def test_png_explains_the_first_frontal_image(client, tmp_path):
    lateral, frontal = _png(tmp_path, "lat.png", (80, 100)), _png(tmp_path, "pa.png", (128, 112), seed=1)
    job = _submit(client, lateral, frontal, views="LL,PA")
    resp = client.get(f"/v1/reports/{job['id']}/heatmaps/Cardiomegaly.png", headers=AUTH)
    assert resp.status_code == 200
    assert Image.open(io.BytesIO(resp.content)).size == (128, 112)  # the PA image's size, not the lateral's


def test_cache_survives_a_restart(make_client, tiny_predictor, tmp_path, explain_calls):
    first_app = make_client(tiny_predictor, max_wait_ms=0)
    job = _submit(first_app, _png(tmp_path, "a.png", (96, 96)))
    png = first_app.get(f"/v1/reports/{job['id']}/heatmaps/Edema.png", headers=AUTH).content
    first_app.__exit__(None, None, None)
    second_app = make_client(tiny_predictor, max_wait_ms=0)  # same database file
    assert second_app.get(f"/v1/reports/{job['id']}/heatmaps/Edema.png", headers=AUTH).content == png
    assert len(explain_calls) == 1


# --- JSON listing ---------------------------------------------------------------------------------------------


def test_listing_covers_positive_and_uncertain_and_fills_the_cache(client, tmp_path, explain_calls):
    job = _submit(client, _png(tmp_path, "a.png", (100, 90)))
    _set_report(client, job["id"], "Lungs are clear.", {"Edema": "positive", "Atelectasis": "uncertain"})
    resp = client.get(f"/v1/reports/{job['id']}/heatmaps", headers=AUTH)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["job_id"] == job["id"] and body["laterality_flags"] == []
    assert list(body["heatmaps"]) == ["Edema", "Atelectasis"]  # OBSERVATIONS order, negatives left out
    edema = body["heatmaps"]["Edema"]
    assert edema["url"] == f"/v1/reports/{job['id']}/heatmaps/Edema.png"
    assert edema["side"] in ("left", "right", "midline") and 0.0 <= edema["confidence"] <= 1.0
    assert 0 <= edema["peak_xy"][0] < 100 and 0 <= edema["peak_xy"][1] < 90 and edema["image_index"] == 0
    assert explain_calls == [["Atelectasis", "Edema"]] or explain_calls == [["Edema", "Atelectasis"]]

    png = client.get(edema["url"], headers=AUTH)  # served from the cache the listing filled
    assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size == (100, 90)
    assert client.get(f"/v1/reports/{job['id']}/heatmaps", headers=AUTH).json() == body
    assert len(explain_calls) == 1


def test_listing_flags_a_sentence_on_the_wrong_side(client, tmp_path, monkeypatch):
    job = _submit(client, _png(tmp_path, "a.png", (100, 80)))
    _set_report(
        client, job["id"], "Small left pleural effusion. Heart size is normal.", {"Pleural Effusion": "positive"}
    )

    def right_sided(self, image, observations=None, view=None):
        # A confident map on the image's left half = the patient's right (standard PA display).
        full = np.zeros(image.pixels.shape, dtype=np.float32)
        full[:, :20] = 1.0
        return {
            o: Heatmap(o, full[::4, ::4], full, (10.0, 40.0), "right", 0.95, 0.9) for o in observations or OBSERVATIONS
        }

    monkeypatch.setattr(HeatmapExplainer, "explain", right_sided)
    body = client.get(f"/v1/reports/{job['id']}/heatmaps", headers=AUTH).json()
    assert body["heatmaps"]["Pleural Effusion"]["side"] == "right"
    (flag,) = body["laterality_flags"]
    assert flag["observation"] == "Pleural Effusion" and (flag["text_side"], flag["map_side"]) == ("left", "right")
    assert flag["sentence"] == "Small left pleural effusion." and "right" in flag["reason"]


def test_listing_with_nothing_positive_is_empty(client, tmp_path, explain_calls):
    job = _submit(client, _png(tmp_path, "a.png", (96, 96)))
    _set_report(client, job["id"], "Left lung is clear.", {})
    body = client.get(f"/v1/reports/{job['id']}/heatmaps", headers=AUTH).json()
    assert body["heatmaps"] == {} and body["laterality_flags"] == [] and explain_calls == []


# --- errors and auth ------------------------------------------------------------------------------------------


def test_errors_unknown_job_unknown_observation_and_auth(client, tmp_path):
    assert_error(client.get("/v1/reports/nope/heatmaps/Edema.png", headers=AUTH), 404, "not_found")
    assert_error(client.get("/v1/reports/nope/heatmaps", headers=AUTH), 404, "not_found")
    job = _submit(client, _png(tmp_path, "a.png", (96, 96)))
    err = assert_error(client.get(f"/v1/reports/{job['id']}/heatmaps/Cancer.png", headers=AUTH), 404, "not_found")
    assert "Cancer" in err["message"] and all(o.replace(" ", "_") in err["message"] for o in OBSERVATIONS)
    for url in (f"/v1/reports/{job['id']}/heatmaps/Edema.png", f"/v1/reports/{job['id']}/heatmaps"):
        assert_error(client.get(url), 401, "unauthorized")
        assert_error(client.get(url, headers={"X-API-Key": "wrong-key-0123456789"}), 401, "unauthorized")
    with pytest.raises(ReportgenError):
        resolve_observation("Pleural  Effusion")


class _BlockingPredictor:
    """Enough of a predictor to leave a job open until `release` is set."""

    info = {"name": "fake", "version": "0", "sha256": "0" * 64, "labels": list(OBSERVATIONS)}

    def __init__(self) -> None:
        self.release = threading.Event()

    def warmup(self) -> None:
        pass

    def generate_batch(self, studies, views=None):
        self.release.wait(WAIT_S)
        labels = {o: LabelPrediction(0.1, "negative") for o in OBSERVATIONS}
        return [DraftReport("f", "i", labels, Triage("routine", []), {"sha256": "0"}, DISCLAIMER) for _ in studies]


def test_job_not_done_is_409(make_client, tmp_path):
    predictor = _BlockingPredictor()
    client = make_client(predictor, max_wait_ms=0)
    files = [("files", ("a.png", _png(tmp_path, "a.png", (96, 96)), "image/png"))]
    job = client.post("/v1/reports?mode=async", files=files, headers=AUTH).json()
    try:
        for url in (f"/v1/reports/{job['id']}/heatmaps/Edema.png", f"/v1/reports/{job['id']}/heatmaps"):
            err = assert_error(client.get(url, headers=AUTH), 409, "conflict")
            assert "once it is done" in err["message"]
    finally:
        predictor.release.set()


# --- serialisation with inference ------------------------------------------------------------------------------


def test_model_access_writer_excludes_readers():
    access = ModelAccess()
    reader_in, reader_out, writer_in, late_reader_in = (threading.Event() for _ in range(4))

    def reader(entered: threading.Event, leave: threading.Event | None) -> None:
        with access.shared():
            entered.set()
            if leave is not None:
                leave.wait(WAIT_S)

    def writer() -> None:
        with access.exclusive():
            writer_in.set()

    threading.Thread(target=reader, args=(reader_in, reader_out), daemon=True).start()
    assert reader_in.wait(WAIT_S)
    threading.Thread(target=writer, daemon=True).start()
    time.sleep(0.2)  # give a broken lock the chance to let the writer in
    assert not writer_in.is_set()
    reader_out.set()
    assert writer_in.wait(WAIT_S)
    threading.Thread(target=reader, args=(late_reader_in, None), daemon=True).start()
    assert late_reader_in.wait(WAIT_S)


def test_inference_waits_while_a_heatmap_is_computed(client, tmp_path, monkeypatch):
    """The CAM's hooks sit on the shared backbone: a batch must not run its forward pass meanwhile."""
    first = _submit(client, _png(tmp_path, "a.png", (96, 96)))
    service = client.app.state.service
    assert isinstance(service.runner._predictor_ref(), GuardedPredictor)
    inside, leave = threading.Event(), threading.Event()
    original = HeatmapExplainer.explain

    def slow_explain(self, image, observations=None, view=None):
        inside.set()
        leave.wait(WAIT_S)
        return original(self, image, observations, view)

    monkeypatch.setattr(HeatmapExplainer, "explain", slow_explain)
    worker = threading.Thread(target=service.heatmaps.overlay, args=(first["id"], "Edema"), daemon=True)
    worker.start()
    assert inside.wait(WAIT_S)
    files = [("files", ("b.png", _png(tmp_path, "b.png", (96, 96), seed=2), "image/png"))]
    second = client.post("/v1/reports?mode=async", files=files, headers=AUTH).json()
    time.sleep(0.5)  # long enough for an unguarded batch of one tiny study to finish
    assert client.get(f"/v1/reports/{second['id']}", headers=AUTH).json()["status"] != "done"
    leave.set()
    worker.join(WAIT_S)
    deadline = time.monotonic() + WAIT_S
    while client.get(f"/v1/reports/{second['id']}", headers=AUTH).json()["status"] != "done":
        assert time.monotonic() < deadline, "the queued job never ran after the heat map finished"
        time.sleep(0.05)
