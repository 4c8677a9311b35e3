"""reportgen.data.transforms: aspect-kept resize + black padding, normalisation, seeded augmentation."""

import numpy as np
import pytest
import torch

from reportgen.data.io import read_image
from reportgen.data.transforms import (
    Compose,
    Normalize,
    PadToSquare,
    PreprocessConfig,
    RepeatChannels,
    ResizeLongSide,
    ToTensor,
    TrainAugment,
    build_preprocess,
    preprocess,
)
from reportgen.testing import chest_phantom, make_png


def _content_box(t: torch.Tensor, black: float) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) rows/cols (inclusive) that are not pure padding."""
    content = (t[0] != black).nonzero()
    return (
        int(content[:, 0].min()),
        int(content[:, 0].max()),
        int(content[:, 1].min()),
        int(content[:, 1].max()),
    )


@pytest.mark.parametrize("in_chans", [1, 3])
def test_preprocess_shape_dtype_channels(in_chans):
    cfg = PreprocessConfig(image_size=64, in_chans=in_chans)
    t = preprocess(chest_phantom((256, 256)), cfg)
    assert t.shape == (in_chans, 64, 64) and t.dtype == torch.float32
    if in_chans == 3:
        assert torch.equal(t[0], t[1]) and torch.equal(t[0], t[2])


def test_preprocess_wide_image_keeps_aspect_and_pads_top_bottom_black():
    cfg = PreprocessConfig(image_size=64, mean=0.5, std=0.25)
    # 200 wide x 100 high, and brighter than black everywhere so padding is identifiable.
    img = np.clip(chest_phantom((200, 100)), 0.05, 1.0)
    t = preprocess(img, cfg)
    assert cfg.black == pytest.approx(-2.0)
    top, bottom, left, right = _content_box(t, cfg.black)
    assert (left, right) == (0, 63)  # long side fills the width
    assert bottom - top + 1 == 32  # 100/200 * 64
    assert top == 16 and 63 - bottom == 16  # centred
    assert torch.all(t[:, :top] == cfg.black) and torch.all(t[:, bottom + 1 :] == cfg.black)


def test_preprocess_tall_image_odd_padding_centred():
    cfg = PreprocessConfig(image_size=65)
    img = np.clip(chest_phantom((100, 260)), 0.05, 1.0)  # tall
    t = preprocess(img, cfg)
    top, bottom, left, right = _content_box(t, cfg.black)
    assert (top, bottom) == (0, 64)
    width = right - left + 1
    assert width == round(100 * 65 / 260)
    assert abs(left - (64 - right)) <= 1


def test_preprocess_normalisation_values():
    cfg = PreprocessConfig(image_size=32, mean=0.4, std=0.2)
    t = preprocess(np.full((64, 64), 0.8, dtype=np.float32), cfg)
    torch.testing.assert_close(t, torch.full((1, 32, 32), 2.0))


def test_preprocess_accepts_loaded_image_and_uint8(tmp_path):
    cfg = PreprocessConfig(image_size=48)
    loaded = read_image(make_png(tmp_path / "a.png", size=(96, 96)))
    from_loaded = preprocess(loaded, cfg)
    from_uint8 = preprocess(np.round(loaded.pixels * 255).astype(np.uint8), cfg)
    torch.testing.assert_close(from_loaded, from_uint8, atol=1e-4, rtol=0)


def test_resize_is_antialiased_not_nearest():
    # A 1-px checkerboard downsampled 4x must average to grey, not alias to black or white.
    board = (np.indices((256, 256)).sum(0) % 2).astype(np.float32)
    t = ResizeLongSide(64)(ToTensor()(board))
    assert t.shape == (1, 64, 64)
    assert torch.allclose(t, torch.full_like(t, 0.5), atol=0.05)


def test_small_transforms():
    t = torch.rand(1, 10, 20)
    assert PadToSquare(20)(t).shape == (1, 20, 20)
    with pytest.raises(ValueError):
        PadToSquare(10)(t)
    assert RepeatChannels(3)(t).shape == (3, 10, 20)
    torch.testing.assert_close(Normalize(0.5, 0.5)(torch.ones(1, 2, 2)), torch.ones(1, 2, 2))
    with pytest.raises(ValueError):
        ToTensor()(np.zeros((3, 4, 4)))
    assert "ResizeLongSide(size=16)" in repr(build_preprocess(PreprocessConfig(image_size=16)))
    assert Compose([lambda x: x + 1, lambda x: x * 2])(1) == 4


def test_config_validation():
    from reportgen.errors import ConfigError

    with pytest.raises(ConfigError, match="std must be positive"):
        PreprocessConfig(std=0.0)


def test_train_augment_deterministic_under_seed():
    cfg = PreprocessConfig(image_size=64)
    x = preprocess(chest_phantom((128, 128)), cfg)
    aug = TrainAugment(cfg)
    a = aug(x, torch.Generator().manual_seed(123))
    b = aug(x, torch.Generator().manual_seed(123))
    c = aug(x, torch.Generator().manual_seed(124))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == x.shape and not torch.equal(a, x)


def test_train_augment_small_changes_only():
    cfg = PreprocessConfig(image_size=64)
    x = preprocess(chest_phantom((128, 128), seed=1), cfg)
    aug = TrainAugment(cfg)
    for seed in range(10):
        y = aug(x, torch.Generator().manual_seed(seed))
        # The centre stays close to the input (small jitter; borders may turn black), and values stay
        # inside the normalised [black, white] range.
        assert (y - x)[:, 16:48, 16:48].abs().mean() < 0.5
        assert y.min() >= cfg.black - 1e-5 and y.max() <= (1 - cfg.mean) / cfg.std + 1e-5


def test_train_augment_never_flips_by_default():
    cfg = PreprocessConfig(image_size=64)
    # Left half bright, right half dark: a flip would swap them.
    img = np.zeros((64, 64), dtype=np.float32)
    img[:, :32] = 0.9
    img[:, 32:] = 0.1
    x = preprocess(img, cfg)
    aug = TrainAugment(cfg)
    assert aug.hflip_p == 0.0
    for seed in range(20):
        y = aug(x, torch.Generator().manual_seed(seed))
        assert y[0, :, 8:24].mean() > y[0, :, 40:56].mean()
    flipper = TrainAugment(cfg, hflip_p=1.0)
    y = flipper(x, torch.Generator().manual_seed(0))
    assert y[0, :, 8:24].mean() < y[0, :, 40:56].mean()


def test_train_augment_identity_when_disabled():
    cfg = PreprocessConfig(image_size=32)
    x = preprocess(chest_phantom((64, 64)), cfg)
    aug = TrainAugment(cfg, degrees=0.0, scale=(1.0, 1.0), translate=0.0, brightness=0.0, contrast=0.0)
    torch.testing.assert_close(aug(x, torch.Generator().manual_seed(0)), x)
