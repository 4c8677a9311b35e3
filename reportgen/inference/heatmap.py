"""Heat maps: where in the image the findings head looked for each observation (class-activation maps).

    explainer = HeatmapExplainer(predictor)                      # Grad-CAM++ by default
    maps = explainer.explain("frontal.png", ["Pleural Effusion"])
    png = overlay_png("frontal.png", maps["Pleural Effusion"])   # colour map over the radiograph

The CAM itself comes from `pytorch-grad-cam` (import name `pytorch_grad_cam`); this module only adapts
the report model to it:

1. `StudyLogits` turns the model into a plain classifier, one-view study `(B, C, S, S) -> (B, 14)` logits,
   so the library's `ClassifierOutputTarget(obs_index)` selects an observation.
2. The target layer is the timm backbone's last feature stage (`feature_info[-1]`): `layer4` for ResNets,
   the last block for ViTs, whose `(B, N, C)` tokens are reshaped to a `(B, C, h, w)` grid first.
3. The CAM is computed on the square model input and mapped back to the original image by undoing
   `reportgen.data.transforms.preprocess` (crop the centred padding, resize to the original size).

What a map is not: a segmentation or a detection. It shows which region raised this observation's
logit; each map is min-max normalised, so a map says *where*, never *how likely* (that is
`Heatmap.probability`). `side` and `confidence` feed the laterality safeguard
(`reportgen.inference.laterality`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reportgen.constants import OBSERVATIONS
from reportgen.data.io import LoadedImage, read_image
from reportgen.data.transforms import preprocess
from reportgen.errors import ConfigError, StudyError

ImageInput = str | os.PathLike | bytes | LoadedImage

#: CAM method name -> class name in `pytorch_grad_cam`. Gradient-based methods only: one forward and one
#: backward pass per image for all observations; ScoreCAM / AblationCAM need hundreds of forwards on a CPU.
CAM_METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
}
#: Views where left/right cannot be read off the image columns.
_LATERAL_VIEWS = {"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"}
Side = str | None  # "left" | "right" | "midline" | None (patient side)


@dataclass(frozen=True)
class Heatmap:
    """One observation's class-activation map for one image.

    Attributes:
        observation: CheXpert observation name.
        array: Low-resolution map ``(h, w)`` in [0, 1] covering the original image (no padding), long side
            `HeatmapExplainer.lowres` pixels: what is stored as ``.npy`` and sent to clients.
        full: The map at the original image size ``(H, W)`` in [0, 1].
        peak_xy: Peak ``(x, y)`` in original pixel coordinates: centre of mass of the near-maximum region
            that holds the arg-max (a CAM upsampled from a coarse grid has a flat top, not one pixel).
        side: Patient side of the peak, ``"right"`` when the peak is in the image's left half (standard PA/AP
            display), ``"left"`` for the image's right half, ``"midline"`` within the central band, ``None``
            for an empty map or a lateral view.
        confidence: Fraction of the map's mass on the peak's side (or in the central band for midline), in
            [0, 1]; 0 for an empty map.
        probability: The findings head's probability for the observation (after the checkpoint's temperature).
    """

    observation: str
    array: np.ndarray
    full: np.ndarray
    peak_xy: tuple[float, float]
    side: Side
    confidence: float
    probability: float

    def summary(self) -> dict:
        """JSON-ready description without the arrays."""
        return {
            "observation": self.observation,
            "peak_xy": [round(self.peak_xy[0], 1), round(self.peak_xy[1], 1)],
            "side": self.side,
            "confidence": round(self.confidence, 4),
            "probability": round(self.probability, 4),
            "shape": list(self.full.shape),
        }


class StudyLogits(nn.Module):
    """A `ReportModel` seen as an image classifier: ``(B, C, S, S)`` one-view studies -> ``(B, 14)`` logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.ones(x.shape[0], 1, dtype=torch.bool, device=x.device)
        tokens, token_mask = self.model.encode_images(x[:, None], mask)  # view slot 0, as a frontal view
        return self.model.findings_logits(tokens, token_mask)


def tokens_to_grid(x: torch.Tensor, prefix: int, grid: tuple[int, int] | None) -> torch.Tensor:
    """ViT tokens ``(B, N, C)`` -> ``(B, C, h, w)``: drop the ``prefix`` class/register tokens, reshape the rest.

    ``grid`` is the patch grid ``(h, w)``; ``None`` (or a grid that does not fit) means square.
    """
    patches = x[:, prefix:, :]
    n = patches.shape[1]
    if grid is None or grid[0] * grid[1] != n:
        side = int(round(n**0.5))
        if side * side != n:
            raise ConfigError(f"cannot reshape {n} ViT tokens to a grid; pass target_layer= explicitly")
        grid = (side, side)
    return patches.reshape(x.shape[0], grid[0], grid[1], x.shape[2]).permute(0, 3, 1, 2)


def nhwc_to_nchw(x: torch.Tensor) -> torch.Tensor:
    """Channels-last stage outputs (timm's Swin, some MLP-mixers) -> channels-first, as the CAM expects."""
    return x.permute(0, 3, 1, 2)


def find_target_layer(
    backbone: nn.Module, image_size: int, in_chans: int, name: str | None = None
) -> tuple[str, nn.Module, Callable | None]:
    """The backbone's last feature stage and the reshape its output needs to become ``(B, C, h, w)``.

    Uses timm's `feature_info` (the stages timm itself exposes as feature maps) unless ``name`` names a
    submodule. The output layout is found by one probe forward pass, so CNNs, ViTs and channels-last
    models are all handled without a list of architectures.
    """
    if name is None:
        info = getattr(backbone, "feature_info", None)
        if not info:
            raise ConfigError(f"{type(backbone).__name__} has no timm feature_info; pass target_layer='<module name>'")
        name = info[-1]["module"]
    try:
        layer = backbone.get_submodule(name)
    except AttributeError:
        raise ConfigError(f"the encoder backbone has no module {name!r}") from None
    seen: list[torch.Size] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    was_training = backbone.training
    try:
        param = next(backbone.parameters())
        backbone.eval()  # the probe must not move batch-norm running statistics
        with torch.no_grad():
            backbone.forward_features(torch.zeros(1, in_chans, image_size, image_size, device=param.device))
    finally:
        handle.remove()
        backbone.train(was_training)
    if not seen:
        raise ConfigError(f"module {name!r} is not used by the backbone's forward_features")
    shape = seen[-1]
    if len(shape) == 3:
        grid = getattr(getattr(backbone, "patch_embed", None), "grid_size", None)
        prefix = int(getattr(backbone, "num_prefix_tokens", 0) or 0)
        return name, layer, partial(tokens_to_grid, prefix=prefix, grid=tuple(grid) if grid else None)
    if len(shape) == 4:
        info = getattr(backbone, "feature_info", None) or [{}]
        chs = info[-1].get("num_chs") if info[-1].get("module") == name else None
        if chs is not None and shape[1] != chs and shape[-1] == chs:
            return name, layer, nhwc_to_nchw
        return name, layer, None
    raise ConfigError(f"module {name!r} outputs shape {tuple(shape)}; a CAM needs 3-D tokens or 4-D feature maps")


def unpad(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """Map a square ``(S, S)`` model-input map back to the original ``(height, width)`` image.

    Inverts `preprocess`: the long side was resized to ``S`` (aspect kept, rounded as `ResizeLongSide`
    rounds) and the short side padded centred (odd remainder bottom/right, as `PadToSquare`).
    """
    s = cam.shape[-1]
    scale = s / max(height, width)
    nh, nw = max(1, round(height * scale)), max(1, round(width * scale))
    top, left = (s - nh) // 2, (s - nw) // 2
    crop = torch.from_numpy(np.ascontiguousarray(cam[top : top + nh, left : left + nw], dtype=np.float32))
    full = F.interpolate(crop[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    return _unit(full.numpy())


def _unit(a: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; an all-constant map becomes all zeros (no evidence anywhere)."""
    a = np.asarray(a, dtype=np.float32)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi - lo > 1e-8 else np.zeros_like(a)


def downsample(full: np.ndarray, long_side: int) -> np.ndarray:
    """Area-average ``full`` so its longer side is ``long_side`` (aspect kept; never upsampled)."""
    h, w = full.shape
    scale = min(1.0, long_side / max(h, w))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    t = torch.from_numpy(np.ascontiguousarray(full, dtype=np.float32))[None, None]
    return F.interpolate(t, size=size, mode="area")[0, 0].numpy().clip(0.0, 1.0)


def peak(full: np.ndarray, rel: float = 0.95) -> tuple[float, float]:
    """Peak ``(x, y)``: centre of mass of the connected region within ``rel`` of the maximum around the arg-max."""
    from scipy import ndimage

    iy, ix = np.unravel_index(int(np.argmax(full)), full.shape)
    regions, _ = ndimage.label(full >= rel * full[iy, ix])
    cy, cx = ndimage.center_of_mass(full, regions, regions[iy, ix])
    return float(cx), float(cy)


def map_side(full: np.ndarray, peak_x: float, midline_band: float = 0.1) -> tuple[Side, float]:
    """Patient side of a map and the fraction of its mass there.

    Standard PA/AP display puts the patient's right on the image's left. A peak within ``midline_band`` x
    width of the vertical centre line is ``"midline"`` (confidence = mass in that band).
    """
    total = float(full.sum())
    if total <= 0:
        return None, 0.0
    w = full.shape[1]
    cols = full.sum(axis=0)
    x = np.arange(w) + 0.5
    centre = w / 2
    if abs(peak_x + 0.5 - centre) <= midline_band * w:
        return "midline", float(cols[np.abs(x - centre) <= midline_band * w].sum() / total)
    on_image_left = peak_x + 0.5 < centre
    mass = cols[x < centre].sum() if on_image_left else cols[x >= centre].sum()
    return ("right" if on_image_left else "left"), float(mass / total)


class HeatmapExplainer:
    """Class-activation maps of a `Predictor`'s findings head, per observation, for one image.

    Args:
        predictor: A loaded `reportgen.inference.predictor.Predictor` (its model is used, not copied).
        method: A key of `CAM_METHODS`.
        target_layer: Backbone submodule name to explain (default: timm's last feature stage).
        lowres: Long side of `Heatmap.array`, in pixels.
        midline_band: Half-width of the midline band as a fraction of the image width.

    Not thread-safe with other users of the same model: during `explain` the CAM's hooks sit on the shared
    backbone, so a concurrent forward pass (another `explain`, or `Predictor.generate` in another thread)
    would mix its activations in. Callers that serve requests run it in the same single worker as generation.
    """

    def __init__(
        self,
        predictor,
        method: str = "gradcam++",
        target_layer: str | None = None,
        lowres: int = 32,
        midline_band: float = 0.1,
    ):
        if method not in CAM_METHODS:
            raise ConfigError(f"unknown CAM method {method!r}; choose from {', '.join(CAM_METHODS)}")
        self.predictor = predictor
        self.method = method
        self.lowres = lowres
        self.midline_band = midline_band
        self.pre = predictor.cfg.model.preprocess
        self.classifier = StudyLogits(predictor.model)
        backbone = predictor.model.encoder.backbone
        self.target_name, self.target, self.reshape = find_target_layer(
            backbone, self.pre.image_size, self.pre.in_chans, target_layer
        )

    def _cams(self, x: torch.Tensor, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(1, C, S, S)`` input -> ``(K, S, S)`` CAMs and ``(K,)`` logits, one per observation index."""
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cam_cls = getattr(pytorch_grad_cam, CAM_METHODS[self.method])
        batch = x.expand(len(indices), *x.shape[1:]).contiguous()  # one row per observation: one backward pass
        targets = [ClassifierOutputTarget(i) for i in indices]
        was_training = self.predictor.model.training
        # The predictor runs under no_grad elsewhere; the CAM needs gradients of the logit w.r.t. the features.
        # Hooks live only inside this block, so the shared model is untouched afterwards.
        try:
            with torch.enable_grad(), cam_cls(self.classifier, [self.target], reshape_transform=self.reshape) as cam:
                maps = cam(input_tensor=batch, targets=targets)
                logits = cam.outputs.detach()
        finally:
            self.predictor.model.zero_grad(set_to_none=True)
            self.predictor.model.train(was_training)
        chosen = logits[torch.arange(len(indices)), torch.as_tensor(indices)].cpu().numpy()
        return maps, chosen

    def _temperature(self, index: int) -> float:
        """The checkpoint's calibration temperature for one observation (a scalar, or one per observation)."""
        t = getattr(self.predictor, "temperature", 1.0)
        if isinstance(t, torch.Tensor | np.ndarray):
            flat = np.asarray(t.detach().cpu() if isinstance(t, torch.Tensor) else t, dtype=np.float64).ravel()
            return float(flat[index] if flat.size > 1 else flat[0])
        return float(t)

    def explain(
        self, image: ImageInput, observations: Sequence[str] | None = None, view: str | None = None
    ) -> dict[str, Heatmap]:
        """Heat maps for ``observations`` (default all 14) of one image, treated as a one-view study.

        Args:
            image: Path, bytes or an already read `LoadedImage`.
            observations: CheXpert names.
            view: View tag; a lateral view (or a `LoadedImage.view` that says so) gets ``side=None``.
        """
        names = list(OBSERVATIONS if observations is None else observations)
        unknown = [o for o in names if o not in OBSERVATIONS]
        if unknown:
            raise StudyError(f"unknown observation {unknown[0]!r}; use one of the 14 CheXpert names")
        if not names:
            return {}
        loaded = image if isinstance(image, LoadedImage) else read_image(image)
        height, width = loaded.pixels.shape
        x = preprocess(loaded, self.pre)[None].to(self.predictor.device)
        maps, logits = self._cams(x, [OBSERVATIONS.index(o) for o in names])
        lateral = (view or loaded.view or "").upper() in _LATERAL_VIEWS
        out = {}
        for name, cam, logit in zip(names, maps, logits, strict=True):
            temperature = self._temperature(OBSERVATIONS.index(name))
            full = unpad(cam, height, width)
            xy = peak(full) if full.max() > 0 else (width / 2, height / 2)
            side, conf = map_side(full, xy[0], self.midline_band) if not lateral else (None, 0.0)
            out[name] = Heatmap(
                observation=name,
                array=downsample(full, self.lowres),
                full=full,
                peak_xy=xy,
                side=side,
                confidence=conf,
                probability=float(1.0 / (1.0 + np.exp(-float(logit) / temperature))),
            )
        return out


def overlay_png(image: ImageInput, heatmap: Heatmap, alpha: float = 0.5, cmap: str = "jet") -> bytes:
    """A PNG of the grayscale image with the heat map blended over it in colour, at the original size.

    The blend weight grows with the map value (``alpha * value``), so cold regions show the plain
    radiograph and the reader still sees the anatomy under the hot spot.
    """
    from matplotlib import colormaps
    from PIL import Image

    loaded = image if isinstance(image, LoadedImage) else read_image(image)
    gray = np.asarray(loaded.pixels, dtype=np.float32)
    if gray.shape != heatmap.full.shape:
        raise StudyError(f"heat map {heatmap.full.shape} does not match the image {gray.shape}")
    colour = colormaps[cmap](heatmap.full)[..., :3].astype(np.float32)
    weight = (alpha * heatmap.full)[..., None]
    rgb = (1.0 - weight) * gray[..., None] + weight * colour
    buf = io.BytesIO()
    Image.fromarray(np.round(rgb.clip(0.0, 1.0) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def file_stem(observation: str) -> str:
    """File name for an observation's map: ``"Pleural Effusion"`` -> ``"Pleural_Effusion"``."""
    return observation.replace(" ", "_")


def save_heatmap(out_dir: str | Path, image: ImageInput, heatmap: Heatmap) -> tuple[Path, Path]:
    """Write ``<out_dir>/<Observation_Name>.png`` (overlay) and ``.npy`` (low-res array); return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{file_stem(heatmap.observation)}.png"
    npy = png.with_suffix(".npy")
    png.write_bytes(overlay_png(image, heatmap))
    np.save(npy, heatmap.array.astype(np.float32))
    return png, npy


def frontal_image(images: Sequence[ImageInput], views: Sequence[str | None] | None = None) -> LoadedImage:
    """The study image to explain: the first one not tagged lateral (the model's view slot 0), else the first."""
    loaded = [im if isinstance(im, LoadedImage) else read_image(im) for im in images]
    if not loaded:
        raise StudyError("a study needs at least one image")
    tags = list(views) if views else [None] * len(loaded)
    for im, tag in zip(loaded, tags, strict=False):
        if (tag or im.view or "").upper() not in _LATERAL_VIEWS:
            return im
    return loaded[0]


def write_study_heatmaps(
    explainer: HeatmapExplainer,
    images: Sequence[ImageInput],
    observations: Sequence[str],
    out_dir: str | Path,
    views: Sequence[str | None] | None = None,
) -> tuple[dict[str, Heatmap], dict[str, Path]]:
    """Explain a study's frontal image and write one overlay PNG + low-res NPY per observation into ``out_dir``.

    Returns the heat maps and ``{observation: overlay png path}``.
    """
    image = frontal_image(images, views)
    maps = explainer.explain(image, observations)
    return maps, {obs: save_heatmap(out_dir, image, hm)[0] for obs, hm in maps.items()}
