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
import pickle
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from codecave.errors import CheckpointError

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
    """Python, NumPy and torch RNG states, as tensors and plain values only (so that
    :func:`load_checkpoint` can read them with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    key, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [key, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, object]) -> None:
    """Restore :func:`rng_state`."""
    version, internal, gauss = state["python"]  # type: ignore[misc]
    random.setstate((version, tuple(int(x) for x in internal.tolist()), gauss))
    key, keys, pos, has_gauss, cached = state["numpy"]  # type: ignore[misc]
    np.random.set_state((key, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
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
    """The saved training state, or None when the folder has none.

    Read with ``torch.load(weights_only=True)``: tensors and plain values only, so a run
    folder copied from elsewhere cannot execute code when it is resumed.

    Raises:
        CheckpointError: the file holds anything else (pickled Python objects, or a
            checkpoint written before its RNG states were stored as tensors).
    """
    path = folder / CHECKPOINT
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc}); it is cut short or not a checkpoint. Remove it "
                              "to start the run over") from exc
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: holds Python objects beyond tensors and plain values, which loading could execute; "
            "codecave does not load it. Remove it (or the run folder) to start the run over, or start from "
            f"its weights with init: {folder / WEIGHTS}") from exc
