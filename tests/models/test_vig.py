"""VIG's compressed redundancy filtering network: shapes, gradients, streaming = whole clip."""

from __future__ import annotations

import pytest
import torch

from codecave.models.vig import FUTURE, VARIANTS, VIG, VIGStream, count


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_shapes_and_gradients_reach_every_parameter(variant: str) -> None:
    torch.manual_seed(0)
    model = VIG(VARIANTS[variant])
    clip = torch.rand(2, 5, 1, 16, 24, requires_grad=True)
    out = model(clip)
    assert out.shape == clip.shape
    assert torch.equal(out, clip)  # the fusion layer starts at zero: the identity
    torch.nn.init.normal_(model.fusion.weight, std=0.01)
    model(clip).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing, missing
    assert clip.grad is not None and clip.grad.abs().sum() > 0


def test_small_is_about_half_a_million_parameters() -> None:
    assert 400_000 < count("small") < 600_000
    assert count("paper") > 3 * count("small")


def test_streaming_equals_the_whole_clip_and_holds_four_frames() -> None:
    torch.manual_seed(1)
    model = VIG(VARIANTS["small"]).eval()
    torch.nn.init.normal_(model.fusion.weight, std=0.05)
    clip = torch.rand(1, 9, 1, 16, 20)
    with torch.no_grad():
        whole = model(clip)
        stream = VIGStream(model)
        out = []
        for t in range(clip.shape[1]):
            y = stream.push(clip[:, t])
            assert len(stream.frames) <= FUTURE + 1
            if y is not None:
                out.append(y)
        out += stream.flush()
    assert len(out) == clip.shape[1]
    torch.testing.assert_close(torch.stack(out, dim=1), whole, rtol=0, atol=1e-6)


def test_refuses_sizes_off_the_grid() -> None:
    with pytest.raises(ValueError, match="multiples of 4"):
        VIG().step(torch.rand(1, 4, 1, 18, 24))
