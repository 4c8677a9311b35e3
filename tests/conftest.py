"""Suite-wide settings: no hub access, deterministic torch, few threads."""

import os

# A stray hub call must fail in 0.1 s instead of retrying for 46 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A real (untrained) checkpoint folder, shared by the tests that only need one to load."""
    from reportgen.training.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def synthetic_manifest(tmp_path_factory):
    """8 synthetic paired studies (PNG + report + labels) as a JSONL manifest."""
    from reportgen.training.tiny import make_synthetic_corpus

    return make_synthetic_corpus(tmp_path_factory.mktemp("corpus"), n=8)
