"""scripts/ship_weights.py: a stage that starts from shipped weights lists their stages first."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ship_weights():
    spec = importlib.util.spec_from_file_location("ship_weights", ROOT / "scripts" / "ship_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_entry_of_default_and_of_a_shipped_file(tmp_path: Path) -> None:
    sw = _ship_weights()
    main = sw.shipped_entry_of("default", "pnp_vcve_fast")
    high = sw.shipped_entry_of(str(sw.WEIGHTS / "pnp_vcve_fast_high.safetensors"), "pnp_vcve_fast")
    assert main["file"] == "pnp_vcve_fast.safetensors"
    assert high["file"] == "pnp_vcve_fast_high.safetensors"
    assert high["training"]["stages"] and high["training"]["stages"] != main["training"]["stages"]
    copy = tmp_path / "pnp_vcve_fast_high.safetensors"  # the same file elsewhere is not the shipped one
    shutil.copy(sw.WEIGHTS / "pnp_vcve_fast_high.safetensors", copy)
    assert sw.shipped_entry_of(str(copy), "pnp_vcve_fast") is None
    assert sw.shipped_entry_of("", "pnp_vcve_fast") is None
    assert sw.shipped_entry_of("runs/no_such_run", "pnp_vcve_fast") is None


def test_a_shipped_run_validated_again_lists_its_stages_once(tmp_path: Path, monkeypatch) -> None:
    """A run started from the shipped weights (``init: default``) lists their stages first;
    once that run is itself shipped, shipping it again must not list it twice."""
    import json

    import torch

    from codecave.engine.checkpoint import save_checkpoint
    from codecave.engine.config import load_config, save_config

    sw = _ship_weights()
    run = tmp_path / "pnp_vcve_fast_stageX"
    cfg = load_config(ROOT / "configs" / "pnp_vcve" / "fast_stage8.yaml",
                      {"name": "pnp_vcve_fast_stageX", "train.init": "default"})
    run.mkdir()
    save_config(cfg, run / "config.yaml")
    model = torch.nn.Linear(1, 1)
    save_checkpoint(run, model, torch.optim.SGD(model.parameters(), lr=0.1), 7, {"seconds": 60.0}, {})
    weights = tmp_path / "weights"
    weights.mkdir()
    earlier = [{"run": "stage_a", "steps": 5, "wall_minutes": 1.0}, {"run": "stage_b", "steps": 6, "wall_minutes": 2.0}]
    manifest = {"pnp_vcve_fast": {"file": "pnp_vcve_fast.safetensors", "training": {"stages": earlier}}}
    (weights / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(sw, "WEIGHTS", weights)
    first = sw.training_stages(run)
    assert [st["run"] for st in first] == ["stage_a", "stage_b", "pnp_vcve_fast_stageX"] and first[-1]["steps"] == 7
    manifest["pnp_vcve_fast"]["training"]["stages"] = first  # now shipped
    (weights / "manifest.json").write_text(json.dumps(manifest))
    assert [st["run"] for st in sw.training_stages(run)] == ["stage_a", "stage_b", "pnp_vcve_fast_stageX"]
