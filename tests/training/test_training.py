"""The whole path learns: a tiny model overfits 8 synthetic studies and reproduces their reports exactly."""

import json
import os
import subprocess
import sys

import pytest
import torch

from reportgen.config import DatasetSpec, save_config
from reportgen.inference.predictor import load_checkpoint
from reportgen.training.tiny import synthetic_study, tiny_config
from reportgen.training.trainer import train


def overfit_config(manifest, out_dir, decoder="transformer"):
    cfg = tiny_config(out_dir, decoder=decoder)
    cfg.data.paired = [DatasetSpec(name="manifest", root=str(manifest))]
    cfg.train.epochs = 120
    cfg.train.lr = 3e-3
    cfg.train.eval_every = 40
    return cfg


@pytest.fixture(scope="module")
def overfit_run(synthetic_manifest, tmp_path_factory):
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("overfit")
    best = train(overfit_config(synthetic_manifest, out))
    return out, best


def test_tiny_model_overfits_and_reproduces_reports(overfit_run, synthetic_manifest):
    out, best = overfit_run
    history = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert history[-1]["train"]["text"] < 0.05 and history[-1]["train"]["label"] < 0.05
    predictor = load_checkpoint(best)
    folder = synthetic_manifest.parent
    studies = [[folder / f"study{i}.png"] for i in range(8)]
    drafts = predictor.generate_batch(studies)
    for i, draft in enumerate(drafts):
        findings, impression, _, labels = synthetic_study(i)
        assert draft.findings == findings
        assert draft.impression == impression
        expected = "positive" if labels["Lung Lesion"] == 1.0 else "negative"
        assert draft.labels["Lung Lesion"].status == expected


def test_best_epoch_and_resume_state_are_written(overfit_run):
    out, best = overfit_run
    assert (best / "model.safetensors").is_file() and (out / "last.pt").is_file()
    meta = json.loads((best / "metadata.json").read_text())
    assert meta["training"]["n_train"]["paired"] == 8 and meta["untrained"] is False
    assert meta["training"]["history"], "selection history (validation split) is recorded"


def test_resume_continues_from_last_epoch(synthetic_manifest, tmp_path):
    cfg = tiny_config(tmp_path / "run")
    cfg.data.paired = [DatasetSpec(name="manifest", root=str(synthetic_manifest))]
    cfg.train.epochs = 2
    train(cfg)
    first = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert first["epoch"] == 1
    cfg.train.epochs = 3
    train(cfg, resume=True)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2, 3]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "resumed from epoch 2" in log


def test_text_only_training_uses_label_prompt(tmp_path):
    """Reports + labels without images train the decoder through the findings-label bridge."""
    lines = []
    for split in ("train", "val"):
        for i in range(4):
            findings, impression, _, lab = synthetic_study(i)
            lines.append(
                {
                    "id": f"{split}{i}",
                    "images": [],
                    "findings": findings,
                    "impression": impression,
                    "labels": lab,
                    "split": split,
                }
            )
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    cfg = tiny_config(tmp_path / "run")
    cfg.model.visual_tokens = False
    cfg.data.text_labels = [DatasetSpec(name="manifest", root=str(tmp_path / "m.jsonl"))]
    cfg.train.epochs = 2
    best = train(cfg)
    assert (best / "model.safetensors").is_file()
    predictor = load_checkpoint(best)
    assert len(predictor.generate_from_labels(torch.zeros(2, 14).numpy())) == 2


def test_torchrun_two_processes_on_cpu(synthetic_manifest, tmp_path):
    """The same trainer under torchrun with DDP (gloo): both ranks step, rank 0 writes the checkpoint."""
    cfg = tiny_config(tmp_path / "ddp")
    cfg.data.paired = [DatasetSpec(name="manifest", root=str(synthetic_manifest))]
    cfg.train.epochs = 1
    cfg.train.batch_size = 4
    save_config(cfg, tmp_path / "ddp.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "reportgen.cli",
        "train",
        str(tmp_path / "ddp.yaml"),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "ddp" / "best" / "model.safetensors").is_file()
    assert load_checkpoint(tmp_path / "ddp" / "best").info["name"] == "reportgen-tiny"
