"""Neural wrapping's objectives: gradient routing, the stop-gradient, proxy phases, and
training on the shared engine (SPECS 3.2.2 - 3.2.5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from codecave.engine.config import TrainSection, parse_config
from codecave.engine.trainer import train
from codecave.engine.wrapping import NeuralWrapping, ProxyAlignment, codec_in_the_loop, codec_settings, routed
from codecave.errors import ConfigError
from codecave.grid import pack
from codecave.models import create_model
from tests.conftest import pan_frames

TINY_PROXY = {"with_proxy": True, "proxy_width": 8, "proxy_latent": 8, "width": 8, "pre_blocks": 1, "post_blocks": 1}
#: MS-SSIM needs frames above 160 px; these tests use 64x64 GOPs.
NO_MS_SSIM = {"ms_ssim": 0.0}


def _model(with_proxy: bool = True) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("neural_wrapper", weights=None, **{**TINY_PROXY, "with_proxy": with_proxy})
    for p in [*model.pre.tail.parameters(), *model.post.tail.parameters()]:  # leave the identity start
        torch.nn.init.normal_(p, std=1e-2)
    return model.train()


def _batch() -> dict[str, torch.Tensor]:
    from codecave.codec.convert import rgb_to_planes

    planes = [rgb_to_planes(f) for f in pan_frames(4, 64, 64)]
    y, u, v = (torch.stack([torch.from_numpy(getattr(p, c)).float() / 255 for p in planes]) for c in "yuv")
    return {"gt": pack(y, u, v).unsqueeze(0)}


def _watch(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Hooks that record O's input ``o_in``, P's output ``i_p`` and the gradients arriving at
    them (``grad_o_in``, ``grad_i_p``) in the returned dict."""
    seen: dict[str, torch.Tensor] = {}

    def post_input(module: torch.nn.Module, args: tuple) -> None:
        seen["o_in"] = args[0]
        args[0].register_hook(lambda g: seen.__setitem__("grad_o_in", g))

    def pre_output(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:
        if out.requires_grad:
            seen["i_p"] = out
            out.register_hook(lambda g: seen.__setitem__("grad_i_p", g))

    model.post.register_forward_pre_hook(post_input)
    model.pre.register_forward_hook(pre_output)
    return seen


def _grads(params: list[torch.nn.Parameter]) -> float:
    return sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)


def test_post_processor_reads_the_codec_output_with_the_proxy_gradient() -> None:
    """Stop-gradient (eq. 8): O's input is I_C bit for bit; the gradient arriving there
    flows on into the proxy's output I_M unchanged (and from there to P)."""
    model, batch = _model(), _batch()
    seen: dict[str, torch.Tensor] = {}

    def post_input(module: torch.nn.Module, args: tuple) -> None:
        seen["o_in"] = args[0]
        args[0].register_hook(lambda g: seen.__setitem__("grad_o_in", g))

    def proxy_output(module: torch.nn.Module, args: tuple, out: tuple) -> None:
        out[0].register_hook(lambda g: seen.__setitem__("grad_i_m", g))

    model.post.register_forward_pre_hook(post_input)
    model.proxy.register_forward_hook(proxy_output)
    objective = NeuralWrapping(TrainSection(), refine=False, **NO_MS_SSIM)  # the wrapper's loss alone
    objective.setup(model)
    objective.loss(model, batch, 0).backward()
    with torch.no_grad():
        i_c, _ = codec_in_the_loop(model.preprocess(batch["gt"]), codec_settings("x264", 30, "medium", 4))
    assert torch.equal(seen["o_in"].detach(), i_c)
    from codecave.grid import to_half_layout

    assert torch.allclose(seen["grad_i_m"], to_half_layout(seen["grad_o_in"]), atol=1e-12)
    assert seen["grad_o_in"].abs().sum() > 0 and _grads(list(model.pre.parameters())) > 0


def test_without_stop_gradient_the_post_processor_reads_the_proxy() -> None:
    model, batch = _model(), _batch()
    seen: dict[str, torch.Tensor] = {}
    model.post.register_forward_pre_hook(lambda m, args: seen.__setitem__("o_in", args[0].detach()))
    objective = NeuralWrapping(TrainSection(), stop_gradient=False, **NO_MS_SSIM)
    objective.setup(model)
    objective.loss(model, batch, 0)
    with torch.no_grad():
        i_c, _ = codec_in_the_loop(model.preprocess(batch["gt"]), codec_settings("x264", 30, "medium", 4))
    assert not torch.equal(seen["o_in"], i_c)


def test_proxy_losses_never_move_the_wrapper_and_the_wrapper_loss_never_moves_the_proxy() -> None:
    batch = _batch()
    # Wrapper loss switched off (all weights 0): only the proxy's refit losses remain.
    model = _model()
    objective = NeuralWrapping(TrainSection(), lmbda=0.0, l1=0.0, ssim=0.0, ms_ssim=0.0, dlm=0.0)
    objective.setup(model)
    loss = objective.loss(model, batch, 0)
    loss.backward()
    wrapper = [*model.pre.parameters(), *model.post.parameters()]
    assert _grads(wrapper) == 0
    assert _grads(model.proxy.transform_parameters()) > 0 and _grads(model.proxy.entropy_parameters()) > 0
    assert model.proxy.log_alpha.grad is not None and model.proxy.log_alpha.grad.abs() > 0
    # Proxy frozen (no iterative refinement): the end-to-end loss moves P and O only.
    model = _model()
    objective = NeuralWrapping(TrainSection(), refine=False, **NO_MS_SSIM)
    objective.setup(model)
    objective.loss(model, batch, 0).backward()
    assert _grads(list(model.proxy.parameters())) == 0
    assert _grads(list(model.pre.parameters())) > 0 and _grads(list(model.post.parameters())) > 0


def test_routed_gives_each_parameter_set_its_own_gradient() -> None:
    a, b = torch.nn.Parameter(torch.tensor(2.0)), torch.nn.Parameter(torch.tensor(3.0))
    loss_a, loss_b = a * b, (a + b) ** 2
    total = routed([(loss_a, [a]), (loss_b, [b])])
    assert float(total.detach()) == pytest.approx(6.0 + 25.0)
    total.backward()
    assert float(a.grad) == pytest.approx(3.0) and float(b.grad) == pytest.approx(10.0)


def test_proxy_phases_train_only_their_parameters() -> None:
    model = _model()
    train_section = TrainSection()
    ProxyAlignment(train_section, phase="distortion").setup(model)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in model.proxy.transform_parameters()}
    ProxyAlignment(train_section, phase="rate").setup(model)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in [*model.proxy.entropy_parameters(), *model.proxy.calibration_parameters()]}
    with pytest.raises(ConfigError, match="phase"):
        ProxyAlignment(train_section, phase="both")
    with pytest.raises(ConfigError, match="codec"):
        NeuralWrapping(train_section, codec="mpeg2")
    with pytest.raises(ConfigError, match="0-51"):
        NeuralWrapping(train_section, qp=55)
    with pytest.raises(ConfigError, match="stop_gradient"):
        NeuralWrapping(train_section, proxy_gradient="identity", stop_gradient=False)
    with pytest.raises(ConfigError, match="with_proxy"):
        ProxyAlignment(train_section).setup(create_model("neural_wrapper", weights=None))


def _config(root: Path, out: Path, objective: dict, init: str = "") -> object:
    return parse_config({
        "name": "nw_tiny", "out": str(out),
        "model": {"name": "neural_wrapper", "variant": "small", "overrides": TINY_PROXY},
        "data": {"root": str(root), "frames": 4, "crop": 64, "compressed": ["crf35"], "lossless": ""},
        "train": {"steps": 3, "batch_size": 1, "lr": 1e-3, "min_lr": 1e-3, "checkpoint_every": 3, "log_every": 1,
                  "threads": 1, "init": init},
        "objective": objective})


def test_proxy_alignment_then_wrapping_train_on_the_shared_engine(tiny_yuv_dataset: Path, tmp_path: Path) -> None:
    """Phase 1, phase 2 and the end-to-end stage run as recipes; their named terms are logged."""
    phase1 = _config(tiny_yuv_dataset, tmp_path / "p1", {"name": "proxy_alignment", "settings": {"phase": "distortion"}})
    assert train(phase1, progress=False, device="cpu").finished
    phase2 = _config(tiny_yuv_dataset, tmp_path / "p2", {"name": "proxy_alignment", "settings": {"phase": "rate"}},
                     init=str(tmp_path / "p1"))
    assert train(phase2, progress=False, device="cpu").finished
    record = json.loads((tmp_path / "p2" / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"rate_hyp", "rate_codec", "calibration"} <= set(record)
    e2e = _config(tiny_yuv_dataset, tmp_path / "e2e", {"name": "neural_wrapping", "settings": NO_MS_SSIM},
                  init=str(tmp_path / "p2"))
    assert train(e2e, progress=False, device="cpu").finished
    record = json.loads((tmp_path / "e2e" / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"distortion", "ssim", "dlm", "rate_proxy", "rate_codec", "proxy_mse"} <= set(record)
    trained = create_model("neural_wrapper", weights=tmp_path / "e2e")
    assert trained.proxy is not None and trained.variant == "small"


def test_identity_proxy_gradient_passes_the_gradient_at_o_straight_to_p() -> None:
    """``proxy_gradient: identity`` (a non-learned proxy): O still reads I_C, and the gradient
    arriving there reaches P's output unchanged (plus the rate's, zero here with lmbda 0)."""
    model, batch = _model(), _batch()
    seen = _watch(model)
    objective = NeuralWrapping(TrainSection(), refine=False, lmbda=0.0, proxy_gradient="identity", **NO_MS_SSIM)
    objective.setup(model)
    objective.loss(model, batch, 0).backward()
    with torch.no_grad():
        i_c, _ = codec_in_the_loop(model.preprocess(batch["gt"]), codec_settings("x264", 30, "medium", 4))
    assert torch.equal(seen["o_in"].detach(), i_c)
    assert torch.allclose(seen["grad_i_p"], seen["grad_o_in"], atol=1e-12)
    with pytest.raises(ConfigError, match="proxy_gradient"):
        NeuralWrapping(TrainSection(), proxy_gradient="straight")


def test_the_proxy_refits_at_its_own_learning_rate(tiny_yuv_dataset: Path, tmp_path: Path) -> None:
    """``proxy_lr_scale``: the optimiser's proxy group runs at that multiple of the schedule's rate."""
    from codecave.engine.checkpoint import load_checkpoint

    cfg = _config(tiny_yuv_dataset, tmp_path / "e2e", {"name": "neural_wrapping",
                                                      "settings": {**NO_MS_SSIM, "proxy_lr_scale": 50.0}})
    assert train(cfg, progress=False, device="cpu").finished
    groups = load_checkpoint(tmp_path / "e2e")["optimizer"]["param_groups"]
    assert [g.get("lr_scale", 1.0) for g in groups] == [1.0, 50.0]
    assert groups[1]["lr"] == pytest.approx(50 * groups[0]["lr"])


def test_transform_rate_gradient_needs_no_learned_proxy() -> None:
    """``rate_gradient: transform`` with ``proxy_gradient: identity``: the model may lack the
    learned proxy; the rate's value is the codec's real bits of the GOP and its gradient
    reaches P (only P: with ``lmbda`` alone, O's parameters get none)."""
    model = _model(with_proxy=False)
    assert model.proxy is None
    one = _batch()["gt"]
    batch = {"gt": torch.cat([one, one.flip(-1)])}  # two GOPs: the rate is their mean, not their sum
    objective = NeuralWrapping(TrainSection(), proxy_gradient="identity", rate_gradient="transform", l1=0.0, ssim=0.0,
                               ms_ssim=0.0, dlm=0.0)
    objective.setup(model)
    assert len(objective.param_groups(model)) == 1
    loss = objective.loss(model, batch, 0)
    with torch.no_grad():
        _, r_c = codec_in_the_loop(model.preprocess(batch["gt"]), codec_settings("x264", 30, "medium", 4))
    assert float(loss.detach()) == pytest.approx(0.1 * float(r_c.sum(1).mean()), rel=1e-5)
    loss.backward()
    assert _grads(list(model.pre.parameters())) > 0
    assert _grads(list(model.post.parameters())) == 0
    assert {"surrogate", "slope_intra", "slope_inter", "rate_codec", "rate_gop"} <= set(objective.terms)
    with pytest.raises(ConfigError, match="rate_gradient"):
        NeuralWrapping(TrainSection(), rate_gradient="exact")
    with pytest.raises(ConfigError, match="stop_gradient"):
        NeuralWrapping(TrainSection(), proxy_gradient="transform", stop_gradient=False)
    with pytest.raises(ConfigError, match="with_proxy"):  # the learned proxy's gradient without a proxy
        NeuralWrapping(TrainSection(), proxy_gradient="identity").loss(model, batch, 0)


def test_transform_distortion_gradient_reaches_p_through_the_coded_coefficients() -> None:
    """``proxy_gradient: transform``: O reads I_C; the gradient at O's input reaches P's
    output projected onto the coefficients the transform model codes (so not unchanged)."""
    from codecave.models.transform_proxy import transform_code

    model, batch = _model(with_proxy=False), _batch()
    seen = _watch(model)
    objective = NeuralWrapping(TrainSection(), lmbda=0.0, proxy_gradient="transform", rate_gradient="transform",
                               **NO_MS_SSIM)
    objective.setup(model)
    objective.loss(model, batch, 0).backward()
    i_p = seen["i_p"].detach()
    i_c, _ = codec_in_the_loop(i_p, codec_settings("x264", 30, "medium", 4))
    assert torch.equal(seen["o_in"].detach(), i_c)
    x = i_p.clone().requires_grad_(True)
    (transform_code(x, i_c, 30).coded * seen["grad_o_in"]).sum().backward()
    assert torch.allclose(seen["grad_i_p"], x.grad, atol=1e-9)
    assert not torch.allclose(seen["grad_i_p"], seen["grad_o_in"])
