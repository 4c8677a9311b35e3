"""Image encoders: any timm backbone -> a sequence of visual tokens of width `d_model`.

timm owns the backbones; this module only adapts their `forward_features` output (CNN feature maps
(B, C, h, w) or ViT token sequences (B, N, C)) to tokens, and loads local weights. Nothing here
downloads: `pretrained=False` always, weights come from a file the user names.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import timm
import torch
from torch import nn

from reportgen.config import EncoderConfig, PreprocessConfig
from reportgen.errors import ConfigError

EncoderFactory = Callable[[EncoderConfig, PreprocessConfig, int], nn.Module]
_ENCODERS: dict[str, EncoderFactory] = {}


def register_encoder(name: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Register a factory for encoder families that are not plain timm names."""

    def deco(fn: EncoderFactory) -> EncoderFactory:
        _ENCODERS[name] = fn
        return fn

    return deco


def create_encoder(cfg: EncoderConfig, pre: PreprocessConfig, d_model: int) -> nn.Module:
    """A registered encoder, or else any `timm.list_models()` name wrapped in `TimmEncoder`."""
    if cfg.name in _ENCODERS:
        return _ENCODERS[cfg.name](cfg, pre, d_model)
    return TimmEncoder(cfg, pre, d_model)


class TimmEncoder(nn.Module):
    """A timm backbone without its classifier, projected to `d_model` tokens with 2-D position info."""

    def __init__(self, cfg: EncoderConfig, pre: PreprocessConfig, d_model: int):
        super().__init__()
        if cfg.name not in timm.list_models():
            raise ConfigError(f"unknown encoder {cfg.name!r}: use a timm model name (timm.list_models())")
        kwargs = {"img_size": pre.image_size} if _is_vit_like(cfg.name) else {}
        self.backbone = timm.create_model(
            cfg.name, pretrained=False, in_chans=pre.in_chans, num_classes=0, drop_rate=cfg.drop_rate, **kwargs
        )
        if cfg.weights:
            load_backbone_weights(self.backbone, cfg.weights)
        self.num_features = self.backbone.num_features
        self.proj = nn.Linear(self.num_features, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, N, d_model) tokens."""
        feats = self.backbone.forward_features(x)
        if feats.ndim == 4:  # CNN: (B, C, h, w) -> (B, h*w, C)
            feats = feats.flatten(2).transpose(1, 2)
        elif feats.ndim != 3:
            raise ConfigError(f"encoder returned features of shape {tuple(feats.shape)}; expected 3-D or 4-D")
        return self.norm(self.proj(feats))

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.mean(dim=1)


def _is_vit_like(name: str) -> bool:
    return any(name.startswith(p) for p in ("vit_", "deit_", "eva", "beit", "swin"))


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a local state dict (.safetensors or torch .pt/.pth) into a timm backbone.

    Classifier keys are ignored (the backbone has none); any other mismatch is an error so that a
    wrong file is never silently half-loaded. A 3-channel stem is averaged to the model's channels.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"encoder weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = backbone.state_dict()
    fixed = {}
    for k, v in state.items():
        if k not in own:
            continue
        if v.shape != own[k].shape and v.ndim == 4 and v.shape[1] != own[k].shape[1]:
            v = v.mean(dim=1, keepdim=True).repeat(1, own[k].shape[1], 1, 1)  # RGB stem -> grayscale
        fixed[k] = v
    missing = [k for k in own if k not in fixed]
    if missing:
        raise ConfigError(f"{path} does not match the encoder: {len(missing)} missing keys, e.g. {missing[:3]}")
    backbone.load_state_dict(fixed)
