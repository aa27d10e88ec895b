"""Multi-process training with DistributedDataParallel under ``torchrun``.

``torchrun --nproc_per_node N -m codecave train CONFIG`` starts N processes with
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set; each trains on its own share of every
global batch, gradients are averaged by DDP (gloo on CPU, NCCL on GPU) and only
rank 0 writes checkpoints and logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from codecave.errors import ConfigError


@dataclass(frozen=True)
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """True on the process that writes files."""
        return self.rank == 0


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU.

    Raises:
        ConfigError: ``name`` is not a device PyTorch knows, or asks for CUDA where this
            PyTorch has none (a CPU build, or no GPU visible).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r}: use auto, cpu or cuda (cuda:N for one GPU)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        build = "a CPU build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, but no GPU is visible"
        raise ConfigError(f"device {name!r}: this PyTorch ({torch.__version__}, {build}) cannot use CUDA; "
                          "use --device cpu or auto")
    return device


def setup(device: str = "auto") -> Dist:
    """Join the process group when launched by torchrun; a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = pick_device(device)
    if world <= 1:
        return Dist(device=dev)
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank=rank, world=world, device=dev)


def mean_across(value: float, env: Dist) -> float:
    """Average a number over all processes."""
    if env.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=env.device)
    dist.all_reduce(t)
    return float(t.item()) / env.world


def teardown(env: Dist) -> None:
    """Leave the process group."""
    if env.world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
