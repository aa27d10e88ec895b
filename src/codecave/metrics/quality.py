"""PSNR and SSIM on Y: the Y plane of YUV 4:2:0 pictures, or Y computed from RGB.

* YUV models and datasets are scored on the Y plane of the YUV file itself (the
  convention of MFQE, STDF and the PowerQE benchmarks), with PSNR-YUV weighted 6:1:1
  (the video-coding convention) beside it: :func:`psnr_plane`, :func:`ssim_plane`,
  :func:`psnr_yuv_packed`.
* RGB models and datasets are scored on Y computed as MATLAB's ``rgb2ycbcr`` does:
  ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` for RGB in [0, 1], giving Y in
  [16, 235], with a peak of 255 (:func:`psnr_y`, :func:`ssim_y`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_Y_WEIGHTS = (65.481, 128.553, 24.966)


def rgb_to_y(rgb: torch.Tensor) -> torch.Tensor:
    """``(..., 3, H, W)`` RGB in [0, 1] -> ``(..., 1, H, W)`` BT.601 Y in [16, 235]."""
    w = torch.tensor(_Y_WEIGHTS, dtype=torch.float64, device=rgb.device).view(3, 1, 1)
    return 16.0 + (rgb.double() * w).sum(dim=-3, keepdim=True)


def psnr_y(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """PSNR in dB on Y, per picture.

    Args:
        x, ref: ``(..., 3, H, W)`` RGB in [0, 1] (quantise to 8 bit first to match
            what a decoder would show).

    Returns:
        ``(...)`` PSNR; ``inf`` for identical pictures.
    """
    mse = (rgb_to_y(x) - rgb_to_y(ref)).pow(2).mean(dim=(-3, -2, -1))
    return 10.0 * torch.log10(255.0**2 / mse)


def psnr_plane(x: torch.Tensor, ref: torch.Tensor, peak: float = 255.0) -> torch.Tensor:
    """PSNR in dB of sample planes, per picture.

    Args:
        x, ref: ``(..., H, W)`` sample codes (e.g. a Y plane, 0..255 for 8 bits).
        peak: largest code (255 for 8 bits, 1023 for 10).

    Returns:
        ``(...)`` PSNR; ``inf`` for identical planes.
    """
    mse = (x.double() - ref.double()).pow(2).mean(dim=(-2, -1))
    return 10.0 * torch.log10(peak**2 / mse)


def psnr_yuv_packed(x: torch.Tensor, ref: torch.Tensor, peak: float = 255.0) -> dict[str, torch.Tensor]:
    """PSNR of Y, U, V and PSNR-YUV ``(6 Y + U + V) / 8`` of packed 4:2:0 pictures.

    Args:
        x, ref: ``(..., 24, h, w)`` packed codes (:func:`codecave.grid.pack_planes`).
        peak: largest code.

    Returns:
        ``psnr_y``, ``psnr_u``, ``psnr_v``, ``psnr_yuv``, each ``(...)``.
    """
    from codecave.grid import unpack

    (ya, ua, va), (yb, ub, vb) = unpack(x), unpack(ref)
    out = {"psnr_y": psnr_plane(ya, yb, peak), "psnr_u": psnr_plane(ua, ub, peak), "psnr_v": psnr_plane(va, vb, peak)}
    out["psnr_yuv"] = (6 * out["psnr_y"] + out["psnr_u"] + out["psnr_v"]) / 8
    return out


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _window_mean(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Gaussian-weighted means over the valid 11x11 windows of ``(N, 1, H, W)``, as two 1-D passes.

    The 2-D window is separable; a single 11x11 float64 convolution runs through im2col on
    CPU, whose buffer is 121 times the picture (about 1 GB for one 1200x800 frame).
    """
    k = g.numel()
    return F.conv2d(F.conv2d(x, g.view(1, 1, k, 1)), g.view(1, 1, 1, k))


def ssim_y(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """SSIM on Y (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03),
    averaged over the valid window positions.

    Args:
        x, ref: ``(..., 3, H, W)`` RGB in [0, 1].

    Returns:
        ``(...)`` SSIM.
    """
    return ssim_plane(rgb_to_y(x)[..., 0, :, :], rgb_to_y(ref)[..., 0, :, :])


def ssim_plane(x: torch.Tensor, ref: torch.Tensor, peak: float = 255.0) -> torch.Tensor:
    """SSIM of sample planes (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5,
    K1 0.01, K2 0.03), averaged over the valid window positions.

    Args:
        x, ref: ``(..., H, W)`` sample codes.
        peak: largest code (the dynamic range ``L``).

    Returns:
        ``(...)`` SSIM.
    """
    lead = x.shape[:-2]
    xs = x.reshape(-1, 1, *x.shape[-2:])
    refs = ref.reshape(-1, 1, *x.shape[-2:])
    g = _gaussian_1d().to(x.device)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    out = torch.empty(xs.shape[0], dtype=torch.float64, device=x.device)
    for i in range(xs.shape[0]):  # one picture at a time: memory does not grow with the clip
        a, b = xs[i : i + 1].double(), refs[i : i + 1].double()
        mu_a, mu_b = _window_mean(a, g), _window_mean(b, g)
        var_a = _window_mean(a * a, g) - mu_a**2
        var_b = _window_mean(b * b, g) - mu_b**2
        cov = _window_mean(a * b, g) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
        out[i] = s.mean()
    return out.reshape(lead)


def mean_finite(values: list[float]) -> float:
    """Mean of the finite values (PSNR of identical frames is infinite); NaN if none."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")
