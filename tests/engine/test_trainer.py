"""Training engine: configs, loss goes down, exact resume, DDP with two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codecave.data.dataset import PreparedWindows
from codecave.engine.config import TrainConfig, load_config, parse_config, save_config
from codecave.engine.trainer import train
from codecave.errors import ConfigError
from codecave.losses import charbonnier, round_8bit
from codecave.models import create_model

TINY = {
    "name": "tiny",
    "model": {"name": "pnp_vcve", "variant": "small", "overrides": {"channels": 8, "caa_blocks": 1, "bae_blocks": 2}},
    "data": {"frames": 3, "crop": 32, "compressed": ["crf35"], "lossless": "crf0", "lossless_prob": 0.2},
    "train": {"steps": 6, "batch_size": 4, "lr": 2e-3, "checkpoint_every": 2, "log_every": 1, "threads": 1},
}


def tiny_config(root: Path, out: Path, **train: object) -> TrainConfig:
    data = json.loads(json.dumps(TINY))
    data["data"]["root"] = str(root)
    data["out"] = str(out)
    data["train"].update(train)
    return parse_config(data)


def test_config_round_trip_and_errors(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "ds", tmp_path / "run")
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml", {"train.steps": 9})
    assert again.train.steps == 9 and again.model == cfg.model and again.data == cfg.data
    with pytest.raises(ConfigError, match=r"train: unknown key.*stepz"):
        parse_config({"train": {"stepz": 3}})
    with pytest.raises(ConfigError, match="train.lr"):
        parse_config({"train": {"lr": "fast"}})
    with pytest.raises(ConfigError, match="train.lr"):
        parse_config({"train": {"lr": "nan"}})
    # YAML 1.1 reads 1e-4 as a string (as in --set train.lr=1e-4): it is still a number.
    assert parse_config({"train": {"lr": "1e-4"}}).train.lr == 1e-4
    with pytest.raises(ConfigError, match="crop"):
        parse_config({"data": {"crop": 30}})
    (tmp_path / "bad.yaml").write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(tmp_path / "bad.yaml")


def _fixed_batch_loss(cfg: TrainConfig, weights: Path | None) -> float:
    if weights is None:
        # The trainer's own starting point: same seed before the model is built, so the
        # comparison does not depend on what earlier tests drew from the global RNG.
        torch.manual_seed(cfg.train.seed)
    model = (create_model("pnp_vcve", weights=weights) if weights else
             create_model("pnp_vcve", weights=None, variant=cfg.model.variant, **cfg.model.overrides))
    ds = PreparedWindows(cfg.data.root, cfg.data.window_spec(), length=16, seed=99)
    batch = torch.utils.data.default_collate([ds[i] for i in range(16)])
    with torch.no_grad():
        return float(charbonnier(model(batch["frames"], batch), batch["gt"]))


def test_a_few_steps_lower_the_loss(tiny_dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_dataset, tmp_path / "run", steps=80, checkpoint_every=80)
    result = train(cfg, progress=False, device="cpu")
    assert result.finished and result.step == 80
    before = _fixed_batch_loss(cfg, None)
    after = _fixed_batch_loss(cfg, tmp_path / "run" / "model.safetensors")
    assert after < before * 0.97
    assert (tmp_path / "run" / "config.yaml").exists()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 80 and json.loads(lines[-1])["step"] == 80


def test_resume_equals_uninterrupted(tiny_dataset: Path, tmp_path: Path) -> None:
    straight = tiny_config(tiny_dataset, tmp_path / "a")
    train(straight, progress=False, device="cpu")
    # Stop right after the first step (as a time limit would), then resume.
    broken = tiny_config(tiny_dataset, tmp_path / "b", max_minutes=1e-9)
    first = train(broken, progress=False, device="cpu")
    assert not first.finished and first.step == 1
    second = train(tiny_config(tiny_dataset, tmp_path / "b"), progress=False, device="cpu")
    assert second.finished and second.step == 6
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


def test_ddp_with_two_processes(tiny_dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_dataset, tmp_path / "ddp", steps=2)
    save_config(cfg, tmp_path / "ddp.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
         "-m", "codecave", "train", str(tmp_path / "ddp.yaml"), "--device", "cpu", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "finished at step 2" in proc.stdout
    state = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 2


def test_init_starts_from_given_weights(tiny_dataset: Path, tmp_path: Path) -> None:
    train(tiny_config(tiny_dataset, tmp_path / "a"), progress=False, device="cpu")
    # One step with a negligible learning rate: the result is the starting point.
    second = tiny_config(tiny_dataset, tmp_path / "b", steps=1, lr=1e-12, min_lr=1e-12,
                         init=str(tmp_path / "a"))
    train(second, progress=False, device="cpu")
    a = create_model("pnp_vcve", weights=tmp_path / "a").state_dict()
    b = create_model("pnp_vcve", weights=tmp_path / "b").state_dict()
    fresh = create_model("pnp_vcve", weights=None, variant=second.model.variant, **second.model.overrides).state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)
    assert any(not torch.allclose(a[k], fresh[k]) for k in a)
    bad = tiny_config(tiny_dataset, tmp_path / "c", init=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="no such weights"):
        train(bad, progress=False, device="cpu")


def test_round_8bit_holds_8bit_values_and_passes_gradients() -> None:
    x = torch.tensor([-0.2, 0.0, 0.3 / 255, 0.6 / 255, 100.49 / 255, 1.0, 1.3], requires_grad=True)
    y = round_8bit(x)
    torch.testing.assert_close(y.detach() * 255, torch.tensor([0.0, 0.0, 0.0, 1.0, 100.0, 255.0, 255.0]))
    (y * torch.arange(7.0)).sum().backward()
    torch.testing.assert_close(x.grad, torch.arange(7.0))


def test_round_output_trains_on_the_rounded_output(tiny_dataset: Path, tmp_path: Path) -> None:
    # Same seed and data, and training repeats exactly (test_resume_equals_uninterrupted),
    # so any difference in the weights comes from the loss on the rounded output.
    plain = tiny_config(tiny_dataset, tmp_path / "plain", steps=3)
    rounded = tiny_config(tiny_dataset, tmp_path / "rounded", steps=3, round_output=True)
    train(plain, progress=False, device="cpu")
    result = train(rounded, progress=False, device="cpu")
    assert result.finished and load_config(tmp_path / "rounded" / "config.yaml").train.round_output
    a = create_model("pnp_vcve", weights=tmp_path / "plain").state_dict()
    b = create_model("pnp_vcve", weights=tmp_path / "rounded").state_dict()
    assert any(not torch.allclose(a[k], b[k]) for k in a)
