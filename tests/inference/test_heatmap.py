import io
import json

import numpy as np
import pytest
import torch

from reportgen.constants import OBSERVATIONS
from reportgen.data.io import LoadedImage, read_image
from reportgen.data.transforms import preprocess
from reportgen.errors import ConfigError, StudyError
from reportgen.inference.heatmap import (
    HeatmapExplainer,
    map_side,
    overlay_png,
    peak,
    save_heatmap,
    unpad,
)
from reportgen.inference.predictor import load_checkpoint
from reportgen.testing import chest_phantom, make_png

SIZE = 64
LESION = OBSERVATIONS.index("Lung Lesion")


def _checkpoint(tmp_path, encoder="test_resnet"):
    """A real checkpoint folder with the given tiny encoder (word tokenizer: no SentencePiece training)."""
    from reportgen.checkpoint import build_model, save_checkpoint
    from reportgen.text.tokenizer import WordTokenizer
    from reportgen.training.tiny import synthetic_study, tiny_config

    torch.manual_seed(0)
    cfg = tiny_config(encoder=encoder)
    tok = WordTokenizer.build([f"{f} {i}" for f, i, _, _ in (synthetic_study(i) for i in range(8))], threshold=1)
    return save_checkpoint(tmp_path / encoder, build_model(cfg, tok), cfg, tok)


def _blob_image(seed: int, rng: np.random.Generator, blob: bool = True):
    """64 px phantom; the blob sits in one lung field, well away from the image centre."""
    if not blob:
        return chest_phantom((SIZE, SIZE), seed=seed), None
    cx = rng.uniform(0.15, 0.32) * SIZE if rng.random() < 0.5 else rng.uniform(0.68, 0.85) * SIZE
    b = (cx, rng.uniform(0.3, 0.65) * SIZE, 0.07 * SIZE)
    return chest_phantom((SIZE, SIZE), seed=seed, blob=b), b


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny ResNet whose findings head learned "Lung Lesion" = a bright blob is present (about 8 s on a CPU)."""
    torch.set_num_threads(1)
    predictor = load_checkpoint(_checkpoint(tmp_path_factory.mktemp("hm")))
    rng = np.random.default_rng(0)
    data = [_blob_image(i, rng, blob=i % 2 == 0) for i in range(128)]
    x = torch.stack([preprocess(img, predictor.cfg.model.preprocess) for img, _ in data])[:, None]
    y = torch.tensor([b is not None for _, b in data], dtype=torch.float32)
    model = predictor.model.train()
    opt = torch.optim.Adam([*model.encoder.parameters(), *model.findings_head.parameters()], lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(120):
        idx = torch.randint(0, len(x), (16,), generator=gen)
        tokens, mask = model.encode_images(x[idx], torch.ones(16, 1, dtype=torch.bool))
        logit = model.findings_logits(tokens, mask)[:, LESION]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.zero_grad(set_to_none=True)
    test = [_blob_image(1000 + i, rng) for i in range(16)]
    return predictor, [(LoadedImage(img, "png", None, None), b) for img, b in test]


def test_cam_peak_finds_the_blob_better_than_the_centre(trained):
    predictor, test = trained
    # At 64 px the last stage (layer4) is a 2x2 grid; layer3's 4x4 grid can localise a 9 px blob.
    explainer = HeatmapExplainer(predictor, target_layer="layer3")
    tol = 12.0  # pixels on the 64 px image: blob radius 4.5 px + the 16 px cells of a 4x4 CAM grid
    cam_d, centre_d = [], []
    for image, (cx, cy, _) in test:
        hm = explainer.explain(image, ["Lung Lesion"])["Lung Lesion"]
        cam_d.append(np.hypot(hm.peak_xy[0] - cx, hm.peak_xy[1] - cy))
        centre_d.append(np.hypot(SIZE / 2 - cx, SIZE / 2 - cy))
    cam_hits = sum(d <= tol for d in cam_d)
    centre_hits = sum(d <= tol for d in centre_d)
    assert cam_hits >= 0.6 * len(test), cam_d
    assert cam_hits > centre_hits
    assert np.mean(cam_d) < 0.7 * np.mean(centre_d)


def test_default_last_stage_map_is_on_the_blob_side(trained):
    predictor, test = trained
    explainer = HeatmapExplainer(predictor)
    assert explainer.target_name == "layer4" and explainer.reshape is None
    right = 0
    for image, (cx, _, _) in test:
        hm = explainer.explain(image, ["Lung Lesion"])["Lung Lesion"]
        right += hm.side == ("right" if cx < SIZE / 2 else "left")  # image left = patient right
    assert right >= 0.75 * len(test)


def test_shapes_ranges_probability_and_no_side_effects(trained, tmp_path):
    predictor, _ = trained
    path = make_png(tmp_path / "wide.png", size=(120, 72), blob=(30, 36, 7))
    explainer = HeatmapExplainer(predictor, lowres=16)
    with torch.no_grad():  # the API calls it like this; the CAM must enable gradients itself
        maps = explainer.explain(path, ["Lung Lesion", "Cardiomegaly"])
    assert list(maps) == ["Lung Lesion", "Cardiomegaly"]
    for hm in maps.values():
        assert hm.full.shape == (72, 120) and hm.array.shape == (10, 16)
        assert hm.full.dtype == np.float32 and 0.0 <= hm.full.min() and hm.full.max() <= 1.0
        assert 0.0 <= hm.array.min() and hm.array.max() <= 1.0
        assert 0 <= hm.peak_xy[0] < 120 and 0 <= hm.peak_xy[1] < 72
        assert hm.side in {"left", "right", "midline"} and 0.0 <= hm.confidence <= 1.0
        json.dumps(hm.summary())
    expected = predictor.predict_probabilities([[path]])[0, LESION]
    assert maps["Lung Lesion"].probability == pytest.approx(float(expected), abs=1e-4)
    predictor.temperature = torch.linspace(0.5, 2.0, len(OBSERVATIONS))  # per-observation calibration
    try:
        calibrated = predictor.predict_probabilities([[path]])[0]
        again = explainer.explain(path, ["Lung Lesion", "Cardiomegaly"])
    finally:
        predictor.temperature = 1.0
    for obs in again:
        assert again[obs].probability == pytest.approx(float(calibrated[OBSERVATIONS.index(obs)]), abs=1e-4)
    model = predictor.model
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert not explainer.target._forward_hooks  # grad-cam's hooks are released after each call


def test_lateral_view_has_no_side_and_bad_input_is_rejected(trained, tmp_path):
    predictor, _ = trained
    explainer = HeatmapExplainer(predictor)
    image = read_image(make_png(tmp_path / "a.png", size=(64, 64)))
    assert explainer.explain(image, ["Edema"], view="LL")["Edema"].side is None
    with pytest.raises(StudyError):
        explainer.explain(image, ["Lung Tumour"])
    with pytest.raises(ConfigError):
        HeatmapExplainer(predictor, method="magic")
    with pytest.raises(ConfigError):
        HeatmapExplainer(predictor, target_layer="no.such.layer")


def test_vit_encoder_path(tmp_path):
    predictor = load_checkpoint(_checkpoint(tmp_path, encoder="test_vit"))
    explainer = HeatmapExplainer(predictor, method="gradcam")
    assert explainer.target_name.startswith("blocks.") and explainer.reshape is not None
    maps = explainer.explain(make_png(tmp_path / "a.png", size=(80, 64)), list(OBSERVATIONS))
    assert len(maps) == 14
    hm = maps["Pneumothorax"]
    assert hm.full.shape == (64, 80) and hm.array.shape == (26, 32)
    assert np.isfinite(hm.full).all() and hm.full.max() <= 1.0


def test_unpad_inverts_preprocess():
    """A spot pushed through the model's resize+pad lands back on itself in original coordinates."""
    from reportgen.config import PreprocessConfig

    img = np.zeros((90, 150), dtype=np.float32)
    img[20:30, 110:120] = 1.0
    square = preprocess(img, PreprocessConfig(image_size=64, mean=0.0, std=1.0))[0].numpy()
    back = unpad(square, 90, 150)
    assert back.shape == (90, 150)
    x, y = peak(back)
    assert abs(x - 114.5) <= 3 and abs(y - 24.5) <= 3


def test_map_side_uses_patient_orientation():
    full = np.zeros((40, 40), dtype=np.float32)
    full[10:20, 2:10] = 1.0  # image left = patient right
    full[30:32, 30:32] = 0.5
    side, conf = map_side(full, peak(full)[0])
    assert side == "right" and conf == pytest.approx(80 / 82)
    assert map_side(full[:, ::-1], peak(full[:, ::-1])[0])[0] == "left"
    mid = np.zeros((40, 40), dtype=np.float32)
    mid[:, 19:21] = 1.0
    assert map_side(mid, peak(mid)[0])[0] == "midline"
    assert map_side(np.zeros((8, 8), dtype=np.float32), 4.0) == (None, 0.0)


def test_overlay_png_decodes_and_colours_the_hot_spot(trained, tmp_path):
    from PIL import Image

    predictor, _ = trained
    path = make_png(tmp_path / "a.png", size=(72, 64))
    hm = HeatmapExplainer(predictor).explain(path, ["Lung Lesion"])["Lung Lesion"]
    png = overlay_png(path, hm)
    img = np.asarray(Image.open(io.BytesIO(png)))
    assert img.shape == (64, 72, 3)
    py, px = int(round(hm.peak_xy[1])), int(round(hm.peak_xy[0]))
    r, g, b = (int(v) for v in img[py, px])
    assert max(r, g, b) - min(r, g, b) > 40  # coloured where hot, not plain gray
    png_path, npy_path = save_heatmap(tmp_path / "out", path, hm)
    assert png_path.name == "Lung_Lesion.png" and np.load(npy_path).shape == hm.array.shape
    with pytest.raises(StudyError):
        overlay_png(make_png(tmp_path / "b.png", size=(64, 64)), hm)


def test_cli_generate_writes_heatmaps(tiny_checkpoint, tmp_path, capsys):
    from reportgen.cli import main

    img = make_png(tmp_path / "study1.png", size=(96, 80), blob=(30, 40, 8))
    out_dir = tmp_path / "maps"
    argv = ["generate", str(img), "--checkpoint", str(tiny_checkpoint), "--format", "json"]
    assert main([*argv, "--heatmaps", str(out_dir), "--heatmap-all"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(out["heatmaps"]) == list(OBSERVATIONS)
    assert isinstance(out["laterality_flags"], list)
    for obs, png in out["heatmaps"].items():
        stem = out_dir / "study1" / obs.replace(" ", "_")
        assert png == str(stem.with_suffix(".png")) and stem.with_suffix(".png").is_file()
        assert np.load(stem.with_suffix(".npy")).ndim == 2
    # Without --heatmap-all only positive/uncertain observations get a map.
    assert main([*argv, "--heatmaps", str(tmp_path / "flagged")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    flagged = [o for o, v in out["labels"].items() if v["status"] != "negative"]
    assert list(out["heatmaps"]) == flagged
    assert main(["generate", str(img), "--checkpoint", str(tiny_checkpoint), "--heatmaps", str(out_dir)]) == 0
    assert "HEATMAPS:" in capsys.readouterr().out
