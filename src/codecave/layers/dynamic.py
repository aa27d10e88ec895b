"""Expert mixing and dynamic transfer (PnP-VCVE's compression-aware adaptation).

Zeng et al., "Plug-and-Play Versatile Compressed Video Enhancement", CVPR 2025,
section 3.2: a layer holds ``N`` experts of the same shape; a sequence-wise weight
generator turns the sequence CRF into mixing weights for the experts' parameters
(so one mixed convolution runs, not ``N``), and a frame-wise parameter generator
turns the frame QP (or the slice type when QP is absent) into auxiliary parameters
that re-weight the mixed layer per frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Largest H.264 QP / CRF: inputs to the generators are divided by it.
QP_RANGE = 51.0
#: Width of :func:`frame_code`.
FRAME_CODE_DIM = 5


def frame_code(qp: torch.Tensor, frame_type: torch.Tensor) -> torch.Tensor:
    """Describe each frame for the frame-wise generator.

    Args:
        qp: ``(B, T)`` frame QP, NaN where unknown (or to force slice-type mode).
        frame_type: ``(B, T)`` int64, 0 = I, 1 = P, 2 = B.

    Returns:
        ``(B, T, 5)``: ``[qp / 51, 1, 0, 0, 0]`` where QP is known, else
        ``[0, 0, one-hot slice type]``.
    """
    known = torch.isfinite(qp)
    qp_n = torch.where(known, qp, torch.zeros_like(qp)) / QP_RANGE
    one_hot = F.one_hot(frame_type.clamp(0, 2), 3).to(qp_n.dtype)
    k = known.to(qp_n.dtype).unsqueeze(-1)
    return torch.cat([qp_n.unsqueeze(-1) * k, k, one_hot * (1 - k)], dim=-1)


class SequenceWeightGenerator(nn.Module):
    """Two fully connected layers and a softmax: sequence CRF -> expert weights.

    Args:
        n_experts: number of experts ``N``.
        hidden: width of the hidden layer.
    """

    def __init__(self, n_experts: int, hidden: int = 32) -> None:
        super().__init__()
        self.fc1 = nn.Linear(1, hidden)
        self.fc2 = nn.Linear(hidden, n_experts)

    def forward(self, crf: torch.Tensor) -> torch.Tensor:
        """``crf (B,)`` -> mixing weights ``(B, N)`` that sum to one."""
        h = F.relu(self.fc1(crf.view(-1, 1) / QP_RANGE))
        return torch.softmax(self.fc2(h), dim=-1)


class FrameParameterGenerator(nn.Module):
    """Two fully connected layers and a sigmoid: frame code -> per-channel scales.

    The sigmoid output is doubled so that an untrained generator starts near 1
    (the mixed layer unchanged).

    Args:
        channels: number of auxiliary parameters (output channels of all adapted layers).
        hidden: width of the hidden layer.
    """

    def __init__(self, channels: int, hidden: int = 32) -> None:
        super().__init__()
        self.fc1 = nn.Linear(FRAME_CODE_DIM, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        """``code (B, T, 5)`` -> scales ``(B, T, channels)`` in (0, 2)."""
        return 2.0 * torch.sigmoid(self.fc2(F.relu(self.fc1(code))))


class ExpertConv2d(nn.Module):
    """A convolution with ``N`` experts mixed by per-sequence weights.

    Args:
        in_channels, out_channels, kernel_size: as for ``nn.Conv2d`` (odd kernel, same padding).
        n_experts: number of experts; 1 makes it a plain convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, n_experts: int = 6) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.empty(n_experts, out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(n_experts, out_channels))
        self.reset_parameters()

    def reset_parameters(self, noise: float = 0.01) -> None:
        """He-initialise one kernel and give every expert that kernel plus a little noise.

        Independently drawn experts would average towards zero under the softmax
        mixture (the mixed kernel's scale falls by about ``sqrt(N)``), which starves
        the network of signal early in training; shared starting kernels keep the
        mixed layer at He scale, and the noise lets the experts drift apart.
        """
        with torch.no_grad():
            base = torch.empty_like(self.weight[0])
            nn.init.kaiming_normal_(base, nonlinearity="relu")
            self.weight.copy_(base + noise * torch.randn_like(self.weight))
            self.bias.zero_()

    @property
    def n_experts(self) -> int:
        return self.weight.shape[0]

    def mix(self, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixed layer per sequence: ``alpha (B, N)`` -> weight ``(B, O, I, k, k)``, bias ``(B, O)``."""
        weight = torch.einsum("bn,noikl->boikl", alpha, self.weight)
        return weight, alpha @ self.bias

    def forward(self, x: torch.Tensor, mixed: tuple[torch.Tensor, torch.Tensor],
                scale: torch.Tensor | None = None) -> torch.Tensor:
        """Run the mixed convolution once for all frames of each sequence.

        Args:
            x: ``(B, T, I, H, W)`` input.
            mixed: output of :meth:`mix` for the same ``B`` sequences.
            scale: ``(B, T, O)`` frame-wise re-weighting of the mixed layer, or None.

        Returns:
            ``(B, T, O, H, W)``.
        """
        b, t, c, h, w = x.shape
        weight, bias = mixed
        if b == 1:
            y = F.conv2d(x[0], weight[0], bias[0], padding=self.padding).unsqueeze(0)
        else:
            xg = x.transpose(0, 1).reshape(t, b * c, h, w)
            y = F.conv2d(xg, weight.reshape(b * self.out_channels, c, *weight.shape[-2:]),
                         bias.reshape(-1), padding=self.padding, groups=b)
            y = y.view(t, b, self.out_channels, h, w).transpose(0, 1)
        if scale is not None:
            # Scaling the mixed layer's output channels per frame equals scaling its
            # weights and bias per frame (dynamic transfer), at no extra convolution.
            y = y * scale[..., None, None]
        return y
