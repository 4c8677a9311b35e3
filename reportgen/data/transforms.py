"""Image -> model tensor: small named transforms (MONAI style) and the one `preprocess` the model uses.

The preprocessing is part of a checkpoint (`PreprocessConfig` is saved with the weights, as timm
does), so training, evaluation and the API all call the same `preprocess(image, cfg)`:

    (H, W) in [0, 1] -> ToTensor -> ResizeLongSide(S) -> PadToSquare(S, black) -> Normalize -> RepeatChannels

Aspect ratio is kept (a squashed chest changes the cardiothoracic ratio, i.e. "cardiomegaly"), and the
padding is black (air), the least surprising value for a radiograph.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from reportgen.config import PreprocessConfig
from reportgen.data.io import LoadedImage

__all__ = [
    "PreprocessConfig",
    "ToTensor",
    "ResizeLongSide",
    "PadToSquare",
    "Normalize",
    "RepeatChannels",
    "Compose",
    "build_preprocess",
    "preprocess",
    "TrainAugment",
]


class ToTensor:
    """``(H, W)`` gray array (float in [0, 1], or uint8/uint16 scaled by their range) -> float32 ``(1, H, W)``."""

    def __call__(self, image: LoadedImage | np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(image, LoadedImage):
            image = image.pixels
        if isinstance(image, torch.Tensor):
            t = image.detach().to(torch.float32)
        else:
            arr = np.asarray(image)
            if arr.dtype == np.uint8:
                arr = arr.astype(np.float32) / 255.0
            elif arr.dtype == np.uint16:
                arr = arr.astype(np.float32) / 65535.0
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            if not arr.flags.writeable:
                arr = arr.copy()  # torch.from_numpy shares memory and warns on read-only buffers
            t = torch.from_numpy(arr)
        if t.ndim == 2:
            t = t.unsqueeze(0)
        if t.ndim != 3 or t.shape[0] != 1:
            raise ValueError(f"expected a single gray image (H, W) or (1, H, W), got shape {tuple(t.shape)}")
        return t


@dataclass
class ResizeLongSide:
    """Resize ``(C, H, W)`` so the longer side is ``size`` pixels, keeping the aspect ratio.

    Uses antialiased bilinear resampling, so large radiographs are low-passed before subsampling
    instead of aliasing (thin lines such as ribs and tubes would otherwise shimmer).
    """

    size: int

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        h, w = t.shape[-2:]
        scale = self.size / max(h, w)
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        if (new_h, new_w) == (h, w):
            return t
        return TF.resize(t, [new_h, new_w], interpolation=InterpolationMode.BILINEAR, antialias=True)


@dataclass
class PadToSquare:
    """Pad ``(C, H, W)`` (each side at most ``size``) to ``(C, size, size)``, centred, with ``fill``.

    An odd remainder goes to the bottom/right, so the image is shifted by at most half a pixel.
    """

    size: int
    fill: float = 0.0

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        h, w = t.shape[-2:]
        if h > self.size or w > self.size:
            raise ValueError(f"image {h}x{w} is larger than the pad target {self.size}; resize first")
        top, left = (self.size - h) // 2, (self.size - w) // 2
        bottom, right = self.size - h - top, self.size - w - left
        return TF.pad(t, [left, top, right, bottom], fill=self.fill)


@dataclass
class Normalize:
    """``(x - mean) / std`` with scalar gray statistics."""

    mean: float
    std: float

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return (t - self.mean) / self.std


@dataclass
class RepeatChannels:
    """``(1, H, W)`` -> ``(n, H, W)`` by repeating gray (for encoders built for RGB)."""

    n: int

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.n == 1 else t.expand(self.n, *t.shape[-2:]).contiguous()


class Compose:
    """Apply transforms in order; ``repr`` lists them, which is what a checkpoint's metadata shows."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


def build_preprocess(cfg: PreprocessConfig) -> Compose:
    """The deterministic pipeline for ``cfg`` (see the module docstring)."""
    return Compose(
        [
            ToTensor(),
            ResizeLongSide(cfg.image_size),
            PadToSquare(cfg.image_size, fill=0.0),  # black, before normalisation
            Normalize(cfg.mean, cfg.std),
            RepeatChannels(cfg.in_chans),
        ]
    )


def preprocess(image: LoadedImage | np.ndarray, cfg: PreprocessConfig) -> torch.Tensor:
    """Turn one image into the model input.

    Args:
        image: A `LoadedImage` or an ``(H, W)`` gray array in [0, 1] (uint8/uint16 are scaled).
        cfg: The checkpoint's preprocessing.

    Returns:
        float32 tensor ``(cfg.in_chans, S, S)``; padding holds ``cfg.black``.
    """
    return build_preprocess(cfg)(image)


class TrainAugment:
    """Small random geometry and exposure changes for training, applied to a preprocessed tensor.

    Radiographs vary a little in patient positioning and exposure, so we jitter exactly that: a small
    rotation, scale and shift, and brightness/contrast. Out-of-image areas become black, like the padding.

    Horizontal flips are **off** by default (``hflip_p=0.0``): a chest radiograph has laterality. The
    heart is on the patient's left, reports say "left pleural effusion" or "right PICC", and
    dextrocardia or situs inversus are findings. A flipped image paired with the unflipped report
    teaches the model to ignore side, so enable flips only for side-agnostic targets.

    Randomness comes only from the ``generator`` passed to each call (or torch's default generator),
    so a seeded generator reproduces the same augmentation exactly.

    Args:
        cfg: The preprocessing the input tensor went through (for the [0, 1] <-> normalised mapping).
        degrees: Maximum absolute rotation, in degrees.
        scale: Range of isotropic zoom factors.
        translate: Maximum shift as a fraction of the image side, in each direction.
        brightness: Maximum relative brightness change (a factor in ``[1 - b, 1 + b]``).
        contrast: Maximum relative contrast change (a factor in ``[1 - c, 1 + c]``).
        hflip_p: Probability of a horizontal flip; keep 0.0 unless you know side does not matter.
    """

    def __init__(
        self,
        cfg: PreprocessConfig | None = None,
        *,
        degrees: float = 5.0,
        scale: tuple[float, float] = (0.95, 1.05),
        translate: float = 0.03,
        brightness: float = 0.1,
        contrast: float = 0.1,
        hflip_p: float = 0.0,
    ):
        self.cfg = cfg or PreprocessConfig()
        self.degrees = degrees
        self.scale = scale
        self.translate = translate
        self.brightness = brightness
        self.contrast = contrast
        self.hflip_p = hflip_p

    def __repr__(self) -> str:
        return (
            f"TrainAugment(degrees={self.degrees}, scale={self.scale}, translate={self.translate}, "
            f"brightness={self.brightness}, contrast={self.contrast}, hflip_p={self.hflip_p})"
        )

    @staticmethod
    def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=generator))

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment one ``(C, S, S)`` tensor (normalised as by ``cfg``); returns a new tensor."""
        if x.ndim != 3:
            raise ValueError(f"expected a (C, H, W) tensor, got shape {tuple(x.shape)}")
        g = generator
        h, w = x.shape[-2:]
        # Draw every parameter up front, in a fixed order, so results depend only on the generator.
        angle = self._uniform(-self.degrees, self.degrees, g)
        zoom = self._uniform(self.scale[0], self.scale[1], g)
        tx = self._uniform(-self.translate, self.translate, g) * w
        ty = self._uniform(-self.translate, self.translate, g) * h
        bright = self._uniform(1 - self.brightness, 1 + self.brightness, g)
        contr = self._uniform(1 - self.contrast, 1 + self.contrast, g)
        flip = float(torch.rand((), generator=g)) < self.hflip_p

        # Exposure jitter on the [0, 1] scale, around the image mean; black stays black under brightness.
        unit = x * self.cfg.std + self.cfg.mean
        mean = unit.mean()
        unit = ((unit - mean) * contr + mean) * bright
        unit = unit.clamp(0.0, 1.0)
        y = (unit - self.cfg.mean) / self.cfg.std

        if not (math.isclose(angle, 0.0) and math.isclose(zoom, 1.0) and tx == 0 and ty == 0):
            y = TF.affine(
                y,
                angle=angle,
                translate=[tx, ty],
                scale=zoom,
                shear=[0.0, 0.0],
                interpolation=InterpolationMode.BILINEAR,
                fill=[self.cfg.black] * y.shape[0],
            )
        if flip:
            y = TF.horizontal_flip(y)
        return y
