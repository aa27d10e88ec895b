"""Neural wrapping's objectives: the proxy's alignment to the real codec and the
end-to-end training of the wrapper through it (CVPR 2025; ``SPECS.md`` 3.2.2 - 3.2.5).

Both take batches of source groups of pictures (``batch["gt"]``, ``(B, T, 24, H/4, W/4)``,
the first frame coded intra) and run the real codec on them inside the loss
(:func:`codec_in_the_loop`). Gradients are routed per parameter set (:func:`routed`),
so one backward pass of the shared training loop moves each part by its own loss only:
the proxy's losses never reach the pre-processor and the end-to-end loss never reaches
the proxy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codecave.engine.config import TrainSection
from codecave.engine.objectives import Objective, _single_process
from codecave.errors import ConfigError
from codecave.grid import from_half_layout, luma, to_half_layout
from codecave.losses import detail_loss_metric, ms_ssim_y, ssim_luma
from codecave.models.transform_proxy import RateCalibration, transform_code

if TYPE_CHECKING:  # the codec (PyAV) loads when a batch is first coded: the engine runs without it
    from codecave.codec.encode import EncodeSettings

#: Phases of the proxy's pre-training: a conventional codec first (MSE to the source
#: plus rate; SPECS 3.6 f), then the paper's two alignment phases.
PROXY_PHASES = ("conventional", "distortion", "rate")


def codec_settings(codec: str, qp: float, preset: str, frames: int) -> EncodeSettings:
    """The real codec of the training loop: a fixed QP, low delay (one intra picture, then
    P pictures), one thread (SPECS 3.6 e and 3.7: x264 ``bframes=0``; SVT-AV1 low delay)."""
    from codecave.codec.encode import EncodeSettings

    if codec in ("svtav1", "av1"):
        return EncodeSettings(codec="svtav1", crf=None, qp=qp, preset=preset if preset.isdigit() else "10",
                              keyint=frames, threads=1, params={"pred-struct": "1"})
    return EncodeSettings(codec=codec, crf=None, qp=qp, preset=preset, bframes=0, keyint=frames, threads=1,
                          params={"scenecut": "0"})  # the proxy codes I P P P: no intra picture inside


def codec_in_the_loop(frames: torch.Tensor, settings: EncodeSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """The real codec's output ``I_C`` and rate ``R_C`` for packed frames.

    Each clip of the batch is clamped to [0, 1], rounded to 8 bits (what an encoder
    takes; SPECS 3.6 i), encoded as one group of pictures and decoded, in memory.

    Args:
        frames: ``(B, T, 24, H/4, W/4)`` in [0, 1] (no gradient is taken).
        settings: the encoder (:func:`codec_settings`).

    Returns:
        ``I_C`` ``(B, T, 24, H/4, W/4)`` float on the frames' device, and ``R_C`` ``(B, T)``:
        bits of each frame per luma pixel.
    """
    from codecave.codec.roundtrip import round_trip_packed

    codes = frames.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    pixels = 16 * frames.shape[-1] * frames.shape[-2]
    decoded, rates = [], []
    for clip in codes:
        out, bits = round_trip_packed(clip, settings)
        decoded.append(out)
        rates.append(bits / pixels)
    i_c = torch.from_numpy(np.stack(decoded)).to(frames.device, torch.float32).div(255)
    return i_c, torch.from_numpy(np.stack(rates)).to(frames.device, torch.float32)


def routed(terms: list[tuple[torch.Tensor, list[nn.Parameter]]]) -> torch.Tensor:
    """One scalar for the training loop's backward pass that moves each parameter set by
    its own loss alone.

    Args:
        terms: ``(loss, parameters)`` pairs; parameters that do not require a gradient
            are skipped.

    Returns:
        A scalar whose value is the sum of the losses and whose gradient with respect to
        each listed parameter is the gradient of its own loss (summed when a parameter
        is listed twice) and zero for every other parameter.
    """
    value = torch.zeros((), device=terms[0][0].device)
    surrogate = torch.zeros((), device=value.device)
    for loss, params in terms:
        value = value + loss.detach().float()
        params = [p for p in params if p.requires_grad]
        if not params or not loss.requires_grad:
            continue
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        for p, g in zip(params, grads):
            if g is not None:
                surrogate = surrogate + (p * g.detach()).sum()
    return value + surrogate - surrogate.detach()


def _proxy(model: nn.Module, objective: str) -> nn.Module:
    proxy = getattr(model, "proxy", None)
    if proxy is None:
        raise ConfigError(f"objective {objective} trains the codec proxy: build the model with "
                          "model.overrides.with_proxy: true")
    return proxy


def _check_codec(codec: str, qp: float) -> None:
    if codec not in ("x264", "svtav1", "av1"):
        raise ConfigError(f"codec {codec!r}: the wrapper trains around x264 or svtav1")
    top = 51 if codec == "x264" else 63
    if not 0 <= qp <= top:
        raise ConfigError(f"qp {qp}: {codec} takes 0-{top}")


class ProxyAlignment(Objective):
    """Pre-training of the codec proxy, one phase per run (paper eqs. 1-3, SPECS 3.2.2).

    * ``conventional``: the proxy as an ordinary learned codec, MSE to the source plus
      ``lmbda`` times its rate (uniform-noise quantisation); the "before" model.
    * ``distortion`` (phase 1): analysis and synthesis transforms only, MSE to the real
      codec's decoded frames ``I_C``; no rate term.
    * ``rate`` (phase 2): hyper-networks and priors only, by the likelihood of the now
      fixed latents (mean-shifted rounding), and the calibration ``alpha R + beta`` fitted
      to the codec's real bits of each GOP by squared error.

    Args:
        train: the config's train section.
        phase: one of :data:`PROXY_PHASES`.
        codec, qp, preset: the real codec (:func:`codec_settings`).
        lmbda: rate weight of the conventional phase (bits per luma pixel).

    Raises:
        ConfigError: an unknown phase or codec, or a QP out of range.
    """

    name = "proxy_alignment"
    data_domain = "yuv420"

    def __init__(self, train: TrainSection, phase: str = "distortion", codec: str = "x264", qp: float = 30.0,
                 preset: str = "medium", lmbda: float = 0.002) -> None:
        super().__init__(train)
        if phase not in PROXY_PHASES:
            raise ConfigError(f"proxy_alignment phase {phase!r}: choose one of {', '.join(PROXY_PHASES)}")
        _check_codec(codec, qp)
        self.phase, self.codec, self.qp, self.preset, self.lmbda = phase, codec, float(qp), preset, float(lmbda)

    def setup(self, model: nn.Module) -> None:
        """Freeze everything but the phase's parameters (the wrapper pair always)."""
        proxy = _proxy(model, self.name)
        model.requires_grad_(False)
        if self.phase == "conventional":
            params = proxy.transform_parameters() + proxy.entropy_parameters()
        elif self.phase == "distortion":
            params = proxy.transform_parameters()
        else:
            params = [*proxy.entropy_parameters(), *proxy.calibration_parameters()]
        for p in params:
            p.requires_grad_(True)

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        model = _single_process(net, self.name)
        proxy = _proxy(model, self.name)
        x = batch["gt"]
        gop = to_half_layout(x)
        if self.phase == "conventional":
            rec, rate = proxy(gop, "noise")
            mse = F.mse_loss(rec, gop)
            self.terms = {"mse_source": mse.detach(), "rate_hyp": rate.mean().detach()}
            return mse + self.lmbda * rate.mean()
        i_c, r_c = codec_in_the_loop(x, codec_settings(self.codec, self.qp, self.preset, x.shape[1]))
        if self.phase == "distortion":
            rec, rate = proxy(gop, "noise")
            mse = F.mse_loss(rec, to_half_layout(i_c))
            self.terms = {"mse_codec": mse.detach(), "rate_codec": r_c.mean()}
            return mse
        rec, rate = proxy(gop, "ste")
        calibration = (proxy.calibrate(rate.detach()) - r_c.sum(1)).pow(2).mean()
        self.terms = {"rate_hyp": rate.mean().detach(), "rate_codec": r_c.mean(), "calibration": calibration.detach(),
                      "mse_codec": F.mse_loss(rec, to_half_layout(i_c)).detach()}
        return rate.mean() + calibration

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "phase": self.phase, "codec": self.codec, "qp": self.qp, "preset": self.preset,
                "lmbda": self.lmbda}


def perceptual_distortion(source: torch.Tensor, output: torch.Tensor, l1: float, ssim: float, ms_ssim: float,
                          dlm: float) -> dict[str, torch.Tensor]:
    """Neural wrapping's distortion ``D`` (paper eq. 4 with the DLM term; SPECS 3.6 b, c):
    ``l1 |I_in - I_out|_1`` on all planes (packed) plus ``ssim (1 - SSIM)``,
    ``ms_ssim (1 - MS-SSIM)`` and ``dlm (1 - DLM)`` on Y.

    Args:
        source, output: ``(B, T, 24, H/4, W/4)`` in [0, 1]; luma short side above 160 px
            when ``ms_ssim`` is on.
        l1, ssim, ms_ssim, dlm: the weights (a zero weight skips its term).

    Returns:
        ``{"distortion": D}`` and each weighted term's metric (``l1``, ``ssim``,
        ``ms_ssim``, ``dlm``), scalars.
    """
    terms: dict[str, torch.Tensor] = {"l1": (source - output).abs().mean()}
    d = l1 * terms["l1"]
    y_in, y_out = luma(source).flatten(0, 1), luma(output).flatten(0, 1)
    for name, weight, metric in (("ssim", ssim, ssim_luma), ("ms_ssim", ms_ssim, ms_ssim_y),
                                 ("dlm", dlm, detail_loss_metric)):
        if weight:
            terms[name] = metric(y_out, y_in).mean()
            d = d + weight * (1 - terms[name])
    terms["distortion"] = d
    return terms


class NeuralWrapping(Objective):
    """End-to-end training of the wrapper around the real codec (Algorithm 1, eq. 4, 8).

    Per batch: ``I_P = P(I_in)``; the real codec gives ``I_C`` and ``R_C``; one proxy
    forward gives ``I_M`` and ``R_hyp``; the post-processor reads
    ``sg(I_C - I_M) + I_M`` (value ``I_C``, gradient through ``I_M``); the wrapper's loss
    ``D(I_in, I_out) + lmbda (alpha R_hyp + beta)`` moves ``P`` and ``O`` only. With
    ``refine`` the proxy is re-fitted on the same forward (iterative refinement): its
    transforms by MSE to ``I_C``, its entropy model by ``R_hyp``, ``alpha, beta`` by the
    calibration error; these never move ``P`` or ``O``.

    Args:
        train: the config's train section.
        codec, qp, preset: the real codec (:func:`codec_settings`).
        lmbda: rate weight (rates in bits per luma pixel; the paper's 0.1).
        l1, ssim, ms_ssim, dlm: distortion weights (the paper's 0.1, 0.25, 0.25, 0.2).
        stop_gradient: feed ``O`` the real codec's output (True) or the proxy's (False;
            the ablation of Table 4).
        pre, post: train the pre-processor / post-processor; one off leaves it the
            identity (Table 3's post-only / pre-only).
        refine: iterative refinement of the proxy (False: frozen after pre-training).
        proxy_lr_scale: the proxy's learning rate (iterative refinement) as a multiple of
            the wrapper's (its own optimiser step in the paper; the alignment ran at 1e-3).
        proxy_gradient: what carries the distortion's gradient from ``O``'s input back to
            ``P``: ``ssf`` (the proxy's ``I_M``, the paper) or ``identity`` (``I_C``'s
            gradient passed straight to ``I_P``: a non-learned proxy in the spirit of
            the paper's reference [24], SPECS 3.7 claim 5) or ``transform`` (the gradient of
            the non-learned transform model's reconstruction: through the 4x4 DCT
            coefficients the model codes, :mod:`codecave.models.transform_proxy`; ours).
        rate_gradient: what carries the rate's gradient to ``P``: ``ssf`` (the learned
            proxy's calibrated rate, the paper) or ``transform`` (the real codec's bits as
            the value, with the gradient of the non-learned transform-coding surrogate of
            :mod:`codecave.models.transform_proxy`, scaled by its slope fitted to the real
            bits per picture type; ours). Without ``ssf`` in either the learned proxy is
            not used and the model may be built without it.

    The transform rate's slopes (:class:`~codecave.models.transform_proxy.RateCalibration`)
    are the objective's state, not the checkpoint's: a resumed run refits them from its first
    batch on.

    Raises:
        ConfigError: an unknown codec, a QP out of range, neither network trained, an unknown
            ``proxy_gradient`` or ``rate_gradient``, or a non-learned ``proxy_gradient``
            without ``stop_gradient``.
    """

    name = "neural_wrapping"
    data_domain = "yuv420"

    def __init__(self, train: TrainSection, codec: str = "x264", qp: float = 30.0, preset: str = "medium",
                 lmbda: float = 0.1, l1: float = 0.1, ssim: float = 0.25, ms_ssim: float = 0.25, dlm: float = 0.2,
                 stop_gradient: bool = True, pre: bool = True, post: bool = True, refine: bool = True,
                 proxy_gradient: str = "ssf", proxy_lr_scale: float = 1.0, rate_gradient: str = "ssf") -> None:
        super().__init__(train)
        if rate_gradient not in ("ssf", "transform"):
            raise ConfigError(f"rate_gradient {rate_gradient!r}: use ssf or transform")
        self.rate_gradient = rate_gradient
        self.rate_calibration = RateCalibration()
        if proxy_lr_scale <= 0:
            raise ConfigError(f"proxy_lr_scale {proxy_lr_scale}: must be positive")
        self.proxy_lr_scale = float(proxy_lr_scale)
        _check_codec(codec, qp)
        if proxy_gradient not in ("ssf", "identity", "transform"):
            raise ConfigError(f"proxy_gradient {proxy_gradient!r}: use ssf, identity or transform")
        if proxy_gradient != "ssf" and not stop_gradient:
            raise ConfigError(f"proxy_gradient {proxy_gradient} without stop_gradient would feed O the pre-processed "
                              "or modelled frames instead of the codec's; keep stop_gradient on")
        self.proxy_gradient = proxy_gradient
        if not (pre or post):
            raise ConfigError("neural_wrapping: train the pre-processor, the post-processor or both")
        self.codec, self.qp, self.preset, self.lmbda = codec, float(qp), preset, float(lmbda)
        self.weights = {"l1": float(l1), "ssim": float(ssim), "ms_ssim": float(ms_ssim), "dlm": float(dlm)}
        self.stop_gradient, self.pre, self.post, self.refine = bool(stop_gradient), bool(pre), bool(post), bool(refine)

    def setup(self, model: nn.Module) -> None:
        """Train ``pre`` and ``post`` as asked, and the proxy only with ``refine``."""
        model.pre.requires_grad_(self.pre)
        model.post.requires_grad_(self.post)
        if self.uses_proxy:
            _proxy(model, self.name).requires_grad_(self.refine)
        elif getattr(model, "proxy", None) is not None:
            model.proxy.requires_grad_(False)

    @property
    def uses_proxy(self) -> bool:
        """Whether the learned proxy carries a gradient (and is refitted with ``refine``)."""
        return self.proxy_gradient == "ssf" or self.rate_gradient == "ssf"

    def param_groups(self, model: nn.Module) -> list[dict[str, object]]:
        """The wrapper's parameters, then the proxy's at ``proxy_lr_scale`` times the rate."""
        proxy = getattr(model, "proxy", None)
        if proxy is None:
            return [{"params": list(model.parameters())}]
        own = {id(p) for p in proxy.parameters()}
        return [{"params": [p for p in model.parameters() if id(p) not in own]},
                {"params": list(proxy.parameters()), "lr_scale": self.proxy_lr_scale}]

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        model = _single_process(net, self.name)
        x = batch["gt"]
        i_p = model.preprocess(x) if self.pre else x
        i_c, r_c = codec_in_the_loop(i_p, codec_settings(self.codec, self.qp, self.preset, x.shape[1]))
        if self.uses_proxy:
            proxy = _proxy(model, self.name)
            m_half, r_hyp = proxy(to_half_layout(i_p), "ste")
        # the non-learned model's gradients reach P alone: without P trained it is skipped
        transform = self.pre and "transform" in (self.proxy_gradient, self.rate_gradient)
        if transform:
            coding = transform_code(i_p, i_c, self.qp)
        i_m = {"ssf": lambda: from_half_layout(m_half), "identity": lambda: i_p,
               "transform": lambda: coding.coded if transform else i_p}[self.proxy_gradient]()
        o_in = i_c + (i_m - i_m.detach()) if self.stop_gradient else i_m  # value I_C exactly
        i_out = model(o_in) if self.post else o_in
        d = perceptual_distortion(x, i_out, **self.weights)
        extra: dict[str, torch.Tensor] = {}
        if self.rate_gradient == "ssf":
            rate = proxy.calibrate(r_hyp).mean()  # of the GOP, summed over its frames (SPECS 3.6 d)
        elif not transform:
            rate = r_c.sum(1).mean()
        else:  # the codec's real bits of the GOP, with the surrogate's gradient (as eq. 8 for I_C)
            surrogate = coding.surrogate
            slopes = self.rate_calibration.update(surrogate, r_c)
            rate = (r_c.sum(1) + (slopes * (surrogate - surrogate.detach())).sum(1)).mean()
            extra = {"surrogate": surrogate.detach().mean(), "slope_intra": slopes[0], "slope_inter": slopes[-1]}
        wrapper = [p for part, on in ((model.pre, self.pre), (model.post, self.post)) if on for p in part.parameters()]
        terms = [(d["distortion"] + self.lmbda * rate, wrapper)]
        if self.uses_proxy:
            proxy_mse = F.mse_loss(m_half, to_half_layout(i_c))
            proxy_calibration = (proxy.calibrate(r_hyp.detach()) - r_c.sum(1)).pow(2).mean()
            if self.refine:
                terms += [(proxy_mse, proxy.transform_parameters()), (r_hyp.mean(), proxy.entropy_parameters()),
                          (proxy_calibration, proxy.calibration_parameters())]
            extra = {**extra, "proxy_mse": proxy_mse.detach(), "calibration": proxy_calibration.detach()}
        rate_key = "rate_proxy" if self.rate_gradient == "ssf" else "rate_gop"  # the codec's bits of the GOP
        self.terms = {**{k: v.detach() for k, v in d.items()}, rate_key: rate.detach(),
                      "rate_codec": r_c.mean(), **extra}
        return routed(terms)

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "codec": self.codec, "qp": self.qp, "preset": self.preset, "lmbda": self.lmbda,
                **self.weights, "stop_gradient": self.stop_gradient, "pre": self.pre, "post": self.post,
                "refine": self.refine, "proxy_gradient": self.proxy_gradient, "proxy_lr_scale": self.proxy_lr_scale,
                "rate_gradient": self.rate_gradient}


__all__ = ["PROXY_PHASES", "NeuralWrapping", "ProxyAlignment", "codec_in_the_loop", "codec_settings",
           "perceptual_distortion", "routed"]
