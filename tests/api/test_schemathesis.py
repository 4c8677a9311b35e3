"""Property-based fuzzing of every documented operation: whatever the input, never a 5xx.

Schemathesis generates requests from /openapi.json (random multipart bodies, query values, headers) and
calls the ASGI app in-process. Bounded to a few dozen examples per operation so it stays in the default
suite (well under a minute). The predictor is a fake: random bytes never reach the model anyway, and the
input handling in front of it is what this test is about.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from reportgen.api.app import Settings, create_app  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from reportgen.constants import DISCLAIMER, OBSERVATIONS  # noqa: E402
from reportgen.inference.predictor import DraftReport, LabelPrediction  # noqa: E402
from reportgen.inference.triage import Triage  # noqa: E402

KEY = "fuzz-key-0123456789abcdef"
pytestmark = pytest.mark.timeout(180)  # bounded: a few dozen examples per operation


class _Predictor:
    info = {"name": "fake", "version": "0", "sha256": "0" * 64, "labels": list(OBSERVATIONS), "intended_use": "tests"}

    def warmup(self) -> None:
        pass

    def generate_batch(self, studies, views=None):
        labels = {o: LabelPrediction(0.1, "negative") for o in OBSERVATIONS}
        model = {"name": "fake", "version": "0", "sha256": "0" * 64}
        return [DraftReport("clear", "normal", labels, Triage("routine", []), model, DISCLAIMER) for _ in studies]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    db = tmp_path_factory.mktemp("fuzz") / "jobs.db"
    app = create_app(
        Settings(db_url=str(db), api_keys=(KEY,), max_wait_ms=0, sync_timeout_s=30, shutdown_timeout_s=0.5),
        predictor=_Predictor(),
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    response = case.call(headers={"X-API-Key": KEY})
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400:
        body = response.json()
        assert set(body["error"]) >= {"code", "message", "request_id"}


@schema.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_without_key(case):
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error])
