"""The training loop shared by every method; the loss of a batch is the objective the
config names (:mod:`codecave.engine.objectives`).

Adam with a cosine learning-rate schedule, gradient clipping, atomic checkpoints
with exact resume (sampling is indexed by step, and the optimiser and RNG states
are saved), a progress bar with loss, learning rate and speed, a ``metrics.jsonl``
log and TensorBoard scalars.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

from codecave.engine import checkpoint as ckpt
from codecave.engine.config import TrainConfig, TrainSection, save_config
from codecave.engine.distributed import Dist, mean_across, setup, teardown
from codecave.engine.objectives import Objective, Restoration, build_objective
from codecave.errors import ConfigError
from codecave.models.registry import build_model, create_model

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a call to :func:`train` did.

    Attributes:
        out: run folder.
        step: steps completed in total.
        finished: True when the schedule's last step is done.
        loss: mean loss over the last logging interval.
        seconds: wall time of training over all sessions of this run.
    """

    out: Path
    step: int
    finished: bool
    loss: float
    seconds: float


def cosine_lr(step: int, steps: int, lr: float, min_lr: float) -> float:
    """Cosine decay from ``lr`` at step 0 to ``min_lr`` at ``steps``."""
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(step, steps) / steps))


class StepSampler(Sampler[int]):
    """Sample indices for steps ``start..steps``: process ``rank`` of ``world`` takes
    its slice of each global batch, so resuming at a step draws what an
    uninterrupted run would have drawn."""

    def __init__(self, start: int, steps: int, batch: int, env: Dist) -> None:
        self.start, self.steps, self.batch, self.env = start, steps, batch, env

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start, self.steps):
            first = (step * self.env.world + self.env.rank) * self.batch
            yield from range(first, first + self.batch)

    def __len__(self) -> int:
        return (self.steps - self.start) * self.batch


def _tensorboard(folder: Path) -> object | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed: scalars go to metrics.jsonl only")
        return None
    return SummaryWriter(str(folder / "tb"))


def _progress(total: int, initial: int, enabled: bool) -> object | None:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def _batches(cfg: TrainConfig, env: Dist, start: int, domain: str, objective: Objective, model: nn.Module
             ) -> Iterator[dict[str, torch.Tensor]]:
    """Batches for steps ``start..steps`` on the training device: drawn from a pack on the
    device itself when ``data.packed`` names one, else from the prepared dataset by a loader.
    The data is opened and checked here, before the first batch is asked for.

    Raises:
        ConfigError, DatasetError: the data does not fit the model or the objective.
    """
    t = cfg.train
    if cfg.data.packed:
        from codecave.data.packed import PackedWindows

        if domain != "yuv420":
            raise ConfigError(f"{cfg.data.packed}: packs hold yuv420 windows but {cfg.model.name} "
                              f"({cfg.model.variant}) takes {domain}")
        source = PackedWindows(cfg.data.packed, cfg.data.window_spec(), env.device, seed=t.seed)
        return (source.batch(step * env.world + env.rank, t.batch_size) for step in range(start, t.steps))
    dataset = objective.dataset(cfg, (t.steps * env.world + env.world) * t.batch_size, model)
    if getattr(dataset, "domain", domain) != domain:
        raise ConfigError(f"{cfg.data.root} holds {dataset.domain} data but {cfg.model.name} ({cfg.model.variant}) "
                          f"takes {domain}; prepare it with --domain {domain}")
    loader = DataLoader(dataset, batch_size=t.batch_size, sampler=StepSampler(start, t.steps, t.batch_size, env),
                        num_workers=cfg.data.workers, persistent_workers=False)
    return ({k: v.to(env.device, non_blocking=True) for k, v in batch.items()} for batch in loader)


def _load_init(model: nn.Module, cfg: TrainConfig) -> None:
    """Load ``train.init`` into ``model``: exactly (the default), or with ``train.init_strict``
    off, the tensors whose names and shapes match.

    Raises:
        ConfigError: the weights do not fit (strict), or nothing fits.
    """
    t = cfg.train
    if t.init_strict:
        start_from = create_model(cfg.model.name, weights=t.init, variant=cfg.model.variant, **cfg.model.overrides)
        model.load_state_dict(start_from.state_dict())
        return
    from safetensors.torch import load_file

    path = Path(t.init) / "model.safetensors" if Path(t.init).is_dir() else Path(t.init)
    if not path.is_file():
        raise ConfigError(f"train.init {t.init}: no such weights file")
    own = model.state_dict()
    state = load_file(str(path))
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fits:
        raise ConfigError(f"train.init {t.init}: no tensor fits {cfg.model.name} ({cfg.model.variant})")
    model.load_state_dict(fits, strict=False)
    log.warning("train.init %s: loaded %d of the model's %d tensors; %d of the file's left out", t.init, len(fits),
                len(own), len(state) - len(fits))


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
               t: TrainSection, mark: Callable[[str], None] | None = None, objective: Objective | None = None,
               step: int = 0) -> torch.Tensor:
    """One optimiser step on a batch: the objective's loss (forward under bf16 autocast
    when ``t.precision`` says so), backward, clipping and the update.

    Args:
        net: the model (or its compiled / distributed wrapper).
        optimizer: its optimiser, learning rate already set.
        batch: ``frames``, ``gt`` and priors on the model's device.
        t: the config's train section.
        mark: called with ``"forward"``, ``"backward"`` and ``"optimizer"`` as each
            phase ends (``benchmarks/train_throughput.py`` times them).
        objective: the loss of a batch (:mod:`codecave.engine.objectives`); default
            ``restoration``.
        step: the optimiser step (0-based), for objectives with stages.

    Returns:
        The loss (a detached scalar tensor).
    """
    device = batch["frames"].device.type
    objective = objective or Restoration(t)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=t.precision == "bf16"):
        loss = objective.loss(net, batch, step)
    if mark is not None:
        mark("forward")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if mark is not None:
        mark("backward")
    if t.grad_clip:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        nn.utils.clip_grad_norm_(params, t.grad_clip)
    optimizer.step()
    if mark is not None:
        mark("optimizer")
    return loss.detach()


def measure_step_rate(cfg: TrainConfig, device: str = "auto", steps: int = 30, warmup: int = 10) -> float:
    """Training steps per second of a packed recipe (a throwaway model, the recipe's real
    batches, its threads, precision and objective, frozen parts included), to size a
    schedule to a wall-time budget. Sets the process's torch threads to the recipe's.

    Args:
        cfg: a recipe whose ``data.packed`` names a pack (``scripts/gpu_train.py pack``).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        steps: timed steps, after ``warmup`` untimed ones.

    Returns:
        Optimiser steps per second.

    Raises:
        ConfigError: the recipe has no pack.
    """
    from codecave.data.packed import PackedWindows
    from codecave.engine.distributed import pick_device

    if not cfg.data.packed:
        raise ConfigError("measuring the step rate needs a packed recipe (data.packed)")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    dev = pick_device(device)
    objective = build_objective(cfg)
    model = build_model(cfg.model.name, cfg.model.variant, **cfg.model.overrides).to(dev)
    optimizer = torch.optim.Adam(objective.param_groups(model), lr=cfg.train.lr, betas=cfg.train.betas)
    objective.setup(model)  # frozen parts, as train() has them
    net = torch.compile(model, dynamic=False) if cfg.train.compile else model
    windows = PackedWindows(cfg.data.packed, cfg.data.window_spec(), dev, seed=cfg.train.seed)
    start = time.perf_counter()
    for i in range(warmup + steps):
        if i == warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        train_step(net, optimizer, windows.batch(i, cfg.train.batch_size), cfg.train, objective=objective, step=i)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def train(cfg: TrainConfig, *, resume: bool = True, progress: bool = True, device: str = "auto") -> TrainResult:
    """Train a model from a config; resume from the run folder's checkpoint if present.

    Args:
        cfg: validated config (:func:`codecave.engine.config.load_config`).
        resume: continue from ``cfg.out/checkpoint.pt`` when it exists.
        progress: show a progress bar (rank 0 only).
        device: ``auto``, ``cpu`` or ``cuda``.

    Returns:
        A :class:`TrainResult`.
    """
    env = setup(device)
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    out = Path(cfg.out)
    torch.manual_seed(t.seed)
    objective = build_objective(cfg)
    model = build_model(cfg.model.name, cfg.model.variant, **cfg.model.overrides).to(env.device)
    optimizer = torch.optim.Adam(objective.param_groups(model), lr=t.lr, betas=t.betas)
    state = ckpt.load_checkpoint(out) if resume else None
    if t.init and state is None:
        _load_init(model, cfg)
        log.info("starting %s from the weights in %s", out, t.init)
    start, elapsed = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        ckpt.set_rng_state(state["rng"])
        start, elapsed = int(state["step"]), float(state["extra"].get("seconds", 0.0))
        log.info("resuming %s at step %d", out, start)
    objective.setup(model)  # stage logic (frozen parts) before any wrapper sees the parameters
    net: nn.Module = model
    if t.compile:
        net = torch.compile(model, dynamic=False)
    if env.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[env.device] if env.device.type == "cuda" else None)
    # The data is checked before the run folder is made: a refused dataset leaves nothing behind.
    batches = _batches(cfg, env, start, objective.data_domain or getattr(model, "domain", "rgb"), objective, model)
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    metadata = {"model": cfg.model.name, "variant": cfg.model.variant,
                "config": model.describe(), "run": cfg.name, "objective": objective.describe()}

    def save(step: int) -> None:
        if env.main:
            ckpt.save_checkpoint(out, model, optimizer, step, {"seconds": elapsed + time.perf_counter() - t0},
                                 metadata)

    writer = _tensorboard(out) if env.main else None
    bar = _progress(t.steps, start, progress and env.main)
    t0 = time.perf_counter()
    step, recent, loss_value = start, [], float("nan")
    recent_terms: dict[str, list[torch.Tensor]] = {}
    net.train()
    for batch in batches:
        lr = cosine_lr(step, t.steps, t.lr, t.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        loss = train_step(net, optimizer, batch, t, objective=objective, step=step)
        step += 1
        recent.append(loss)  # a device tensor: no synchronisation until the next log line
        for name, value in objective.terms.items():
            recent_terms.setdefault(name, []).append(value)
        if step % t.log_every == 0 or step == t.steps:
            loss_value = mean_across(float(torch.stack(recent).mean()), env)
            terms = {k: mean_across(float(torch.stack(v).float().mean()), env) for k, v in recent_terms.items()}
            recent, recent_terms = [], {}
            if env.main:
                seconds = elapsed + time.perf_counter() - t0
                record = {"step": step, "loss": loss_value, "lr": lr, "seconds": round(seconds, 2), **terms}
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                if writer is not None:
                    writer.add_scalar("train/loss", loss_value, step)
                    writer.add_scalar("train/lr", lr, step)
                    for name, value in terms.items():
                        writer.add_scalar(f"train/{name}", value, step)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(recent[-1]) if recent else loss_value:.4f}", lr=f"{lr:.2e}")
        if step % t.checkpoint_every == 0 or step == t.steps:
            save(step)
        if t.snapshot_every and step % t.snapshot_every == 0 and env.main:
            (out / "snapshots").mkdir(exist_ok=True)
            ckpt.save_weights(model, out / "snapshots" / f"step{step}.safetensors", {**metadata, "step": step})
        out_of_time = bool(t.max_minutes) and time.perf_counter() - t0 > 60 * t.max_minutes
        if env.world > 1:
            out_of_time = mean_across(float(out_of_time), env) > 0
        if out_of_time and step < t.steps:
            save(step)
            log.warning("stopping after %.1f minutes at step %d; run again to resume", t.max_minutes, step)
            break
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
    teardown(env)
    return TrainResult(out, step, step >= t.steps, loss_value, elapsed + time.perf_counter() - t0)
