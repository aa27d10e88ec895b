"""Objectives: what one training batch costs, for each method (design section 5).

The training loop (:mod:`codecave.engine.trainer`) is the same for every method; an
objective says which data it takes and computes the loss of a batch, with any stage
logic of its own. A config names its objective (``objective.name``) and gives its
``settings``; the loop's own settings (loss function, rounding, precision) stay in
``train``.

* ``restoration``: the output (and, with ``train.stage_weight``, the intermediate stage
  a model returns with ``return_stages=True``) against the ground truth; PnP-VCVE.
* ``recurrent_luma``: a recurrent luma model (VIG) run over a whole window of ``T``
  frames from the first, conditioned on the sequence QP, every output scored; the
  fine-tuning stage of VIG.
* ``truth_guidance``: VIG's truth-guidance distillation (TGD) pre-training: each input
  frame is mostly ground truth, with a ``compressed_ratio`` share of its ``w x w``
  patches taken from the compressed frame, and only those patches are scored; ``w``
  steps through ``patch_sizes`` in equal parts of the schedule (paper section 3.3:
  90% ground truth, ``w`` 32 -> 16 -> 8 -> 4).
* ``compression_ranking``: CAVSR's first stage: its compression encoder and ranker head
  alone, trained with the pairwise margin ranking loss (paper eq. 1) on pairs of decoded
  frames that differ in CRF or in frame type (:class:`codecave.data.ranking.RankingPairs`).
* ``super_resolution``: CAVSR's second stage: the compression encoder frozen (weights
  and batch-normalisation statistics), the rest trained on ``--scale 4`` windows, every
  output frame scored against the high-resolution ground truth.
* ``ldr_pretraining``: CRDS's latent degradation-residual auto-encoder alone, on pairs of a
  compressed frame and a blend of it with the original (paper eq. 12).
* ``progressive_denoising``: CRDS's main training: the final output (Charbonnier) plus the
  intermediate estimates against the progressive hybrid targets (L2), the pre-trained
  encoder frozen at the start (paper sections 3.3 and 4.1).
* ``proxy_alignment`` and ``neural_wrapping`` (in :mod:`codecave.engine.wrapping`): neural
  wrapping's codec proxy, fitted to the real codec phase by phase, and the end-to-end
  training of the pre- and post-processor through it, the real codec in the loop.

An objective also says what a training example is (:meth:`Objective.dataset`) and
what is frozen (:meth:`Objective.setup`).
"""

from __future__ import annotations

import inspect

import torch
from torch import nn
from torch.utils.data import Dataset

from codecave.engine.config import TrainConfig, TrainSection
from codecave.errors import ConfigError
from codecave.grid import luma
from codecave.losses import elementwise_loss, round_8bit, training_loss


class Objective:
    """The loss of one batch.

    Attributes:
        data_domain: the batches it takes (``yuv420`` or ``rgb``), or None for the
            model's own domain.
    """

    name = "objective"
    data_domain: str | None = None

    def __init__(self, train: TrainSection) -> None:
        self.train = train
        #: Named parts of the last batch's loss (detached scalars), logged beside it.
        self.terms: dict[str, torch.Tensor] = {}

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        """The scalar loss of ``batch`` at optimiser step ``step`` (0-based)."""
        raise NotImplementedError

    def setup(self, model: nn.Module) -> None:
        """Stage logic on the model before training starts (freezing parts); none by default."""

    def param_groups(self, model: nn.Module) -> list[dict[str, object]]:
        """The optimiser's parameter groups: one by default. A group may carry ``lr_scale``:
        its learning rate is the schedule's times that."""
        return [{"params": list(model.parameters())}]

    def dataset(self, cfg: TrainConfig, length: int, model: nn.Module) -> Dataset:
        """The training examples: random windows of the prepared dataset ``cfg.data.root``
        (:class:`~codecave.data.dataset.PreparedWindows`), at the model's scale.

        Raises:
            DatasetError: the dataset does not fit (domain, rate points, scale).
        """
        from codecave.data.dataset import PreparedWindows

        return PreparedWindows(cfg.data.root, cfg.data.window_spec(), length=length, seed=cfg.train.seed,
                               scale=int(getattr(model, "scale", 1)))

    def describe(self) -> dict[str, object]:
        """Name and settings, for logs."""
        return {"name": self.name}


class Restoration(Objective):
    """Output (after 8-bit rounding with ``train.round_output``) against the ground truth,
    plus ``train.stage_weight`` times the intermediate stage's loss (PnP-VCVE's CAA output)."""

    name = "restoration"

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        t = self.train
        x_hat, x_stage = net(batch["frames"], batch, return_stages=True)
        loss = training_loss(t.loss, round_8bit(x_hat.float()) if t.round_output else x_hat, batch["gt"])
        if t.stage_weight:
            loss = loss + t.stage_weight * training_loss(t.loss, x_stage, batch["gt"])
        return loss


class RecurrentLuma(Objective):
    """A recurrent luma model over whole windows: ``net(clip (B, T, 1, H, W), qp (B,))``
    on the Y planes of packed 4:2:0 windows, every frame's output scored (VIG fine-tuning)."""

    name = "recurrent_luma"
    data_domain = "yuv420"

    @staticmethod
    def clips(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(compressed, ground truth)`` luma ``(B, T, 1, H, W)`` and the sequence QP ``(B,)``."""
        return luma(batch["frames"])[:, :, None], luma(batch["gt"])[:, :, None], batch["crf"].float()

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        t = self.train
        frames, gt, qp = self.clips(batch)
        out = net(frames, qp)
        return training_loss(t.loss, round_8bit(out.float()) if t.round_output else out, gt)


def truth_guidance_mask(shape: tuple[int, ...], patch: int, ratio: float, generator: torch.Generator,
                        device: torch.device | str = "cpu") -> torch.Tensor:
    """Which pixels of each frame come from the compressed frame in TGD pre-training.

    Args:
        shape: ``(B, T, H, W)``; ``H`` and ``W`` multiples of ``patch``.
        patch: the patch side ``w`` in pixels.
        ratio: share of each frame's patches taken compressed: exactly
            ``max(1, round(ratio * patches))`` of them, chosen at random.
        generator: the random source (a CPU generator; seeded by step for exact resume).

    Returns:
        ``(B, T, 1, H, W)`` float mask, 1 on compressed patches, constant on each ``w x w`` patch.

    Raises:
        ValueError: a side not a multiple of ``patch``, or a ratio outside (0, 1].
    """
    b, t, h, w = shape
    if h % patch or w % patch:
        raise ValueError(f"TGD patches of {patch} px do not tile {w}x{h} frames")
    if not 0 < ratio <= 1:
        raise ValueError(f"compressed_ratio {ratio} must be in (0, 1]")
    gh, gw = h // patch, w // patch
    count = max(1, round(ratio * gh * gw))
    order = torch.rand(b * t, gh * gw, generator=generator).argsort(dim=1)
    chosen = torch.zeros(b * t, gh * gw)
    chosen.scatter_(1, order[:, :count], 1.0)
    mask = chosen.reshape(b, t, 1, gh, 1, gw, 1).expand(b, t, 1, gh, patch, gw, patch)
    return mask.reshape(b, t, 1, h, w).to(device)


class TruthGuidance(RecurrentLuma):
    """VIG's truth-guidance distillation pre-training (see the module)."""

    name = "truth_guidance"

    def __init__(self, train: TrainSection, compressed_ratio: float = 0.1,
                 patch_sizes: tuple[int, ...] | list[int] = (32, 16, 8, 4)) -> None:
        super().__init__(train)
        if not 0 < compressed_ratio <= 1:
            raise ConfigError(f"objective.settings.compressed_ratio {compressed_ratio} must be in (0, 1]")
        if not patch_sizes or any(int(p) < 1 for p in patch_sizes):
            raise ConfigError(f"objective.settings.patch_sizes {patch_sizes} must be positive sizes")
        self.compressed_ratio = float(compressed_ratio)
        self.patch_sizes = tuple(int(p) for p in patch_sizes)

    def patch_at(self, step: int) -> int:
        """The patch side at ``step``: ``patch_sizes`` in equal parts of ``train.steps``."""
        k = min(len(self.patch_sizes) - 1, step * len(self.patch_sizes) // self.train.steps)
        return self.patch_sizes[k]

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        frames, gt, qp = self.clips(batch)
        generator = torch.Generator().manual_seed(self.train.seed * 1_000_003 + step)
        b, t, _, h, w = frames.shape
        mask = truth_guidance_mask((b, t, h, w), self.patch_at(step), self.compressed_ratio, generator,
                                   frames.device)
        out = net(torch.lerp(gt, frames, mask), qp)
        per_pixel = elementwise_loss(self.train.loss, out, gt)
        return (per_pixel * mask).sum() / mask.sum()

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "compressed_ratio": self.compressed_ratio, "patch_sizes": list(self.patch_sizes)}


class CompressionRanking(Objective):
    """CAVSR stage 1: the compression encoder and ranker on ranking pairs, eq. 1 (see the module).

    Args:
        train: the config's train section.
        margin: ``xi`` of eq. 1 (0.5 in the paper).
        type_share: share of frame-type (I/P/B) pairs; the rest are CRF pairs. 0 trains on
            CRF pairs only (paper Table 3, row 8).
        reach: frames apart the two frames of a frame-type pair may be.
    """

    name = "compression_ranking"
    data_domain = "rgb"

    def __init__(self, train: TrainSection, margin: float = 0.5, type_share: float = 0.5, reach: int = 3) -> None:
        super().__init__(train)
        if margin < 0 or not 0 <= type_share <= 1 or reach < 1:
            raise ConfigError(f"compression_ranking: margin {margin} must be >= 0, type_share {type_share} "
                              f"in [0, 1], reach {reach} >= 1")
        self.margin, self.type_share, self.reach = float(margin), float(type_share), int(reach)

    def dataset(self, cfg: TrainConfig, length: int, model: nn.Module) -> Dataset:
        from codecave.data.ranking import RankingPairs

        variants = _rate_points(cfg)
        return RankingPairs(cfg.data.root, cfg.data.crop, length, seed=cfg.train.seed, variants=variants,
                            type_share=self.type_share, reach=self.reach, augment=cfg.data.augment)

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        encoder = _unwrap(net).compression_encoder
        scores = encoder.score(batch["frames"].flatten(0, 1), batch["frame_type"].flatten()).float()
        scores = scores.view(-1, 2)
        from codecave.models.cavsr import ranking_loss

        return ranking_loss(scores[:, 0], scores[:, 1], batch["order"], self.margin)

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "margin": self.margin, "type_share": self.type_share, "reach": self.reach}


class CompressionContrast(Objective):
    """The contrastive alternative to the ranking loss (paper Table 3, "CL"; DASR's
    degradation-aware contrastive learning): two crops of one frame at one CRF are a
    positive pair, every other crop of the batch a negative (InfoNCE with in-batch
    negatives instead of DASR's queue), on the encoder's pooled representation projected
    by the ranker head's hidden layers and normalised.

    Args:
        train: the config's train section.
        temperature: of the InfoNCE softmax (DASR: 0.07).
    """

    name = "compression_contrast"

    data_domain = "rgb"

    def __init__(self, train: TrainSection, temperature: float = 0.07) -> None:
        super().__init__(train)
        if temperature <= 0:
            raise ConfigError(f"compression_contrast: temperature {temperature} must be positive")
        self.temperature = float(temperature)

    def dataset(self, cfg: TrainConfig, length: int, model: nn.Module) -> Dataset:
        from codecave.data.ranking import CompressionViews

        variants = _rate_points(cfg)
        return CompressionViews(cfg.data.root, cfg.data.crop, length, seed=cfg.train.seed, variants=variants,
                                augment=cfg.data.augment)

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        encoder = _unwrap(net).compression_encoder
        pooled = encoder.features(batch["frames"].flatten(0, 1), batch["frame_type"].flatten()).mean(dim=(-2, -1))
        z = torch.nn.functional.normalize(encoder.ranker[:-1](pooled).float(), dim=1)
        n = z.shape[0] // 2
        logits = z @ z.t() / self.temperature
        logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
        partner = torch.arange(2 * n, device=z.device) ^ 1  # views 2k and 2k+1 are a pair
        return torch.nn.functional.cross_entropy(logits, partner)

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "temperature": self.temperature}


class SuperResolution(Objective):
    """CAVSR stage 2: every output frame ``(B, T, 3, 4h, 4w)`` against the high-resolution
    ground truth (``train.loss``, Charbonnier in the paper), the compression encoder frozen."""

    name = "super_resolution"
    data_domain = "rgb"

    def setup(self, model: nn.Module) -> None:
        freeze = getattr(model, "freeze_compression_encoder", None)
        if freeze is not None:
            freeze()

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        out = net(batch["frames"], batch)
        t = self.train
        return training_loss(t.loss, round_8bit(out.float()) if t.round_output else out, batch["gt"])


class LDRPretraining(RecurrentLuma):
    """CRDS's latent degradation-residual auto-encoder alone (paper eq. 12, SPECS 1.2.2): every
    frame of a window is a pair (compressed ``x_hat``, blend ``x~ = alpha x_hat + (1 - alpha) x``)
    with ``alpha`` drawn from 0, .25, .5, .75 (from the step number, so a resumed run draws the
    same); the decoder's residual ``D(E(x_hat), E(x~))`` should be ``x~ - x_hat``, its squared
    error weighted by ``1 / (alpha + 0.25)``."""

    name = "ldr_pretraining"

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        from codecave.models.crds import LEVELS, ldr_weight

        frames, gt, _ = self.clips(batch)
        x_hat, x = frames.flatten(0, 1), gt.flatten(0, 1)  # (N, 1, H, W)
        generator = torch.Generator().manual_seed(self.train.seed * 1_000_003 + step)
        alpha = (torch.randint(0, LEVELS, (x.shape[0],), generator=generator) / LEVELS).to(x.device)
        x_blend = torch.lerp(x, x_hat, alpha.view(-1, 1, 1, 1))
        model = _single_process(net, self.name)
        residual = model.decoder(model.encoder(x_hat), model.encoder(x_blend))
        per_frame = (residual.float() + x_hat - x_blend).square().mean(dim=(1, 2, 3))
        return (per_frame * ldr_weight(alpha)).mean()


class ProgressiveDenoising(RecurrentLuma):
    """CRDS's main training (paper sections 3.3 and 4.1, SPECS 1.2.3 and 1.3): the whole network on luma
    windows, ``train.loss`` (Charbonnier in the paper) on the output, plus, while
    ``intermediate_weight`` is on, L2 of the estimates after blocks 4, 3, 2 against the
    progressive hybrid targets (alpha 0.75, 0.5, 0.25); the LDR encoder frozen for the first
    ``encoder_frozen`` share of ``train.steps`` (the pre-trained start).

    Args:
        train: the config's train section.
        encoder_frozen: share of the steps with the LDR encoder frozen (0: never).
        intermediate_weight: weight of the intermediate supervision (0: the final loss only,
            the paper's last stage).
    """

    name = "progressive_denoising"

    def __init__(self, train: TrainSection, encoder_frozen: float = 0.0, intermediate_weight: float = 1.0) -> None:
        super().__init__(train)
        if not 0 <= encoder_frozen <= 1 or intermediate_weight < 0:
            raise ConfigError(f"progressive_denoising: encoder_frozen {encoder_frozen} must be in [0, 1] and "
                              f"intermediate_weight {intermediate_weight} >= 0")
        self.encoder_frozen, self.intermediate_weight = float(encoder_frozen), float(intermediate_weight)

    def loss(self, net: nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        from codecave.models.crds import progressive_targets

        model = _single_process(net, self.name)
        frozen = step < self.encoder_frozen * self.train.steps
        for p in model.encoder.parameters():
            p.requires_grad_(not frozen)
        frames, gt, _ = self.clips(batch)
        codec_motion = None
        if model.config.motion == "codec":
            codec_motion = {-1: batch["mv_past"], 1: batch["mv_future"]}
        out, stages = net(frames, codec_motion, return_stages=True) if self.intermediate_weight else (
            net(frames, codec_motion), [])
        t = self.train
        loss = training_loss(t.loss, round_8bit(out.float()) if t.round_output else out, gt)
        if self.intermediate_weight:
            for stage, target in zip(stages, progressive_targets(frames, gt)):
                loss = loss + self.intermediate_weight * training_loss("mse", stage, target)
        return loss

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "encoder_frozen": self.encoder_frozen,
                "intermediate_weight": self.intermediate_weight}


def _rate_points(cfg: TrainConfig) -> tuple[str, ...]:
    """The rate points a recipe draws from: its compressed ones, then the lossless one if any."""
    lossless = (cfg.data.lossless,) if cfg.data.lossless else ()
    return tuple(dict.fromkeys((*cfg.data.compressed, *lossless)))


def _single_process(net: nn.Module, objective: str) -> nn.Module:
    """The model inside ``net``, for objectives that call its parts directly or switch what is
    frozen as they go, which DistributedDataParallel does not follow.

    Raises:
        ConfigError: ``net`` is distributed.
    """
    if isinstance(net, nn.parallel.DistributedDataParallel):
        raise ConfigError(f"objective {objective} trains in one process only; run it without torchrun")
    return _unwrap(net)


def _unwrap(net: nn.Module) -> nn.Module:
    """The model inside a compiled or distributed wrapper."""
    net = getattr(net, "_orig_mod", net)
    return getattr(net, "module", net)


#: Objectives by the name configs give.
OBJECTIVES: dict[str, type[Objective]] = {o.name: o for o in (Restoration, RecurrentLuma, TruthGuidance,
                                                             CompressionRanking, CompressionContrast,
                                                             SuperResolution, LDRPretraining,
                                                             ProgressiveDenoising)}


def all_objectives() -> dict[str, type[Objective]]:
    """Every objective by name: :data:`OBJECTIVES` and neural wrapping's
    (:mod:`codecave.engine.wrapping`, which builds on this module)."""
    from codecave.engine.wrapping import NeuralWrapping, ProxyAlignment

    return {**OBJECTIVES, NeuralWrapping.name: NeuralWrapping, ProxyAlignment.name: ProxyAlignment}


def build_objective(cfg: TrainConfig) -> Objective:
    """The objective a config names, with its settings.

    Raises:
        ConfigError: an unknown objective or setting, or a bad value.
    """
    name, settings = cfg.objective.name, dict(cfg.objective.settings)
    known_objectives = all_objectives()
    if name not in known_objectives:
        raise ConfigError(f"objective.name {name!r}: choose one of {', '.join(sorted(known_objectives))}")
    cls = known_objectives[name]
    known = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "train")]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ConfigError(f"objective {name}: unknown setting(s) {unknown}; known: {known}")
    objective = cls(cfg.train, **settings)
    if isinstance(objective, TruthGuidance) and cfg.data.crop % max(objective.patch_sizes):
        raise ConfigError(f"data.crop {cfg.data.crop} must be a multiple of every TGD patch size "
                          f"{list(objective.patch_sizes)}")
    return objective


__all__ = ["OBJECTIVES", "CompressionContrast", "CompressionRanking", "LDRPretraining", "Objective",
           "ProgressiveDenoising", "RecurrentLuma", "Restoration", "SuperResolution", "TruthGuidance", "all_objectives", "build_objective", "truth_guidance_mask"]
