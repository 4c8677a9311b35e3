"""The checkpoint folder: everything needed to rebuild and run a model, and nothing fetched from a hub.

    <name>/model.safetensors   weights (fp32 or fp16)
    <name>/config.yaml         the full ExperimentConfig that built the model
    <name>/tokenizer.*         the tokenizer trained on the training reports
    <name>/metadata.json       name, version, sha256 of the weights, preprocessing, training data,
                               intended use, operating points, metrics and the command that made them

Writes are atomic (a temporary folder renamed into place) so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from safetensors.torch import load_model, save_model

from reportgen.config import ExperimentConfig, from_dict, save_config, to_dict
from reportgen.constants import OBSERVATIONS
from reportgen.errors import CheckpointError, ConfigError
from reportgen.models.model import ReportModel

REQUIRED_FILES = ("model.safetensors", "config.yaml", "metadata.json", "tokenizer.json")
INTENDED_USE = (
    "Research demonstration. Drafts chest X-ray reports for review by a qualified radiologist; "
    "not a medical device and not for clinical use."
)


def default_operating_points() -> dict[str, dict[str, float]]:
    """Per-observation probability thresholds: >= positive -> 'positive', >= uncertain -> 'uncertain'."""
    return {name: {"positive": 0.5, "uncertain": 0.3} for name in OBSERVATIONS}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def special_ids(tokenizer) -> dict[str, int]:
    return {"pad": tokenizer.pad_id, "bos": tokenizer.bos_id, "eos": tokenizer.eos_id}


def build_model(cfg: ExperimentConfig, tokenizer) -> ReportModel:
    return ReportModel(cfg.model, tokenizer.vocab_size, special_ids(tokenizer))


def save_checkpoint(
    out_dir: str | Path,
    model: ReportModel,
    cfg: ExperimentConfig,
    tokenizer,
    metadata: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write a checkpoint folder atomically and return its path. `half=True` stores fp16 weights."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        to_save = copy.deepcopy(model).half() if half else model
        save_model(to_save, str(tmp / "model.safetensors"))
        save_config(cfg, tmp / "config.yaml")
        tokenizer.save(tmp)
        meta = {
            "name": cfg.name,
            "version": cfg.version,
            "intended_use": INTENDED_USE,
            "labels": list(OBSERVATIONS),
            "preprocessing": to_dict(cfg.model.preprocess),
            "encoder": cfg.model.encoder.name,
            "decoder": cfg.model.decoder.name,
            "weights_dtype": "float16" if half else "float32",
            "operating_points": default_operating_points(),
            "untrained": False,
        }
        meta.update(metadata or {})
        meta["sha256"] = sha256_file(tmp / "model.safetensors")
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def check_folder(path: Path) -> None:
    """Raise CheckpointError naming every missing file, so a user knows what to restore."""
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {path}")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {path} is missing {', '.join(missing)}; re-export or re-download it")


def load_parts(path: str | Path, verify: bool = True):
    """Load (model in eval mode, config, tokenizer, metadata) from a checkpoint folder, offline."""
    from reportgen.text.tokenizer import load_tokenizer

    path = Path(path)
    check_folder(path)
    try:
        cfg = from_dict(ExperimentConfig, yaml.safe_load((path / "config.yaml").read_text()) or {})
        meta = json.loads((path / "metadata.json").read_text())
    except (ConfigError, ValueError, yaml.YAMLError) as exc:
        raise CheckpointError(f"checkpoint {path} has an unreadable config or metadata: {exc}") from None
    if verify and meta.get("sha256") and meta["sha256"] != sha256_file(path / "model.safetensors"):
        raise CheckpointError(f"checkpoint {path}: model.safetensors does not match the sha256 in metadata.json")
    tokenizer = load_tokenizer(path)
    model = build_model(cfg, tokenizer)
    try:
        load_model(model, str(path / "model.safetensors"), strict=True)
    except (RuntimeError, OSError) as exc:
        raise CheckpointError(f"checkpoint {path}: weights do not fit config.yaml ({str(exc)[:200]})") from None
    model.float().eval()
    return model, cfg, tokenizer, meta
