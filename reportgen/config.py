"""Typed experiment configuration: dataclasses <-> YAML, with `--section.key=value` overrides.

One YAML per experiment names the encoder, decoder, data, training and generation settings (the
ViLMedic habit); the resolved config is saved next to every checkpoint, so a checkpoint carries
everything needed to rebuild its model (the nanoGPT habit).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reportgen.errors import ConfigError


@dataclass
class PreprocessConfig:
    """How a checkpoint expects its input images; stored with the weights because a model only works with its own.

    Attributes:
        image_size: Side ``S`` of the square model input, in pixels.
        in_chans: Channels the encoder takes (1, or 3 for ImageNet-style encoders); gray is repeated.
        mean: Normalisation mean on the [0, 1] gray scale.
        std: Normalisation standard deviation on the [0, 1] gray scale.
    """

    image_size: int = 224
    in_chans: int = 1
    mean: float = 0.5
    std: float = 0.25

    def __post_init__(self) -> None:
        if self.image_size < 1 or self.in_chans < 1 or self.std <= 0:
            raise ConfigError(f"invalid model.preprocess {self}: image_size, in_chans and std must be positive")

    @property
    def black(self) -> float:
        """The normalised value of black (0.0): what padding and out-of-image areas hold."""
        return (0.0 - self.mean) / self.std


@dataclass
class EncoderConfig:
    """Any timm model name; built with `pretrained=False` (no hub), optionally loaded from a local file."""

    name: str = "resnet18"
    weights: str | None = None  # local .safetensors/.pt state dict for the backbone; never a hub name
    drop_rate: float = 0.0


@dataclass
class DecoderConfig:
    """Decoder family (registry name) and size. `d_model` is also the width of the visual tokens."""

    name: str = "transformer"  # "transformer" (GPT-2 with cross-attention) or "lstm"
    d_model: int = 256
    n_layer: int = 3
    n_head: int = 8
    dropout: float = 0.1
    max_len: int = 160  # tokens in a report (findings + separator + impression)


@dataclass
class ModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    max_views: int = 4
    # The findings-label bridge: the decoder attends to a 14-token label prompt (one per observation),
    # so it can learn from reports+labels without images. Visual tokens are added when paired data exists.
    label_prompt: bool = True
    visual_tokens: bool = True


@dataclass
class DatasetSpec:
    """One source: a registered dataset name (see `reportgen.data.datasets`), its root and options."""

    name: str = "manifest"
    root: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Three kinds of supervision; any may be empty. Splits are the datasets' own ("train"/"val")."""

    paired: list[DatasetSpec] = field(default_factory=list)  # images + report (+ labels)
    image_labels: list[DatasetSpec] = field(default_factory=list)  # images + labels, no report
    text_labels: list[DatasetSpec] = field(default_factory=list)  # report + labels, no image
    clean_mode: str = "clinical"  # text cleaning before tokenization: "clinical" or "r2gen"
    tokenizer: str = "sentencepiece"  # "sentencepiece" or "word"
    vocab_size: int = 1500
    label_from_text: bool = True  # label reports that have no labels with reportgen's own labeler


@dataclass
class TrainConfig:
    out_dir: str = "runs/experiment"
    epochs: int = 10
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    seed: int = 0
    num_workers: int = 0
    threads: int = 0  # torch.set_num_threads; 0 = leave torch's default
    bf16: bool = False  # bf16 autocast (about 1.7x faster on this CPU)
    augment: bool = True
    label_loss_weight: float = 1.0
    text_loss_weight: float = 1.0
    max_steps_per_epoch: int = 0  # 0 = full epoch; >0 caps it (quick runs)
    eval_every: int = 1  # validate (and maybe export "best") every N epochs and after the last one


@dataclass
class GenerationConfig:
    """Deterministic search (greedy when num_beams=1, else beam search); no sampling, so no seed is needed."""

    num_beams: int = 3
    max_new_tokens: int = 150
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0  # counted in tokens (subwords): blocking 3-grams breaks words; 0 = off


@dataclass
class ExperimentConfig:
    name: str = "reportgen-experiment"
    version: str = "0.0.0"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)


# --------------------------------------------------------------------------------------------------
# dict <-> dataclass


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict (YAML-safe) of a config dataclass."""
    return dataclasses.asdict(cfg)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Coerce a YAML/CLI value to the annotated type, or raise ConfigError naming the key."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp in (int, float, str):
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, tp) and not isinstance(value, bool):
            return value
        if tp is str and isinstance(value, (int, float)):
            return str(value)
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build a dataclass from a nested dict; unknown keys are an error (typos must not pass silently)."""
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def apply_overrides(cfg: Any, overrides: list[str]) -> Any:
    """Apply `--a.b.c=value` (or `a.b.c=value`) overrides; values are parsed as YAML scalars."""
    data = to_dict(cfg)
    for item in overrides:
        text = item[2:] if item.startswith("--") else item
        if "=" not in text:
            raise ConfigError(f"override {item!r} must look like --section.key=value")
        key, raw = text.split("=", 1)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"override {item!r}: no section {part!r}")
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ConfigError(f"override {item!r}: no key {parts[-1]!r} in {'.'.join(parts[:-1]) or 'config'}")
        node[parts[-1]] = yaml.safe_load(raw) if raw != "" else None
    return from_dict(type(cfg), data)


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read an experiment YAML (missing keys take defaults) and apply CLI overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    cfg = from_dict(ExperimentConfig, data)
    return apply_overrides(cfg, overrides or [])


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
