"""Atomic checkpoints: training state for resuming, and model weights for shipping.

A run folder holds:

* ``checkpoint.pt``: model, optimiser, step and RNG states (for ``resume``).
* ``model.safetensors``: the weights alone, with the architecture in its metadata,
  loadable by ``create_model(name, weights=PATH)``.
* ``config.yaml``: the resolved training config.

Every file is written to a temporary name in the same folder and renamed, so an
interrupted write never leaves a half checkpoint.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.safetensors"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` then rename ``tmp`` to ``path``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def rng_state() -> dict[str, object]:
    """Python, NumPy and torch RNG states."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, object]) -> None:
    """Restore :func:`rng_state`."""
    random.setstate(state["python"])  # type: ignore[arg-type]
    np.random.set_state(state["numpy"])  # type: ignore[arg-type]
    torch.set_rng_state(state["torch"])  # type: ignore[arg-type]


def save_weights(model: nn.Module, path: Path, metadata: dict[str, object]) -> None:
    """Write a model's weights as safetensors, with JSON metadata values."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {k: json.dumps(v) for k, v in metadata.items()}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=meta))


def save_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    extra: dict[str, object], metadata: dict[str, object]) -> None:
    """Write ``checkpoint.pt`` and ``model.safetensors`` atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "rng": rng_state(), "extra": extra}
    atomic_write(folder / CHECKPOINT, lambda tmp: torch.save(state, tmp))
    save_weights(model, folder / WEIGHTS, {**metadata, "step": step})


def load_checkpoint(folder: Path) -> dict[str, object] | None:
    """The saved training state, or None when the folder has none."""
    path = folder / CHECKPOINT
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)
