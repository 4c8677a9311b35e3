import json

import numpy as np
import pytest

from reportgen.constants import DISCLAIMER, OBSERVATIONS
from reportgen.errors import CheckpointError, InvalidImageError, StudyError
from reportgen.inference.predictor import load_checkpoint
from reportgen.inference.triage import triage
from reportgen.testing import make_dicom, make_png


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


def test_draft_has_every_field_and_the_disclaimer(predictor, tmp_path):
    draft = predictor.generate([make_png(tmp_path / "a.png"), make_dicom(tmp_path / "b.dcm", view="LL")])
    out = draft.to_dict()
    assert set(out) == {
        "findings",
        "impression",
        "labels",
        "triage",
        "sentences",
        "flagged_sentences",
        "model",
        "disclaimer",
    }
    assert list(out["labels"]) == list(OBSERVATIONS)
    assert all(
        0.0 <= v["probability"] <= 1.0 and v["status"] in {"positive", "uncertain", "negative"}
        for v in out["labels"].values()
    )
    assert out["disclaimer"] == DISCLAIMER
    assert out["model"]["sha256"] == json.loads((predictor.path / "metadata.json").read_text())["sha256"]
    json.dumps(out)


def test_batch_equals_single_and_is_deterministic(predictor, tmp_path):
    a, b = make_png(tmp_path / "a.png", seed=1), make_png(tmp_path / "b.png", seed=2)
    single = [predictor.generate([a]).to_dict(), predictor.generate([b]).to_dict()]
    batch = [d.to_dict() for d in predictor.generate_batch([[a], [b]])]
    for s, t in zip(single, batch, strict=True):
        assert s["findings"] == t["findings"]
        for o in OBSERVATIONS:
            assert s["labels"][o]["probability"] == pytest.approx(t["labels"][o]["probability"], abs=1e-3)
    assert predictor.generate([a]).to_dict() == single[0]


def test_accepts_bytes_and_rejects_bad_studies(predictor, tmp_path):
    png = make_png(tmp_path / "a.png")
    assert predictor.generate([png.read_bytes()]).labels
    with pytest.raises(StudyError, match="at least one"):
        predictor.generate([])
    with pytest.raises(StudyError, match="at most 4"):
        predictor.generate([png] * 5)
    with pytest.raises(InvalidImageError):
        predictor.generate([b""])


def test_status_follows_operating_points(predictor):
    values = predictor.status_values(np.array([[0.9] * 14, [0.35] * 14, [0.1] * 14]))
    assert values[:, 0].tolist() == [1.0, -1.0, 0.0]


def test_triage_rules():
    points = {o: {"positive": 0.5, "uncertain": 0.3} for o in OBSERVATIONS}
    assert triage({"Pneumothorax": 0.9}, {"Pneumothorax": "positive"}, points).priority == "urgent"
    assert triage({"Pneumothorax": 0.4}, {"Pneumothorax": "uncertain"}, points).priority == "priority"
    t = triage({"Pleural Effusion": 0.7}, {"Pleural Effusion": "positive"}, points)
    assert t.priority == "priority" and "Pleural Effusion" in t.reasons[0]
    assert triage({}, {}, points).priority == "routine"


@pytest.mark.parametrize("missing", ["model.safetensors", "config.yaml", "metadata.json", "tokenizer.json"])
def test_checkpoint_missing_a_file_is_a_clear_error(tiny_checkpoint, tmp_path, missing):
    import shutil

    copy = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, copy)
    (copy / missing).unlink()
    with pytest.raises(CheckpointError, match=missing):
        load_checkpoint(copy)


def test_tampered_weights_fail_the_sha256_check(tiny_checkpoint, tmp_path):
    import shutil

    copy = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, copy)
    with open(copy / "model.safetensors", "ab") as f:
        f.write(b"\0")
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(copy)


def test_fp16_checkpoint_loads_to_same_outputs(tiny_checkpoint, tmp_path):
    from reportgen.checkpoint import load_parts, save_checkpoint

    model, cfg, tok, meta = load_parts(tiny_checkpoint)
    half = save_checkpoint(tmp_path / "half", model, cfg, tok, {"untrained": True}, half=True)
    assert (half / "model.safetensors").stat().st_size < 0.6 * (tiny_checkpoint / "model.safetensors").stat().st_size
    png = make_png(tmp_path / "a.png")
    p32, p16 = load_checkpoint(tiny_checkpoint), load_checkpoint(half)
    a = p32.predict_probabilities([[png]])
    b = p16.predict_probabilities([[png]])
    assert np.allclose(a, b, atol=2e-2)


def test_prompt_uses_balanced_threshold_when_calibrated(tiny_checkpoint):
    p = load_checkpoint(tiny_checkpoint)
    probs = np.full((1, 14), 0.2)
    assert p.prompt_values(probs).sum() == 0  # default points: 0.2 < 0.5
    p.points = {o: {**v, "positive": 0.1, "youden": 0.6} for o, v in p.points.items()}
    assert p.status_values(probs)[0, 0] == 1.0  # screening status: positive at the sensitive point
    assert p.prompt_values(probs).sum() == 0  # but the text is not told the finding is present


def test_observation_without_validation_positives_is_not_assessed(tiny_checkpoint):
    p = load_checkpoint(tiny_checkpoint)
    p.points = {o: {**v, "n_pos": 0 if o == "Support Devices" else 5} for o, v in p.points.items()}
    probs = np.full((1, 14), 0.9)
    assert p._status("Support Devices", 0.9) == "not_assessed"
    assert np.isnan(p.status_values(probs)[0, -1])
    assert p.prompt_values(probs)[0, -1] == 0.0  # the text is never told an unchecked finding is present
    assert p.prompt_values(probs)[0, 0] == 1.0
