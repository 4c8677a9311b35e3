"""Suite-wide settings: no hub access, deterministic torch, few threads."""

import os

# A stray hub call must fail in 0.1 s instead of retrying for 46 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
