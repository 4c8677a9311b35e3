import json

import numpy as np
import pytest

from reportgen.checkpoint import sha256_file
from reportgen.constants import OBSERVATIONS
from reportgen.errors import CheckpointError
from reportgen.inference import calibration as cal
from reportgen.inference.calibrate_cli import findings_logits, main
from reportgen.inference.predictor import load_checkpoint

N_OBS = len(OBSERVATIONS)


def _synthetic(n=4000, scale=3.0, seed=0):
    """True logits z, outcomes drawn from sigmoid(z), and over-confident observed logits scale * z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, size=(n, N_OBS)) - 0.5
    y = (rng.random((n, N_OBS)) < cal.sigmoid(z)).astype(np.float64)
    return scale * z, y


def test_fit_temperature_recovers_known_scale():
    logits, y = _synthetic(scale=3.0)
    y[::7, 2] = np.nan  # unmentioned and uncertain cells must be ignored, not read as negatives
    y[1::11, 3] = -1.0
    temps = cal.fit_temperature(logits, y)
    assert temps.shape == (N_OBS,)
    assert np.all(np.abs(temps - 3.0) < 0.4), temps
    under, _ = _synthetic(scale=0.5, seed=1)
    assert np.allclose(cal.fit_temperature(under, _synthetic(scale=0.5, seed=1)[1]), 0.5, atol=0.1)


def test_unfittable_observations_keep_unit_temperature():
    logits, y = _synthetic(n=300)
    y[:, 0] = 1.0  # one class only
    y[10:, 1] = np.nan  # 10 known labels
    y[:, 5] = 0.0
    y[:2, 5] = 1.0  # two positives among 298 negatives
    temps = cal.fit_temperature(logits, y)
    status = cal.temperature_status(y)
    assert temps[0] == 1.0 and temps[1] == 1.0 and temps[5] == 1.0
    assert "rarer class" in status[5]
    assert status[0].startswith("default") and "one class" in status[0]
    assert status[1].startswith("default") and "10 known" in status[1]
    assert status[2] == "fitted" and temps[2] != 1.0


def test_ece_and_brier_improve_after_fitting_overconfident_logits():
    logits, y = _synthetic(scale=3.0)
    before = cal.sigmoid(logits)
    after = cal.apply_temperature(logits, cal.fit_temperature(logits, y))
    assert cal.ece(after, y) < 0.5 * cal.ece(before, y)
    assert cal.brier(after, y) < cal.brier(before, y)
    # Ranking is untouched: temperature scaling is monotone per observation.
    assert np.array_equal(np.argsort(before[:, 4]), np.argsort(after[:, 4]))


def test_metrics_use_only_known_cells():
    probs = np.array([[0.9, 0.2], [0.1, 0.7]])
    labels = np.array([[1.0, np.nan], [0.0, -1.0]])
    assert cal.brier(probs, labels) == pytest.approx((0.1**2 + 0.1**2) / 2)
    assert np.isnan(cal.brier(probs, np.full_like(probs, np.nan)))
    assert np.isnan(cal.ece(probs, np.full_like(probs, -1.0)))


def test_threshold_for_sensitivity_is_the_largest_reaching_target():
    rng = np.random.default_rng(3)
    p_pos = rng.random(37)
    t = cal.threshold_for_sensitivity(p_pos, 0.9)
    assert np.mean(p_pos >= t) >= 0.9
    assert np.mean(p_pos >= np.nextafter(t, 1.0)) < 0.9


def test_operating_points_reach_target_sensitivity_and_mark_defaults():
    rng = np.random.default_rng(4)
    n = 600
    y = (rng.random((n, N_OBS)) < 0.3).astype(np.float64)
    probs = np.clip(0.35 * y + rng.normal(0.3, 0.15, size=(n, N_OBS)), 0, 1)
    y[:, OBSERVATIONS.index("Fracture")] = 0.0  # no positives
    y[3:, OBSERVATIONS.index("Pleural Other")] = np.nan
    y[:3, OBSERVATIONS.index("Pleural Other")] = 1.0  # 3 positives, 0 negatives
    points = cal.choose_operating_points(probs, y, cal.default_targets(0.9))
    assert set(points) == set(OBSERVATIONS)
    for obs in cal.CRITICAL:
        j = OBSERVATIONS.index(obs)
        pt = points[obs]
        assert pt["method"] == "sensitivity" and pt["target"] == 0.9
        pos = probs[y[:, j] == 1, j]
        assert np.mean(pos >= pt["positive"]) >= 0.9
        assert pt["achieved_sensitivity"] == pytest.approx(np.mean(pos >= pt["positive"]))
        assert np.mean(pos >= pt["uncertain"]) >= 0.97
        assert pt["uncertain"] < pt["positive"]
    youden = points["Cardiomegaly"]
    assert youden["method"] == "youden" and youden["uncertain"] == pytest.approx(0.6 * youden["positive"])
    assert 0.2 < youden["positive"] < 0.8 and youden["specificity"] > 0.7
    j = OBSERVATIONS.index("Cardiomegaly")
    assert youden["positive_rate"] == pytest.approx(np.mean(probs[:, j] >= youden["positive"]))
    assert 0.0 < points["Pneumothorax"]["youden"] < 1.0 and points["Fracture"]["youden"] is None
    assert points["Fracture"]["method"] == "default" and points["Fracture"]["reason"] == "no validation positives"
    assert (points["Fracture"]["positive"], points["Fracture"]["uncertain"]) == (0.5, 0.3)
    assert points["Pleural Other"]["method"] == "default" and "only 3" in points["Pleural Other"]["reason"]


def test_cross_fit_is_patient_disjoint_and_out_of_fold():
    logits, y = _synthetic(n=800)
    groups = [f"p{i // 2}" for i in range(len(y))]  # two studies per patient
    folds = cal.group_folds(groups)
    assert all(folds[i] == folds[i + 1] for i in range(0, len(y), 2))
    assert 0 < folds.sum() < len(folds)
    res = cal.cross_fit(logits, y, groups)
    assert res["probs"].shape == y.shape and not np.isnan(res["probs"]).any()
    assert res["ece"] < cal.ece(cal.sigmoid(logits), y)
    in_sample = cal.apply_temperature(logits, cal.fit_temperature(logits, y))
    assert not np.allclose(res["probs"], in_sample)  # each half was fitted without itself
    sens = res["per_observation"]["Pneumothorax"]["sensitivity"]
    assert 0.75 < sens <= 1.0


def test_parse_temperature():
    assert cal.parse_temperature(1.5) == 1.5
    arr = cal.parse_temperature([2.0] * N_OBS)
    assert arr.shape == (N_OBS,) and arr.dtype == np.float32
    for bad in (0, -1.0, [1.0] * 3, [1.0] * 13 + [0.0], "2", True, None):
        with pytest.raises(CheckpointError, match="temperature"):
            cal.parse_temperature(bad)


# ------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def val_manifest(tmp_path_factory):
    """48 label-only validation studies (24 patients x 2) of synthetic PNGs with random labels."""
    from reportgen.testing import make_png

    root = tmp_path_factory.mktemp("calval")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(48):
        blob = (48.0, 48.0, 6.0 + (i % 5) * 3) if i % 3 else None
        make_png(root / f"im{i}.png", size=(96, 96), seed=i, blob=blob)
        labels = [float(v) for v in (rng.random(N_OBS) < 0.4)]
        labels[OBSERVATIONS.index("Fracture")] = 0.0  # no positives: must keep the default point
        labels[OBSERVATIONS.index("Lung Lesion")] = None if i % 4 else -1.0
        lines.append({"id": f"s{i}", "images": [f"im{i}.png"], "labels": labels, "patient_id": f"p{i // 2}"})
        lines[-1]["split"] = "val"
    lines.append({"id": "train0", "images": ["im0.png"], "labels": [1.0] * N_OBS, "split": "train"})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return manifest


@pytest.fixture()
def checkpoint(tmp_path):
    from reportgen.training.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path / "ckpt")


def test_calibrate_command_updates_metadata_and_predictor_uses_it(checkpoint, val_manifest, tmp_path, capsys):
    sha_before = json.loads((checkpoint / "metadata.json").read_text())["sha256"]
    out = tmp_path / "report"
    rc = main([str(checkpoint), "--manifest", str(val_manifest), "--sources", "", "--out", str(out), "--bins", "5"])
    assert rc == 0
    meta = json.loads((checkpoint / "metadata.json").read_text())
    report = json.loads((out / "calibration.json").read_text())
    assert (out / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "after, 2-fold cross-fitted" in capsys.readouterr().out

    # Weights and their hash are untouched; the checkpoint still verifies.
    assert meta["sha256"] == sha_before == sha256_file(checkpoint / "model.safetensors")
    assert len(meta["temperature"]) == N_OBS and meta["temperature"] == report["temperature"]
    c = meta["calibration"]
    assert c["n"] == 48 and c["data"] == ["manifest (val)"]  # the train row is never used
    assert c["command"].startswith("reportgen calibrate ")
    for key in ("ece_before", "ece_after", "brier_before", "brier_after", "ece_after_crossfit"):
        assert 0.0 <= c[key] <= 1.0
    assert c["ece_after"] <= c["ece_before"] + 1e-9
    assert meta["operating_points"]["Fracture"]["method"] == "default"
    assert c["per_observation"]["Lung Lesion"]["temperature_fit"].startswith("default")
    assert meta["temperature"][OBSERVATIONS.index("Lung Lesion")] == 1.0

    # The predictor divides its logits by the stored per-observation temperatures ...
    predictor = load_checkpoint(checkpoint)
    assert tuple(predictor.temperature.shape) == (N_OBS,)
    from reportgen.data.datasets import load_dataset

    records = load_dataset("manifest", val_manifest, split="val")[:6]
    raw = findings_logits(predictor, records)
    probs = predictor.predict_probabilities([r.images for r in records])
    expected = cal.apply_temperature(raw, np.array(meta["temperature"]))
    assert np.allclose(probs, expected, atol=1e-5)
    # ... and labels its statuses at the stored operating points, in generate() too.
    draft = predictor.generate(records[0].images)
    for j, obs in enumerate(OBSERVATIONS):
        pt, p = meta["operating_points"][obs], float(expected[0, j])
        want = "positive" if p >= pt["positive"] else "uncertain" if p >= pt["uncertain"] else "negative"
        if pt["n_pos"] == 0:  # no validation positives: the output was never checked, so it is not assessed
            want = "not_assessed"
        if min(abs(p - pt["positive"]), abs(p - pt["uncertain"])) > 1e-5:
            assert draft.labels[obs].status == want
        assert draft.labels[obs].probability == pytest.approx(p, abs=1e-4)


def test_per_observation_temperature_changes_probabilities_and_statuses(checkpoint, tmp_path):
    from reportgen.testing import make_png

    img = make_png(tmp_path / "x.png", size=(96, 96))
    base = load_checkpoint(checkpoint)
    p0 = base.predict_probabilities([[img]])[0]
    meta = json.loads((checkpoint / "metadata.json").read_text())
    t = [1.0] * N_OBS
    t[0] = 1e-3  # sharpens observation 0 to ~0 or ~1
    meta["temperature"] = t
    meta["operating_points"] = {o: {"positive": 0.9, "uncertain": 0.1} for o in OBSERVATIONS}
    (checkpoint / "metadata.json").write_text(json.dumps(meta))
    sharp = load_checkpoint(checkpoint)
    p1 = sharp.predict_probabilities([[img]])[0]
    draft = sharp.generate([img])
    assert np.allclose(p1[1:], p0[1:], atol=1e-6)
    assert p1[0] < 1e-3 or p1[0] > 1 - 1e-3
    assert 0.1 < p0[0] < 0.9  # an untrained head is unsure: "uncertain" at T = 1
    assert draft.labels[OBSERVATIONS[0]].status == ("positive" if p1[0] > 0.5 else "negative")
    assert all(draft.labels[o].status == "uncertain" for o in OBSERVATIONS[1:] if 0.1 < p0[OBSERVATIONS.index(o)] < 0.9)
    meta["temperature"] = [1.0] * 13
    (checkpoint / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="temperature"):
        load_checkpoint(checkpoint)


def test_dry_run_leaves_metadata_and_split_is_validation_only(checkpoint, val_manifest, tmp_path):
    before = (checkpoint / "metadata.json").read_bytes()
    out = tmp_path / "r"
    assert (
        main([str(checkpoint), "--manifest", str(val_manifest), "--sources", "", "--out", str(out), "--dry-run"]) == 0
    )
    assert (checkpoint / "metadata.json").read_bytes() == before
    assert json.loads((out / "calibration.json").read_text())["dry_run"] is True
    for split in ("test", "train"):
        with pytest.raises(SystemExit):
            main([str(checkpoint), "--manifest", str(val_manifest), "--split", split])
