"""scripts/ship_weights.py: a stage that starts from shipped weights lists their stages first;
scripts/graft_weights.py: a graft takes the donor's tensors and nothing else;
scripts/fit_shrinkage.py: the stage after a network is fitted alone."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    """A module of ``scripts/`` (they import each other as siblings, so the folder goes on the path)."""
    import sys

    if str(ROOT / "scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ship_weights():
    return _script("ship_weights")


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


def test_an_init_file_assembled_from_runs_lists_the_stages_it_records(tmp_path: Path) -> None:
    """A run started from a weights file with ``stages_before`` metadata (``cavsr_claims.py
    after-twin``'s start) lists those stages before its own; a file without it lists none."""
    import json

    import torch
    from safetensors.torch import save_file

    from codecave.engine.checkpoint import save_checkpoint
    from codecave.engine.config import load_config, save_config

    sw = _ship_weights()
    before = [{"run": "ranker", "steps": 3, "wall_minutes": 0.5}, {"run": "twin", "steps": 4, "wall_minutes": 1.5}]
    assembled, bare = tmp_path / "start.safetensors", tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(1)}, str(assembled), metadata={"stages_before": json.dumps(before)})
    save_file({"w": torch.zeros(1)}, str(bare))
    for init, expected in ((assembled, ["ranker", "twin", "cavsr_fast_after_twin"]), (bare, ["cavsr_fast_after_twin"])):
        run = tmp_path / f"run_{init.stem}"
        run.mkdir()
        save_config(load_config(ROOT / "configs" / "cavsr" / "fast_after_twin.yaml", {"train.init": str(init)}),
                    run / "config.yaml")
        model = torch.nn.Linear(1, 1)
        save_checkpoint(run, model, torch.optim.SGD(model.parameters(), lr=0.1), 9, {"seconds": 120.0}, {})
        stages = sw.training_stages(run)
        assert [st["run"] for st in stages] == expected
        assert stages[-1]["steps"] == 9 and stages[-1]["recipe"] == "configs/cavsr/fast_after_twin.yaml"


def test_graft_takes_the_donors_tensors_and_keeps_the_receivers_or_changes_a_setting_alone(tmp_path: Path,
                                                                                         monkeypatch) -> None:
    """The default's high-CRF weights take the main weights' shrinkage stage and nothing else;
    without a donor only a setting changes (the I/P shrinkage QP offset); the command refuses
    a donor without tensors named, and tensors or nothing without a donor."""
    import json
    import sys

    import pytest
    import torch
    from safetensors.torch import load_file, save_file

    from codecave.models.registry import build_model

    gw = _script("graft_weights")
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.manual_seed(0)
    donor = build_model("pnp_vcve", "fast", dct_shrink=1.0).state_dict()
    donor["shrink.log_scale"] = torch.linspace(-0.5, 0.5, donor["shrink.log_scale"].numel())
    receiver = build_model("pnp_vcve", "fast").state_dict()
    save_file(donor, str(weights / "main.safetensors"))
    save_file(receiver, str(weights / "high.safetensors"))
    manifest = {"main": {"model": "pnp_vcve", "variant": "fast", "file": "main.safetensors", "config": {"dct_shrink": 1.0}},
                "high": {"model": "pnp_vcve", "variant": "fast", "file": "high.safetensors", "config": {}}}
    (weights / "manifest.json").write_text(json.dumps(manifest))
    model, state, taken, config = gw.graft("high", "main", ["shrink."], {"dct_shrink": 1.0}, weights)
    assert sorted(taken) == ["shrink.exponent", "shrink.log_scale"] and config == {"dct_shrink": 1.0}
    got = model.state_dict()
    assert torch.equal(got["shrink.log_scale"], donor["shrink.log_scale"])
    own = load_file(str(weights / "high.safetensors"))
    assert all(torch.equal(got[k], own[k]) for k in own)  # the receiver's own tensors are untouched
    assert set(state) == set(got)
    with pytest.raises(SystemExit, match="no tensor"):
        gw.graft("high", "main", ["nothing."], {"dct_shrink": 1.0}, weights)
    with pytest.raises(SystemExit, match="do not fit"):  # the stage's tensors without the stage
        gw.graft("high", "main", ["shrink."], {}, weights)
    for argv, message in ((["high", "val", "--from", "main", "--out", "o"], "needs --prefix"),
                          (["high", "val", "--out", "o"], "at least one --set"),
                          (["high", "val", "--prefix", "shrink.", "--set", "a=1", "--out", "o"], "no --prefix")):
        monkeypatch.setattr(sys, "argv", ["graft_weights.py", *argv])
        with pytest.raises(SystemExit, match=message):
            gw.main()
    # no donor: only a setting changes, every tensor is the entry's own
    model, state, taken, config = gw.graft("main", None, [], {"shrink_ip_qp_offset": 6.0}, weights)
    assert taken == {} and config == {"dct_shrink": 1.0, "shrink_ip_qp_offset": 6.0}
    assert model.shrink_ip_qp_offset == 6.0
    assert all(torch.equal(state[k], donor[k]) for k in donor) and set(state) == set(donor)


def test_graft_takes_tensors_from_a_fitted_file(tmp_path: Path) -> None:
    """``--from FILE.safetensors``: the stage fitted on its own (``scripts/fit_shrinkage.py``) is taken
    from the file; a missing file is refused."""
    import json

    import pytest
    import torch
    from safetensors.torch import save_file

    from codecave.models.registry import build_model

    gw = _script("graft_weights")
    weights = tmp_path / "weights"
    weights.mkdir()
    receiver = build_model("vig", "small", dct_shrink=1.0).state_dict()
    save_file(receiver, str(weights / "vig.safetensors"))
    (weights / "manifest.json").write_text(json.dumps(
        {"vig": {"model": "vig", "variant": "small", "file": "vig.safetensors", "config": {"dct_shrink": 1.0}}}))
    fitted = {"shrink.log_scale": torch.linspace(-1.0, 0.3, 64), "shrink.exponent": torch.tensor(0.61)}
    save_file(fitted, str(tmp_path / "stage.safetensors"))
    assert gw.is_file_donor(str(tmp_path / "stage.safetensors")) and not gw.is_file_donor("pnp_vcve_fast")
    model, state, taken, config = gw.graft("vig", str(tmp_path / "stage.safetensors"), ["shrink."], {}, weights)
    assert sorted(taken) == ["shrink.exponent", "shrink.log_scale"] and config == {"dct_shrink": 1.0}
    assert torch.equal(model.shrink.log_scale.detach(), fitted["shrink.log_scale"])
    assert all(torch.equal(state[k], receiver[k]) for k in receiver if not k.startswith("shrink."))
    with pytest.raises(SystemExit, match="no such weights file"):
        gw.graft("vig", str(tmp_path / "missing.safetensors"), ["shrink."], {}, weights)
    # a weights file restored without its manifest entry (or the reverse) is refused
    manifest = json.loads((weights / "manifest.json").read_text())
    manifest["vig"]["sha256"] = "0" * 64
    (weights / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SystemExit, match="not the file its manifest entry"):
        gw.graft("vig", str(tmp_path / "stage.safetensors"), ["shrink."], {}, weights)


def test_graft_main_records_a_fitted_file_beside_the_earlier_graft(tmp_path: Path, monkeypatch) -> None:
    """The command (validation stubbed): the entry keeps the earlier graft from an entry and adds
    the fitted file's record, with its hash and the fit's settings but not its curve."""
    import hashlib
    import json
    import sys

    import torch
    from safetensors.torch import save_file

    from codecave.models.registry import build_model

    gw = _script("graft_weights")
    weights = tmp_path / "weights"
    weights.mkdir()
    save_file(build_model("vig", "small", dct_shrink=1.0).state_dict(), str(weights / "vig.safetensors"))
    earlier = {"from": "pnp_vcve_fast", "from_sha256": "0" * 64, "tensors": ["shrink.exponent", "shrink.log_scale"],
               "settings": {"dct_shrink": 1.0}}
    (weights / "manifest.json").write_text(json.dumps({"vig": {
        "model": "vig", "variant": "small", "file": "vig.safetensors", "config": {"dct_shrink": 1.0},
        "training": {"grafts": [earlier]}}}))
    fitted = tmp_path / "fit" / "stage.safetensors"
    fitted.parent.mkdir()
    save_file({"shrink.log_scale": torch.zeros(64), "shrink.exponent": torch.tensor(0.6)}, str(fitted))
    (fitted.parent / "fit.json").write_text(json.dumps({"model": "vig", "wall_minutes": 0.7, "curve": [{"step": 0}]}))
    written = {}
    monkeypatch.setattr(gw, "WEIGHTS", weights)
    monkeypatch.setattr(gw, "validate", lambda *a: ({}, None, {"threshold": 22.0}))
    monkeypatch.setattr(gw, "validation_entry", lambda *a: {"stub": True})
    monkeypatch.setattr(gw, "write_entry", lambda name, entry: written.update({name: entry}) or weights / "manifest.json")
    monkeypatch.setattr(sys, "argv", ["graft_weights.py", "vig", "val", "--from", str(fitted), "--prefix", "shrink.",
                                      "--out", str(tmp_path / "o")])
    gw.main()
    grafts = written["vig"]["training"]["grafts"]
    assert grafts[0] == earlier and len(grafts) == 2
    assert grafts[1]["from"] == fitted.as_posix()
    assert grafts[1]["from_sha256"] == hashlib.sha256(fitted.read_bytes()).hexdigest()
    assert grafts[1]["fit"] == {"model": "vig", "wall_minutes": 0.7}
    assert written["vig"]["pass_through_qp"] == 22.0


def test_fit_shrinkage_fits_the_stage_alone_on_cached_outputs_and_lowers_the_error() -> None:
    """The stage after the network, fitted on noisy outputs of a flat picture where its starting
    thresholds are far too low: the error on the fit data falls, the check gains rise, and only
    the stage's two tensors are fitted."""
    import numpy as np
    import torch

    from codecave.layers.dct import ShiftedDCTShrinkage

    fs = _script("fit_shrinkage")
    g = torch.Generator().manual_seed(0)

    def clip(name: str) -> dict[str, object]:
        gt = torch.full((2, 136, 136), 128.0, dtype=torch.float64)  # flat grey, code values
        out = (gt / 255 + 4 / 255 * torch.randn(2, 136, 136, generator=g, dtype=torch.float64)).float()
        dec = (out.double() * 255).round()
        return {"clip": name, "variant": "ldp37", "qp": 37.0, "out": out, "gt": gt, "dec": dec}

    fit, held = [clip("a"), clip("b")], [clip("c")]
    stage = ShiftedDCTShrinkage(init_scale=0.05)
    before = fs.gains(stage, held, 0.0)["ldp37"]
    x = torch.stack([c["out"] for c in fit]).reshape(-1, 1, 136, 136)
    y = torch.stack([c["gt"] for c in fit]).reshape(-1, 1, 136, 136).float() / 255
    with torch.no_grad():
        error = (stage(x, torch.full((4,), 37.0)) - y).square().mean()
    curve = fs.fit_stage(stage, fit, held, 0.0, steps=30, batch=4, lr=0.1, fixed_exponent=False, every=10,
                         rng=np.random.default_rng(0))
    with torch.no_grad():
        assert (stage(x, torch.full((4,), 37.0)) - y).square().mean() < 0.5 * error
    assert curve[0]["check"]["ldp37"] == before and curve[-1]["check"]["ldp37"] > before + 1.0
    assert [c["step"] for c in curve] == [0, 10, 20, 30]
    assert stage.exponent.requires_grad and stage.log_scale.requires_grad
