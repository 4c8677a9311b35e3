"""The review page in a real headless Chromium against a real uvicorn server.

Uses Debian's chromium + chromedriver (`.ci/install_browser.sh`), driven by selenium with an explicit
driver path so selenium-manager never downloads anything. Skipped only when those are not installed.
The model is the lead's tiny random checkpoint (random text, but the real API path end to end).
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pydicom
import pytest

from reportgen.constants import DISCLAIMER, OBSERVATIONS
from reportgen.testing import make_dicom, make_png

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
API_KEY = "review-page-test-key"
WAIT_S = 60  # generous: 2 shared cores, chromium start-up and a CPU forward pass

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install selenium")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip("chromium/chromedriver not installed: run .ci/install_browser.sh", allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _predictor(tmp_dir: Path):
    """The lead's tiny random checkpoint: a real model, so the page shows what the API really returns."""
    import torch

    from reportgen.inference.predictor import load_checkpoint
    from reportgen.training.tiny import make_tiny_checkpoint

    torch.set_num_threads(1)
    return load_checkpoint(make_tiny_checkpoint(tmp_dir / "ckpt"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn
    from reportgen.api.app import Settings, create_app

    tmp = tmp_path_factory.mktemp("review_server")
    settings = Settings(db_url=str(tmp / "jobs.db"), api_keys=(API_KEY,), sync_timeout_s=WAIT_S)
    app = create_app(settings, predictor=_predictor(tmp))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, name="uvicorn-test", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:  # ready = model loaded and warmed up
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    else:
        pytest.fail("the test server did not become ready")
    yield base
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium_profile")
    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1500",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(flag)
    opts.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors, CSP violations
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.downloads = downloads  # where the page's downloads land
    try:
        yield driver
    finally:
        driver.quit()


def _wait_for_file(directory: Path, name: str) -> Path:
    path = directory / name
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0 and not list(directory.glob("*.crdownload")):
            return path
        time.sleep(0.1)
    raise AssertionError(f"download {name} did not appear")


def _open_page(browser, server) -> WebDriverWait:
    browser.get(f"{server}/")
    wait = WebDriverWait(browser, WAIT_S)
    wait.until(ec.element_to_be_clickable((By.ID, "submit")))
    key = browser.find_element(By.ID, "api-key")
    key.clear()
    key.send_keys(API_KEY)
    return wait


def test_upload_png_shows_editable_draft(browser, server, tmp_path):
    wait = _open_page(browser, server)
    banner = browser.find_element(By.ID, "banner")
    assert banner.is_displayed() and "requires review by a qualified radiologist" in banner.text

    png = make_png(tmp_path / "frontal.png", size=(256, 256), blob=(90, 110, 20))
    browser.find_element(By.ID, "file-input").send_keys(str(png))
    assert browser.find_element(By.CSS_SELECTOR, "#images img").get_attribute("src").startswith("blob:")
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda d: d.find_element(By.ID, "job-id").get_attribute("value"))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#labels tbody tr")) == len(OBSERVATIONS))
    assert browser.find_element(By.ID, "error").text == ""

    job_id = browser.find_element(By.ID, "job-id").get_attribute("value")
    job = httpx.get(f"{server}/v1/reports/{job_id}", headers={"X-API-Key": API_KEY}).json()
    report = job["report"]
    findings = browser.find_element(By.ID, "findings")
    assert findings.get_attribute("value") == report["findings"]
    assert browser.find_element(By.ID, "impression").get_attribute("value") == report["impression"]

    rows = browser.find_elements(By.CSS_SELECTOR, "#labels tbody tr")
    assert [r.find_element(By.TAG_NAME, "th").text for r in rows] == list(report["labels"])
    first = report["labels"][OBSERVATIONS[0]]
    assert f"{100 * first['probability']:.1f}%" in rows[0].text and first["status"] in rows[0].text
    triage = browser.find_element(By.ID, "triage").text.lower()
    assert report["triage"]["priority"] in triage
    assert all(reason.lower() in triage for reason in report["triage"]["reasons"])
    assert banner.is_displayed()  # sticky: still there with the draft

    severe = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe  # no script errors, CSP violations or failed requests

    shot = tmp_path / "review_page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_dicom_study_edited_text_fhir_and_sr_downloads(browser, server, tmp_path):
    wait = _open_page(browser, server)
    dcm = make_dicom(tmp_path / "frontal.dcm", patient_id="PAGE42", accession="ACC42", view="PA")
    png = make_png(tmp_path / "lateral.png", size=(200, 240), seed=3)
    browser.find_element(By.ID, "file-input").send_keys(f"{dcm}\n{png}")
    figures = browser.find_elements(By.CSS_SELECTOR, "#images figure")
    assert len(figures) == 2
    assert "preview not available" in figures[0].text and figures[1].find_element(By.TAG_NAME, "img")
    browser.find_element(By.ID, "accession-number").send_keys("ACC42")
    browser.find_element(By.ID, "submit").click()
    wait.until(ec.element_to_be_clickable((By.ID, "download-fhir")))
    job_id = browser.find_element(By.ID, "job-id").get_attribute("value")

    for box, text in (("findings", "Edited findings: lungs clear, café."), ("impression", "Edited impression.")):
        element = browser.find_element(By.ID, box)
        element.clear()
        element.send_keys(text)

    browser.find_element(By.ID, "download-text").click()
    text = _wait_for_file(browser.downloads, f"report-{job_id}.txt").read_text(encoding="utf-8")
    assert "FINDINGS:\nEdited findings: lungs clear, café.\n" in text
    assert "IMPRESSION:\nEdited impression.\n" in text and DISCLAIMER in text

    browser.find_element(By.ID, "download-fhir").click()
    resource = json.loads(_wait_for_file(browser.downloads, f"report-{job_id}.fhir.json").read_text("utf-8"))
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    DiagnosticReport.model_validate(resource)
    assert resource["status"] == "preliminary"
    assert resource["conclusion"] == "Edited impression."
    assert base64.b64decode(resource["presentedForm"][0]["data"]).decode("utf-8") == text
    assert "Edited findings" in resource["text"]["div"]
    assert any(e.get("valueBoolean") is True for e in resource["extension"] if e["url"].endswith("reviewer-edited"))
    assert resource["identifier"][0]["value"] == "ACC42"  # typed into the page's accession field

    browser.find_element(By.ID, "download-sr").click()
    sr = pydicom.dcmread(_wait_for_file(browser.downloads, f"report-{job_id}-sr.dcm"))
    assert (sr.Modality, sr.PatientID, sr.AccessionNumber) == ("SR", "PAGE42", "ACC42")
    assert (sr.CompletionFlag, sr.VerificationFlag, sr.PreliminaryFlag) == ("PARTIAL", "UNVERIFIED", "PRELIMINARY")


def test_open_job_by_id_and_bad_key_error(browser, server, tmp_path):
    png = make_png(tmp_path / "x.png")
    with png.open("rb") as fh:
        job = httpx.post(
            f"{server}/v1/reports",
            headers={"X-API-Key": API_KEY},
            files={"files": ("x.png", fh, "image/png")},
            timeout=WAIT_S,
        ).json()

    wait = _open_page(browser, server)
    browser.refresh()  # the key survives a reload (sessionStorage), so the user types it once per tab
    wait.until(lambda d: d.find_element(By.ID, "api-key").get_attribute("value") == API_KEY)
    browser.find_element(By.ID, "job-id").send_keys(job["id"])
    browser.find_element(By.ID, "open-job").click()
    # Wait for the labels table (the tiny model's findings may be empty, so the textarea cannot signal loading).
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#labels tbody tr")) == len(OBSERVATIONS))
    wait.until(lambda d: d.find_element(By.ID, "findings").get_attribute("value") == job["report"]["findings"])

    key = browser.find_element(By.ID, "api-key")
    key.clear()
    key.send_keys("wrong-key")
    browser.find_element(By.ID, "open-job").click()
    wait.until(lambda d: d.find_element(By.ID, "error").text)
    assert "unauthorized" in browser.find_element(By.ID, "error").text.lower()


def test_no_third_party_requests_in_page():
    page = (Path(__file__).parents[2] / "api" / "static" / "index.html").read_text(encoding="utf-8")
    script = (Path(__file__).parents[2] / "api" / "static" / "app.js").read_text(encoding="utf-8")
    assert "http://" not in page.replace('xmlns="http://www.w3.org/1999/xhtml"', "")
    assert "https://" not in page and "//cdn" not in script
    for element_id in (
        "api-key",
        "file-input",
        "submit",
        "findings",
        "impression",
        "labels",
        "triage",
        "banner",
        "download-text",
        "download-fhir",
        "download-sr",
        "job-id",
        "open-job",
        "error",
    ):
        assert f'id="{element_id}"' in page, element_id


def test_label_row_click_shows_heatmap_and_laterality_check(browser, server, tmp_path):
    browser.get_log("browser")  # drop entries left by earlier tests (e.g. their deliberate 401s)
    wait = _open_page(browser, server)
    png = make_png(tmp_path / "heat.png", size=(240, 200), blob=(70, 100, 25))
    browser.find_element(By.ID, "file-input").send_keys(str(png))
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#labels tbody tr")) == len(OBSERVATIONS))
    # The laterality check runs once the draft is shown and always says something (flags or "no contradiction").
    wait.until(lambda d: "computing" not in d.find_element(By.ID, "laterality-flags").text)
    lateral = browser.find_element(By.ID, "laterality-flags").text
    assert lateral.startswith("Laterality check:") and "not available" not in lateral

    target = "Pleural Effusion"
    row = browser.find_element(By.CSS_SELECTOR, f'#labels tbody tr[data-observation="{target}"]')
    row.click()
    wait.until(lambda d: d.find_element(By.ID, "heatmap-title").text == f"Heat map: {target}")
    img = browser.find_element(By.ID, "heatmap-img")
    wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0)
    assert img.get_attribute("src").startswith("blob:") and img.is_displayed()
    size = browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", img)
    assert size == [240, 200]  # the overlay is at the uploaded image's own size
    assert "selected" in row.get_attribute("class")

    from io import BytesIO

    from PIL import Image

    # The page shows the same overlay the API serves for that observation (compare a few pixels).
    job_id = browser.find_element(By.ID, "job-id").get_attribute("value")
    direct = httpx.get(f"{server}/v1/reports/{job_id}/heatmaps/Pleural_Effusion.png", headers={"X-API-Key": API_KEY})
    assert direct.status_code == 200 and direct.headers["content-type"] == "image/png"
    points = [(0, 0), (70, 100), (120, 100), (239, 199)]
    shown = browser.execute_script(
        "const img = arguments[0], c = document.createElement('canvas');"
        "c.width = img.naturalWidth; c.height = img.naturalHeight;"
        "const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);"
        "return arguments[1].map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)));",
        img,
        points,
    )
    served = Image.open(BytesIO(direct.content)).convert("RGB")
    assert shown == [list(served.getpixel(p)) for p in points]

    severe = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe
    shot = tmp_path / "review_page_heatmap.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_page_has_heatmap_elements():
    page = (Path(__file__).parents[2] / "api" / "static" / "index.html").read_text(encoding="utf-8")
    for element_id in ("heatmap-img", "heatmap-title", "laterality-flags"):
        assert f'id="{element_id}"' in page, element_id
    assert "img-src 'self' blob:" in page  # the overlay is shown from a blob: URL fetched with the API key


def test_worklist_lists_jobs_by_triage_and_opens_one(browser, server, tmp_path):
    png = make_png(tmp_path / "w.png", seed=5)
    with png.open("rb") as fh:
        job = httpx.post(
            f"{server}/v1/reports",
            headers={"X-API-Key": API_KEY},
            files={"files": ("w.png", fh, "image/png")},
            timeout=WAIT_S,
        ).json()
    expected = httpx.get(f"{server}/v1/worklist?status=all&limit=50", headers={"X-API-Key": API_KEY}).json()["items"]

    wait = _open_page(browser, server)
    browser.find_element(By.ID, "worklist-refresh").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#worklist .worklist-item")) == len(expected))
    items = browser.find_elements(By.CSS_SELECTOR, "#worklist .worklist-item")
    assert [i.get_attribute("data-job") for i in items] == [e["id"] for e in expected]  # the API's triage order
    badges = [i.find_element(By.CSS_SELECTOR, ".badge").text.lower() for i in items]
    assert badges == [e["priority"] or "pending" for e in expected]

    browser.find_element(By.CSS_SELECTOR, f'#worklist .worklist-item[data-job="{job["id"]}"]').click()
    wait.until(lambda d: d.find_element(By.ID, "job-id").get_attribute("value") == job["id"])
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#labels tbody tr")) == len(OBSERVATIONS))
    assert job["report"]["triage"]["priority"] in browser.find_element(By.ID, "triage").text.lower()
    assert browser.find_element(By.ID, "error").text == ""
