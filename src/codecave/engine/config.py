"""Training configs: YAML files parsed into frozen, validated dataclasses.

A config has sections ``model``, ``data``, ``train``, an optional ``objective``
(default: ``restoration``) and ``name``/``out``; unknown keys and wrong types are errors that name the key.
The resolved config is written next to every checkpoint (``config.yaml``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from codecave.data.dataset import WindowSpec
from codecave.errors import ConfigError

#: Training losses (``train.loss``).
LOSSES = ("charbonnier", "l1", "mse")
#: Training precisions (``train.precision``).
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class ModelSection:
    """Which model to train.

    Attributes:
        name: registered model name.
        variant: ``small`` or ``paper``.
        overrides: architecture fields to change (ablations), e.g. ``{mv_align: false}``.
    """

    name: str = "pnp_vcve"
    variant: str = "small"
    overrides: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSection:
    """Training data: a prepared dataset and how windows are drawn from it.

    Attributes:
        root: prepared dataset folder (``codecave prepare ... --crf 0,15,25,35``);
            relative paths are taken from the working directory.
        frames, crop, compressed, lossless, lossless_prob, qp_dropout, augment:
            see :class:`codecave.data.dataset.WindowSpec`.
        workers: data-loader processes.
        packed: a pack of training windows (:func:`codecave.data.packed.pack_dataset`)
            to draw batches from on the training device instead of ``root``
            (``scripts/gpu_train.py``); empty = read ``root``.
    """

    root: str = "data/train"
    frames: int = WindowSpec.frames
    crop: int = WindowSpec.crop
    compressed: tuple[str, ...] = WindowSpec.compressed
    lossless: str = WindowSpec.lossless
    lossless_prob: float = WindowSpec.lossless_prob
    qp_dropout: float = WindowSpec.qp_dropout
    augment: bool = WindowSpec.augment
    workers: int = 0
    packed: str = ""

    def window_spec(self) -> WindowSpec:
        """The dataset's window settings."""
        return WindowSpec(**{f.name: getattr(self, f.name) for f in dataclasses.fields(WindowSpec)})


@dataclass(frozen=True)
class TrainSection:
    """Optimisation.

    Attributes:
        steps: total optimiser steps (the cosine schedule spans them).
        batch_size: samples per step and process.
        lr, min_lr: cosine schedule from ``lr`` down to ``min_lr``.
        betas: Adam betas.
        grad_clip: maximum gradient norm (0 = off).
        stage_weight: weight of the loss on the intermediate (CAA) output.
        round_output: score the final output after rounding it to 8 bits, as
            ``codecave enhance`` and ``codecave evaluate`` store it (straight-through
            gradient). On high-quality inputs the rounding costs about as much as the
            model gains (``benchmarks/rounding_cost.py``); a 300-step fine-tune of
            the shipped model with it did not recover that (see the README).
        seed: seed for initialisation and sampling.
        checkpoint_every: steps between checkpoints.
        snapshot_every: also keep the weights at every multiple of this many steps, as
            ``snapshots/step{N}.safetensors`` in the run folder (learning curves against
            steps); 0 = none.
        log_every: steps between log lines and TensorBoard scalars.
        max_minutes: stop (with a checkpoint) after this much wall time; resume later.
        threads: torch CPU threads (0 = torch's default).
        init: weights to start from instead of a random initialisation (fine-tuning,
            or a second stage with other settings): a ``.safetensors`` file, a run
            folder, or ``default`` for the shipped weights; empty = random. A run that
            resumes from its own checkpoint ignores it.
        init_strict: the ``init`` weights must fit the model exactly; False loads the
            tensors whose names and shapes match and leaves the rest as initialised (an
            ablation without some layers starting from the full model's first stage);
            what was left is logged.
        loss: ``charbonnier`` (smooth L1, eps 1e-3), ``l1`` or ``mse`` (the error PSNR
            measures), on the final output; ``stage_weight`` uses the same loss.
        precision: ``fp32``, or ``bf16`` (forward pass under bfloat16 autocast; weights,
            optimiser and loss stay float32). ``benchmarks/train_throughput.py`` measures it.
        compile: run the model through ``torch.compile``.
    """

    steps: int = 1000
    batch_size: int = 8
    lr: float = 2e-4
    min_lr: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    stage_weight: float = 0.0
    round_output: bool = False
    seed: int = 0
    checkpoint_every: int = 200
    snapshot_every: int = 0
    log_every: int = 20
    max_minutes: float = 0.0
    threads: int = 0
    init: str = ""
    init_strict: bool = True
    loss: str = "charbonnier"
    precision: str = "fp32"
    compile: bool = False


@dataclass(frozen=True)
class ObjectiveSection:
    """What a training batch costs (:mod:`codecave.engine.objectives`).

    Attributes:
        name: ``restoration`` (PnP-VCVE, the default), ``recurrent_luma`` (VIG fine-tuning),
            ``truth_guidance`` (VIG's TGD pre-training), ``compression_ranking`` (CAVSR's
            ranker), ``compression_contrast`` (its contrastive alternative) or
            ``super_resolution`` (CAVSR's network, encoder frozen).
        settings: the objective's own settings, e.g. ``{compressed_ratio: 0.1,
            patch_sizes: [32, 16, 8, 4]}`` for ``truth_guidance``.
    """

    name: str = "restoration"
    settings: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    """A whole training recipe.

    Attributes:
        name: run name.
        out: output folder for checkpoints and logs (relative to the working directory).
        model, data, train, objective: sections.
    """

    name: str = "run"
    out: str = "runs/run"
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    train: TrainSection = TrainSection()
    objective: ObjectiveSection = ObjectiveSection()

    def to_dict(self) -> dict[str, object]:
        """Plain types, for YAML."""
        def plain(v: object) -> object:
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v
        return plain(dataclasses.asdict(self))  # type: ignore[return-value]


def _coerce(value: object, tp: object, where: str) -> object:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)  # type: ignore[arg-type]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0]
        if len(args) == 2 and args[1] is Ellipsis or len(args) == 1:
            return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads 1e-4 (no dot) as a string; take it as the number it spells.
            try:
                number = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
            if not math.isfinite(number):
                raise ConfigError(f"{where}: expected a finite number, got {value!r}")
            return number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _build(cls: type, data: object, where: str) -> object:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def _validate(cfg: TrainConfig) -> None:
    t, d = cfg.train, cfg.data
    checks = [
        (t.steps > 0, "train.steps must be positive"),
        (t.batch_size > 0, "train.batch_size must be positive"),
        (0 < t.lr, "train.lr must be positive"),
        (0 <= t.min_lr <= t.lr, "train.min_lr must be in [0, lr]"),
        (t.checkpoint_every > 0 and t.log_every > 0, "train.checkpoint_every and log_every must be positive"),
        (d.crop % 16 == 0 and d.crop > 0, f"data.crop {d.crop} must be a positive multiple of 16"),
        (0 <= d.lossless_prob <= 1 and 0 <= d.qp_dropout <= 1, "data probabilities must be in [0, 1]"),
        (d.frames >= 1, "data.frames must be at least 1"),
        (bool(d.compressed) or (bool(d.lossless) and d.lossless_prob == 1),
         "data.compressed must list at least one rate point (or lossless_prob must be 1)"),
        (t.loss in LOSSES, f"train.loss must be one of {', '.join(LOSSES)}, not {t.loss!r}"),
        (t.precision in PRECISIONS, f"train.precision must be one of {', '.join(PRECISIONS)}, not {t.precision!r}"),
        (t.snapshot_every >= 0, "train.snapshot_every must not be negative"),
        (d.workers >= 0 and t.grad_clip >= 0 and t.max_minutes >= 0,
         "data.workers, train.grad_clip and train.max_minutes must not be negative"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def parse_config(data: dict[str, object], base: str | os.PathLike[str] = ".") -> TrainConfig:
    """Build a validated config from a mapping; relative paths are resolved against ``base``."""
    cfg = _build(TrainConfig, data, "")
    assert isinstance(cfg, TrainConfig)
    _validate(cfg)
    base = Path(base)
    root = str((base / cfg.data.root).resolve()) if not os.path.isabs(cfg.data.root) else cfg.data.root
    packed = cfg.data.packed
    if packed and not os.path.isabs(packed):
        packed = str((base / packed).resolve())
    out = str((base / cfg.out).resolve()) if not os.path.isabs(cfg.out) else cfg.out
    return dataclasses.replace(cfg, out=out, data=dataclasses.replace(cfg.data, root=root, packed=packed))


def load_config(path: str | os.PathLike[str], overrides: dict[str, object] | None = None) -> TrainConfig:
    """Read a YAML recipe.

    Args:
        path: YAML file.
        overrides: dotted keys to set after reading, e.g. ``{"train.steps": 10}``.

    Raises:
        ConfigError: unreadable YAML, unknown keys, wrong types or bad values.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    for key, value in (overrides or {}).items():
        node = data
        *parents, last = key.split(".")
        for p in parents:
            if node.get(p) is None:
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):
                raise ConfigError(f"{path}: cannot set {key}: {p} is not a section")
        node[last] = value
    try:
        return parse_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def save_config(cfg: TrainConfig, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
