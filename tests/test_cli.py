"""`reportgen` as a user runs it: one line of error and a non-zero exit for bad input, never a traceback."""

import json
import subprocess
import sys

import pytest

from reportgen.cli import main
from reportgen.testing import make_dicom, make_png


def run_cli(*args):
    proc = subprocess.run(
        [sys.executable, "-m", "reportgen.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_generate_json_one_line_per_study_with_each(tiny_checkpoint, tmp_path, capsys):
    a, b = make_png(tmp_path / "a.png"), make_dicom(tmp_path / "b.dcm")
    assert main(["generate", str(a), str(b), "--each", "--format", "json", "--checkpoint", str(tiny_checkpoint)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    out = json.loads(lines[1])
    assert out["study"] == [str(b)] and "disclaimer" in out and out["warning"].startswith("untrained")
    assert set(out["labels"]["Pleural Effusion"]) == {"probability", "status"}


def test_generate_text_is_one_study_by_default(tiny_checkpoint, tmp_path, capsys):
    a, b = make_png(tmp_path / "f.png"), make_png(tmp_path / "l.png", seed=3)
    assert main(["generate", str(a), str(b), "--view", "PA", "--view", "LL", "--checkpoint", str(tiny_checkpoint)]) == 0
    out = capsys.readouterr().out
    assert out.count("Study:") == 1 and "f.png, l.png" in out
    assert "UNTRAINED" in out and "requires review by a qualified radiologist" in out


def test_folders_are_studies(tiny_checkpoint, tmp_path, capsys):
    for s in ("s1", "s2"):
        make_png(tmp_path / s / "a.png")
    assert (
        main(
            [
                "generate",
                str(tmp_path / "s1"),
                str(tmp_path / "s2"),
                "--format",
                "json",
                "--checkpoint",
                str(tiny_checkpoint),
            ]
        )
        == 0
    )
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(b"not an image at all"), "PNG, JPEG or DICOM"),
        (lambda p: p.write_bytes(make_png(p.with_suffix(".ok.png")).read_bytes()[:100]), "truncated|corrupt|cannot"),
        (lambda p: make_dicom(p, with_pixels=False), "no pixel data"),
        (lambda p: make_dicom(p, modality="CT"), "CT"),
        (lambda p: make_png(p, size=(32, 32)), "64"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny_checkpoint, tmp_path, make, message):
    bad = tmp_path / "bad.png"
    make(bad)
    rc, out, err = run_cli("generate", bad, "--checkpoint", tiny_checkpoint)
    assert rc == 2
    assert "Traceback" not in err
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1
    import re

    assert re.search(message, lines[0], re.I), lines[0]


def test_more_than_four_views_and_missing_checkpoint_file(tiny_checkpoint, tmp_path):
    pngs = [make_png(tmp_path / f"{i}.png", seed=i) for i in range(5)]
    rc, _, err = run_cli("generate", *pngs, "--checkpoint", tiny_checkpoint)
    assert rc == 2 and "at most 4" in err and "Traceback" not in err
    import shutil

    broken = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, broken)
    (broken / "config.yaml").unlink()
    rc, _, err = run_cli("generate", pngs[0], "--checkpoint", broken)
    assert rc == 2 and "config.yaml" in err and "Traceback" not in err


def test_unknown_command_and_help(capsys):
    assert main(["frobnicate"]) == 2
    assert main(["--help"]) == 0
    assert "generate" in capsys.readouterr().out


def test_train_cli_rejects_bad_override(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("name: x\n")
    assert main(["train", str(tmp_path / "c.yaml"), "--train.nope=1"]) == 2
    assert "no key" in capsys.readouterr().err
