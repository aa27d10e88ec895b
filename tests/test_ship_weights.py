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
