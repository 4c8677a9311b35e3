"""Shared API test fixtures: one real tiny predictor and one factory of started TestClients."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from reportgen.api.app import Settings, create_app

WAIT_S = 60.0  # generous upper bound for background work on 2 shared cores; never a timing assertion


@pytest.fixture(scope="session")
def api_key() -> str:
    """The key every client is configured with; test modules override it to match their own constant."""
    return "test-key-0123456789abcdef"


@pytest.fixture(scope="session")
def tiny_predictor(tiny_checkpoint):
    """A REAL predictor: the tiny random checkpoint made by the training code, loaded by load_checkpoint."""
    import torch

    from reportgen.inference.predictor import load_checkpoint

    torch.set_num_threads(1)
    return load_checkpoint(tiny_checkpoint)


@pytest.fixture
def make_client(tmp_path, api_key) -> Iterator[Callable[..., TestClient]]:
    """Factory: ``make_client(predictor, wait_ready=True, **settings)`` -> a started TestClient on this test's DB."""
    stack: list[TestClient] = []

    def factory(predictor, *, wait_ready: bool = True, **overrides) -> TestClient:
        kw = {"db_url": f"sqlite:///{tmp_path / 'jobs.db'}", "api_keys": (api_key,), "shutdown_timeout_s": 0.5}
        kw.update(overrides)
        app = create_app(Settings(**kw), predictor=predictor)
        client = TestClient(app)
        client.__enter__()
        stack.append(client)
        if wait_ready:
            assert app.state.service.ready.wait(WAIT_S)
        return client

    yield factory
    for client in reversed(stack):
        client.__exit__(None, None, None)
