"""Tiny models and a synthetic paired corpus: for tests, CI and trying the code without real data.

`make_synthetic_corpus` writes studies whose image and report agree (a bright "nodule" blob <-> a
report that mentions a nodule, its side and size), so a tiny model can be shown to *learn*: it must
overfit them and reproduce each report. `make_tiny_checkpoint` writes a real, untrained checkpoint
folder (same format as a trained one) for tests of loading, the CLI and the API.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reportgen.config import DecoderConfig, EncoderConfig, ExperimentConfig, PreprocessConfig

_SIDES = ("right", "left")
_SIZES = ("small", "large")
NORMAL_FINDINGS = "The heart is normal in size. The lungs are clear. There is no pleural effusion or pneumothorax."
NORMAL_IMPRESSION = "No acute cardiopulmonary abnormality."


def tiny_config(
    out_dir: str | Path = "runs/tiny", decoder: str = "transformer", encoder: str = "test_resnet"
) -> ExperimentConfig:
    """A model of a few hundred thousand parameters that trains in seconds on a CPU."""
    cfg = ExperimentConfig(name="reportgen-tiny", version="0.0.0-tiny")
    cfg.model.encoder = EncoderConfig(name=encoder)
    cfg.model.decoder = DecoderConfig(name=decoder, d_model=64, n_layer=2, n_head=4, dropout=0.0, max_len=128)
    cfg.model.preprocess = PreprocessConfig(image_size=64)
    cfg.data.vocab_size = 120
    cfg.train.out_dir = str(out_dir)
    cfg.train.batch_size = 8
    cfg.train.augment = False
    cfg.train.warmup_steps = 5
    cfg.generation.num_beams = 1
    cfg.generation.max_new_tokens = 120
    return cfg


def synthetic_study(i: int) -> tuple[str, str, tuple[float, float, float] | None, dict[str, float]]:
    """The i-th synthetic study: findings, impression, blob (cx, cy, r) on a 128 px image, labels."""
    if i % 4 == 0:
        return NORMAL_FINDINGS, NORMAL_IMPRESSION, None, {"No Finding": 1.0, "Lung Lesion": 0.0}
    side = _SIDES[(i // 4) % 2]
    size = _SIZES[(i // 2) % 2]
    cx = 38.0 if side == "right" else 90.0  # image left = patient's right
    r = 7.0 if size == "small" else 14.0
    findings = (
        f"There is a {size} nodule in the {side} upper lobe. The heart is normal in size. "
        "There is no pleural effusion or pneumothorax."
    )
    return (
        findings,
        f"{size.capitalize()} {side} upper lobe nodule.",
        (cx, 48.0, r),
        {"Lung Lesion": 1.0, "No Finding": 0.0},
    )


def make_synthetic_corpus(root: str | Path, n: int = 8, fmt: str = "png", seed: int = 0) -> Path:
    """Write n paired studies (one 128 px frontal image each) and a JSONL manifest; return the manifest path.

    Every study is in split "train"; the same studies are repeated as "val" so overfitting can be
    checked on the selection path (this is a learning test, not a generalisation claim).
    """
    from reportgen.constants import OBSERVATIONS
    from reportgen.testing import make_dicom, make_png

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for split in ("train", "val"):
        for i in range(n):
            findings, impression, blob, lab = synthetic_study(i)
            name = f"study{i}.{'dcm' if fmt == 'dicom' else 'png'}"
            if split == "train":
                if fmt == "dicom":
                    make_dicom(root / name, size=(128, 128), seed=seed + i, blob=blob)
                else:
                    make_png(root / name, size=(128, 128), seed=seed + i, blob=blob)
            labels = [lab.get(o, float("nan")) for o in OBSERVATIONS]
            lines.append(
                {
                    "id": f"s{i}-{split}",
                    "images": [name],
                    "findings": findings,
                    "impression": impression,
                    "labels": [None if np.isnan(v) else v for v in labels],
                    "split": split,
                }
            )
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return manifest


def make_tiny_checkpoint(out_dir: str | Path, seed: int = 0, decoder: str = "transformer") -> Path:
    """A real checkpoint folder with random weights, marked untrained. Takes about a second."""
    import torch

    from reportgen.checkpoint import build_model, save_checkpoint
    from reportgen.text.tokenizer import SentencePieceTokenizer

    torch.manual_seed(seed)
    cfg = tiny_config(decoder=decoder)
    texts = [f"{f} {imp}" for f, imp, _, _ in (synthetic_study(i) for i in range(8))]
    tokenizer = SentencePieceTokenizer.train(texts, vocab_size=cfg.data.vocab_size)
    model = build_model(cfg, tokenizer)
    meta = {"untrained": True, "training": {"command": "reportgen.training.tiny.make_tiny_checkpoint", "data": "none"}}
    return save_checkpoint(out_dir, model, cfg, tokenizer, meta)
