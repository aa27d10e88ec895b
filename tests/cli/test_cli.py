"""The command line: probe tables, JSON, pictures, clean errors; prepare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codecave.cli.main import main


def test_probe_table_and_json(pan_clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", str(pan_clip)]) == 0
    out = capsys.readouterr().out
    assert "x264" in out and "crf 23" in out and "frame type" in out
    assert main(["probe", str(pan_clip), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["frames"]) == 24 and data["stream"]["encoder"]["crf"] == 23
    assert data["frames"][0]["type"] == "I" and data["summary"]["B"]["count"] > 0


def test_probe_viz_writes_pictures(pan_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", str(pan_clip), "--viz", str(tmp_path / "viz"), "--viz-frames", "1:3"]) == 0
    names = sorted(p.name for p in (tmp_path / "viz").iterdir())
    assert names == ["00001_mv.png", "00001_partition.png", "00001_qp.png",
                     "00002_mv.png", "00002_partition.png", "00002_qp.png"]


def test_probe_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.mp4"
    bad.write_text("not a video")
    assert main(["probe", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "x.mp4" in err and "Traceback" not in err
    assert main(["probe", str(tmp_path / "missing.mp4")]) == 2


def test_prepare_command(pan_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    assert main(["prepare", str(pan_clip), "--out", str(out), "--crf", "30", "--frames", "4",
                 "--preset", "veryfast", "--workers", "1", "--no-progress"]) == 0
    assert (out / "clips" / "pan" / "crf30" / "priors.npz").exists()
    assert "1 clip(s) prepared" in capsys.readouterr().out
    # low-delay P alone: no CRF variants unless asked for
    assert main(["prepare", str(pan_clip), "--out", str(tmp_path / "ldp"), "--ldp-qp", "37", "--frames", "4",
                 "--preset", "veryfast", "--workers", "1", "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "ldp" / "clips" / "pan").iterdir() if p.is_dir()) == ["ldp37"]


def test_train_then_evaluate_from_the_command_line(tiny_dataset: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    cfg = {"name": "cli", "out": str(tmp_path / "run"),
           "model": {"name": "pnp_vcve", "overrides": {"channels": 8, "caa_blocks": 1, "bae_blocks": 1}},
           "data": {"root": str(tiny_dataset), "crop": 32, "compressed": ["crf35"]},
           "train": {"steps": 3, "batch_size": 2, "threads": 1}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml"), "--no-progress", "--set", "train.steps=2"]) == 0
    assert "finished at step 2" in capsys.readouterr().out
    out = tmp_path / "eval"
    assert main(["evaluate", str(tiny_dataset), "--weights", str(tmp_path / "run"), "--crf", "35",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| pan0 | crf35 |" in printed
    assert {p.name for p in out.iterdir()} == {"scores.json", "scores.md", "psnr_per_frame.png"}
    assert json.loads((out / "scores.json").read_text())["model"]["precision"] == "fp32"
    assert main(["evaluate", str(tiny_dataset), "--weights", str(tmp_path / "run"), "--crf", "35",
                 "--precision", "bf16", "--out", str(tmp_path / "eval_bf16")]) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "eval_bf16" / "scores.json").read_text())["model"]["precision"] == "bf16"
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert main(["evaluate", str(tiny_dataset), "--weights", str(tmp_path / "run"), "--crf", "99"]) == 2
    assert "crf99" in capsys.readouterr().err


def test_train_a_yuv_model_on_a_yuv_dataset(tiny_yuv_dataset: Path, tiny_dataset: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    cfg = {"name": "yuv", "out": str(tmp_path / "run"),
           "model": {"name": "pnp_vcve", "variant": "fast", "overrides": {"channels": 8, "bae_blocks": 1}},
           "data": {"root": str(tiny_yuv_dataset), "crop": 32, "compressed": ["crf35"]},
           "train": {"steps": 2, "batch_size": 2, "threads": 1}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml"), "--no-progress"]) == 0
    assert "finished at step 2" in capsys.readouterr().out
    # the variant comes with the weights: no --variant needed
    assert main(["evaluate", str(tiny_yuv_dataset), "--weights", str(tmp_path / "run"), "--crf", "35",
                 "--out", str(tmp_path / "eval")]) == 0
    assert "Y plane of the YUV 4:2:0 file" in capsys.readouterr().out
    assert main(["train", str(tmp_path / "c.yaml"), "--no-progress", "--set", f"data.root={tiny_dataset}",
                 "--set", f"out={tmp_path / 'run2'}"]) == 2
    assert "--domain yuv420" in capsys.readouterr().err


def test_enhance_refusals_are_one_line_errors(pan_clip: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["enhance", str(pan_clip), str(pan_clip), "--weights", "none", "--no-progress"]) == 2
    assert main(["enhance", str(pan_clip), str(tmp_path / "o.mp4"), "--frames", "9:3", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "Traceback" not in err
    assert not (tmp_path / "o.mp4").exists()
