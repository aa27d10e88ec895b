"""Packs of training windows (codecave.data.packed) and the GPU training entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from codecave.data.augment import dihedral
from codecave.data.dataset import WindowSpec, crop_sample
from codecave.data.packed import PackedWindows, pack_dataset
from codecave.data.prepare import load_clip
from codecave.errors import DatasetError

ROOT = Path(__file__).resolve().parents[2]
SPEC = WindowSpec(frames=3, crop=32, compressed=("crf35",), lossless="crf0", lossless_prob=0.5, qp_dropout=0.0)


@pytest.fixture(scope="module")
def pack(tiny_yuv_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pack") / "pack.npz"
    info = pack_dataset(tiny_yuv_dataset, out, SPEC, budget_mib=1.0, tile=48, frames=5)
    assert info.bytes <= 2**20 and info.tiles >= 2 and info.clips == 2
    return out


def test_packed_windows_equal_the_prepared_crops(tiny_yuv_dataset: Path, pack: Path) -> None:
    windows = PackedWindows(pack, SPEC)
    with np.load(pack) as z:
        origin, meta = z["origin"], json.loads(str(z["meta"]))
    for code in range(8):
        tile, variant, start, y, x = code % windows.tiles, code % 2, code % 3, 4 * (code % 2), 4 * (code // 4)
        got = windows._gather(np.array([tile]), np.array([variant]), np.array([start]), np.array([y]),
                              np.array([x]), np.array([code]), np.array([False]))
        clip_index, first, oy, ox = origin[tile]
        clip = load_clip(tiny_yuv_dataset, meta["clips"][clip_index], meta["variants"][variant])
        want = dihedral(crop_sample(clip, first + start, 3, oy + 4 * y, ox + 4 * x, 32), code, packed=True)
        for key in ("frames", "gt", "mv_past", "mv_future", "mv_valid", "partition", "qp", "frame_type", "crf"):
            assert torch.equal(got[key][0].float(), want[key].float()), (code, key)


def test_batches_are_a_function_of_seed_and_index(pack: Path) -> None:
    windows = PackedWindows(pack, SPEC, seed=3)
    a, b, c = windows.batch(7, 6), windows.batch(7, 6), windows.batch(8, 6)
    assert all(torch.equal(a[k], b[k]) for k in a if k != "qp")
    assert not torch.equal(a["frames"], c["frames"])
    assert a["frames"].shape == (6, 3, 24, 8, 8) and a["partition"].shape == (6, 3, 4, 8, 8)
    hidden = PackedWindows(pack, WindowSpec(**{**SPEC.__dict__, "qp_dropout": 1.0})).batch(0, 4)
    assert torch.isnan(hidden["qp"]).all()


def test_pack_refuses_what_it_cannot_hold(tiny_yuv_dataset: Path, tmp_path: Path, pack: Path) -> None:
    with pytest.raises(DatasetError, match="fits"):
        pack_dataset(tiny_yuv_dataset, tmp_path / "p.npz", SPEC, budget_mib=0.001, tile=48, frames=5)
    with pytest.raises(DatasetError, match="crf25"):
        PackedWindows(pack, WindowSpec(frames=3, crop=32, compressed=("crf25",)))
    with pytest.raises(DatasetError, match="cannot hold"):
        PackedWindows(pack, WindowSpec(frames=3, crop=64, compressed=("crf35",)))


def test_gpu_train_dry_run_needs_no_pyav(tiny_yuv_dataset: Path, tmp_path: Path) -> None:
    """The entry point's CPU dry run; the training half runs with PyAV made unimportable,
    as on a GPU machine without it."""
    common = ["--set", f"data.root={tiny_yuv_dataset}", "--set", "data.compressed=[crf35]",
              "--set", "data.crop=32", "--set", "train.batch_size=2", "--set", "train.threads=1"]
    script = str(ROOT / "scripts" / "gpu_train.py")
    packed = subprocess.run([sys.executable, script, "pack", str(ROOT / "configs/pnp_vcve/fast.yaml"),
                             "--out", str(tmp_path / "pack"), "--budget-mib", "1", "--tile", "48", "--frames", "4",
                             "--check-steps", "2", *common], capture_output=True, text=True, check=True)
    summary = json.loads(packed.stdout)
    assert summary["mib"] <= 1 and summary["check"]["step"] == 2
    blocked = ("import runpy, sys; sys.modules['av'] = None; sys.argv = sys.argv[1:]; "
               "runpy.run_path(sys.argv[0], run_name='__main__')")
    trained = subprocess.run([sys.executable, "-c", blocked, script, "train", str(tmp_path / "pack"), "--out",
                              str(tmp_path / "out"), "--steps", "3", "--minutes", "0", "--device", "cpu"],
                             capture_output=True, text=True, check=False)
    assert trained.returncode == 0, trained.stderr[-2000:]
    result = json.loads(trained.stdout)
    assert result["step"] == 3 and result["finished"]
    assert (tmp_path / "out" / "run" / "model.safetensors").is_file()
    assert np.isfinite(result["loss"])


def test_gpu_train_runs_vig_both_stages_from_one_pack(tiny_yuv_dataset: Path, tmp_path: Path) -> None:
    """configs/vig/small_gpu.yaml as its header says: pack once, TGD stage, then fine-tuning
    from it, the second with the schedule sized by measured steps per second."""
    script = str(ROOT / "scripts" / "gpu_train.py")
    subprocess.run([sys.executable, script, "pack", str(ROOT / "configs/vig/small_gpu.yaml"), "--out",
                    str(tmp_path / "pack"), "--budget-mib", "1", "--tile", "48", "--frames", "5", "--check-steps", "0",
                    "--set", f"data.root={tiny_yuv_dataset}", "--set", "data.compressed=[crf35]",
                    "--set", "data.crop=32", "--set", "data.frames=5"], capture_output=True, text=True, check=True)
    small = ["--set", "train.batch_size=2", "--set", "train.threads=1", "--device", "cpu"]
    pre = subprocess.run([sys.executable, script, "train", str(tmp_path / "pack"), "--out", str(tmp_path / "pre"),
                          "--steps", "2", "--minutes", "0", "--set", "objective.name=truth_guidance",
                          "--set", "objective.settings.patch_sizes=[32,16]", *small],
                         capture_output=True, text=True, check=False)
    assert pre.returncode == 0, pre.stderr[-2000:]
    fine = subprocess.run([sys.executable, script, "train", str(tmp_path / "pack"), "--out", str(tmp_path / "fine"),
                           "--steps", "auto", "--minutes", "0.2", "--set", f"train.init={tmp_path / 'pre' / 'run'}",
                           *small], capture_output=True, text=True, check=False)
    assert fine.returncode == 0, fine.stderr[-2000:]
    assert "steps/s measured" in fine.stdout
    result = json.loads(fine.stdout[fine.stdout.index("{"):])
    assert result["finished"] and result["measured_steps_per_second"] > 0
    assert (tmp_path / "fine" / "run" / "model.safetensors").is_file()


def test_measure_step_rate_runs_the_recipe_and_needs_a_pack(tiny_yuv_dataset: Path, pack: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The rate that sizes a schedule to wall time (gpu_train --steps auto, vig_claims
    --minutes): warm-up plus timed steps of the recipe's batches; a recipe without a pack
    is refused."""
    from codecave.engine import trainer
    from codecave.engine.config import load_config
    from codecave.errors import ConfigError

    overrides = {"data.root": str(tiny_yuv_dataset), "data.compressed": ["crf35"], "data.crop": 32,
                 "data.frames": 3, "data.lossless": "crf0", "train.batch_size": 2, "train.threads": 1}
    with pytest.raises(ConfigError, match="packed"):
        trainer.measure_step_rate(load_config(ROOT / "configs/pnp_vcve/fast.yaml", overrides), "cpu")
    calls = []
    real = trainer.train_step
    monkeypatch.setattr(trainer, "train_step", lambda *a, **k: calls.append(k["step"]) or real(*a, **k))
    cfg = load_config(ROOT / "configs/pnp_vcve/fast.yaml", {**overrides, "data.packed": str(pack)})
    threads = torch.get_num_threads()
    try:
        rate = trainer.measure_step_rate(cfg, "cpu", steps=3, warmup=1)
        assert torch.get_num_threads() == 1  # the recipe's threads
    finally:
        torch.set_num_threads(threads)
    assert calls == [0, 1, 2, 3] and 0 < rate < float("inf")
