"""The only entry points to models: :func:`create_model` and :func:`list_models`.

Shipped weights live in ``codecave/weights`` and are listed in its ``manifest.json``
with the architecture they were trained with, their training data and settings, and
measured validation scores.
"""

from __future__ import annotations

import dataclasses
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from codecave.errors import ConfigError
from codecave.models import cavsr, crds, neural_wrapper, pnp_vcve, vig

#: name -> (model class for a config, variants). Static: no registration at import time.
_MODELS = {
    "pnp_vcve": (pnp_vcve.model_class, pnp_vcve.VARIANTS),
    "vig": (lambda config: vig.VIG, vig.VARIANTS),
    "cavsr": (lambda config: cavsr.CAVSR, cavsr.VARIANTS),
    "crds": (lambda config: crds.CRDS, crds.VARIANTS),
    "neural_wrapper": (lambda config: neural_wrapper.NeuralWrapper, neural_wrapper.VARIANTS),
}
#: The model ``codecave enhance`` uses unless told otherwise.
DEFAULT_MODEL = "pnp_vcve"
#: Its variant: PnP-VCVE ``fast`` works on the YUV 4:2:0 planes the decoder gives.
DEFAULT_VARIANT = "fast"
#: The variant each model gets when none is named.
_DEFAULT_VARIANTS = {"pnp_vcve": DEFAULT_VARIANT, "vig": "small", "cavsr": "fast", "crds": "small", "neural_wrapper": "small"}


def default_variant(name: str) -> str:
    """The variant of model ``name`` used when none is named (PnP-VCVE and CAVSR ``fast``; VIG and CRDS ``small``)."""
    return _DEFAULT_VARIANTS.get(name, DEFAULT_VARIANT)
#: The variant that takes over, when the variant was left to the default, for input the
#: default cannot take (not 4:2:0: 4:2:2, 4:4:4, RGB, gray): an RGB model.
FALLBACK_VARIANT = "small"


def list_models() -> list[str]:
    """Names of the registered models."""
    return sorted(_MODELS)


def _entry(name: str) -> tuple[object, dict[str, object]]:
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    return _MODELS[name]


def weights_manifest() -> dict[str, dict[str, object]]:
    """The shipped weights' manifest (``codecave/weights/manifest.json``)."""
    path = resources.files("codecave") / "weights" / "manifest.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def model_info(name: str, variant: str = "small") -> dict[str, object]:
    """Architecture of a variant and, when shipped, its weights' manifest entry."""
    _, variants = _entry(name)
    if variant not in variants:
        raise ConfigError(f"{name}: unknown variant {variant!r}; choose one of {', '.join(variants)}")
    info: dict[str, object] = {"model": name, "variant": variant, "domain": model_domain(name, variant),
                               "config": dataclasses.asdict(variants[variant])}
    shipped = weights_manifest().get(f"{name}_{variant}")
    if shipped:
        info["weights"] = shipped
    return info


def build_model(name: str, variant: str = "small", **overrides: object) -> nn.Module:
    """A freshly initialised model (no weights loaded).

    Args:
        name: a name from :func:`list_models`.
        variant: ``small``, ``paper`` or ``fast`` (see ``pnp_vcve.VARIANTS``).
        **overrides: architecture fields to change (e.g. ``mv_align=False``).
    """
    class_for, variants = _entry(name)
    if variant not in variants:
        raise ConfigError(f"{name}: unknown variant {variant!r}; choose one of {', '.join(variants)}")
    config = variants[variant]
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = set(overrides) - fields
    if unknown:
        raise ConfigError(f"{name} ({variant}): unknown setting(s) {sorted(unknown)}; known: {sorted(fields)}")
    config = dataclasses.replace(config, **overrides)
    model = class_for(config)(config)
    model.variant = variant  # reports say which variant ran
    return model


def model_domain(name: str, variant: str = "small") -> str:
    """What frames a variant takes: ``"rgb"`` or ``"yuv420"`` (design section 3)."""
    class_for, variants = _entry(name)
    if variant not in variants:
        raise ConfigError(f"{name}: unknown variant {variant!r}; choose one of {', '.join(variants)}")
    return str(class_for(variants[variant]).domain)


def shipped_weights(name: str, variant: str | None = None) -> tuple[Any, dict[str, object]]:
    """The shipped weights file of a variant (default: :func:`default_variant`) as a package
    resource (``importlib.resources``; ``resources.as_file`` gives a path), and its manifest entry.

    Raises:
        ConfigError: an unknown model or variant, or none shipped for it.
    """
    variant = variant or default_variant(name)
    entry = weights_manifest().get(f"{name}_{variant}")
    if entry is None:
        build_model(name, variant)  # an unknown model or variant is named, with the registered ones
        raise ConfigError(f"no shipped weights for {name} ({variant}); train them (configs/), or pass "
                          "weights=PATH (--weights PATH) or weights=None (--weights none)")
    return shipped_weights_entry(f"{name}_{variant}"), entry


def create_model(name: str = DEFAULT_MODEL, weights: str | os.PathLike[str] | None = "default",
                 variant: str | None = None, **overrides: object) -> nn.Module:
    """Build a model and load weights into it.

    Args:
        name: a name from :func:`list_models`.
        weights: ``"default"`` for the shipped weights of this variant, a path to a
            ``.safetensors`` file or a training run folder (its ``model.safetensors``),
            or None (or ``"none"``) for random initialisation.
        variant: ``small``, ``paper`` or ``fast``; None takes the variant saved with the
            weights (a trained run), else :func:`default_variant`.
        **overrides: architecture fields to change.

    Returns:
        The model in eval mode, with ``pass_through_qp`` set from its weights' manifest
        entry or metadata (the QP at or below which the model was measured not to help;
        :class:`codecave.enhance.Enhancer` passes those frames through), else None, and
        ``fallback_variant``: :data:`FALLBACK_VARIANT` when both the variant and the
        shipped weights were left to the default and the default takes only 4:2:0
        (the enhancer switches to it for other input), else None.

    Raises:
        ConfigError: unknown name, variant or setting, or no shipped weights.
    """
    from safetensors.torch import load_file

    if weights is None or weights == "none":
        model = build_model(name, variant or default_variant(name), **overrides)
        model.pass_through_qp, model.fallback_variant, model.high_crf = None, None, None
        return model.eval()
    fallback, high_crf = None, None
    _entry(name)  # an unknown name is named, with the registered ones
    if weights == "default":
        if variant is None and name == DEFAULT_MODEL and model_domain(name, DEFAULT_VARIANT) == "yuv420":
            fallback = FALLBACK_VARIANT
        variant = variant or default_variant(name)
        path, entry = shipped_weights(name, variant)
        arch = {**dict(entry.get("config", {})), **overrides}
        threshold = entry.get("pass_through_qp")
        high_crf = entry.get("high_crf")
    else:
        path = Path(weights)
        if path.is_dir():
            path = path / "model.safetensors"
        if not path.is_file():
            raise ConfigError(f"{weights}: no such weights file")
        saved = _saved_metadata(path)
        variant = variant or (json.loads(saved["variant"]) if "variant" in saved else None)
        threshold = json.loads(saved["pass_through_qp"]) if "pass_through_qp" in saved else None
        arch = {**json.loads(saved.get("config", "{}")), **overrides}
    with resources.as_file(path) as real:
        state = load_file(str(real))
    if variant is None:
        variant = _variant_of(name, arch, state, path)
    model = build_model(name, variant, **arch)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(f"{path}: weights do not fit {name} ({variant}): "
                          f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    #: Frames at or below this QP are passed through by codecave.enhance.Enhancer (None: none).
    model.pass_through_qp = None if threshold is None else float(threshold)
    #: Variant for input this one cannot take (not 4:2:0), when the choice was left to the default.
    model.fallback_variant = fallback
    #: Shipped weights for streams of high sequence CRF (``{"entry", "from_crf"}``), or None.
    model.high_crf = None if overrides else high_crf
    return model.eval()


def shipped_weights_entry(entry: str) -> Any:
    """The weights file of one manifest entry, as a package resource.

    Raises:
        ConfigError: no such entry.
    """
    found = weights_manifest().get(entry)
    if found is None:
        raise ConfigError(f"no shipped weights {entry!r}; have {', '.join(sorted(weights_manifest()))}")
    return resources.files("codecave") / "weights" / str(found["file"])


def create_model_entry(entry: str) -> nn.Module:
    """The model of one entry of the shipped weights' manifest (e.g. ``pnp_vcve_fast_high``,
    the default's weights for high-CRF streams), with its pass-through QP.

    Raises:
        ConfigError: no such entry.
    """
    from safetensors.torch import load_file

    path = shipped_weights_entry(entry)
    found = weights_manifest()[entry]
    model = build_model(str(found["model"]), str(found["variant"]), **dict(found.get("config", {})))
    with resources.as_file(path) as real:
        model.load_state_dict(load_file(str(real)))
    threshold = found.get("pass_through_qp")
    model.pass_through_qp = None if threshold is None else float(threshold)
    model.fallback_variant, model.high_crf = None, None
    return model.eval()


def _variant_of(name: str, arch: dict[str, object], state: dict[str, torch.Tensor], path: Path) -> str:
    """The variant a weights file without a saved ``variant`` was made for: the first (the
    default first) that takes the saved settings and whose tensors, names and shapes, are
    exactly those of the file.

    Raises:
        ConfigError: no variant fits; pass ``variant=`` (``--variant``).
    """
    _, variants = _entry(name)
    for variant in sorted(variants, key=lambda v: v != default_variant(name)):
        try:
            shapes = {k: v.shape for k, v in build_model(name, variant, **arch).state_dict().items()}
        except ConfigError:
            continue
        if shapes == {k: v.shape for k, v in state.items()}:
            return variant
    raise ConfigError(f"{path}: no variant of {name} fits these weights (the file names none); "
                      f"pass the variant (--variant)")


def _saved_metadata(path: Path) -> dict[str, str]:
    """Metadata the trainer stores in a safetensors file (``variant``, ``config`` as JSON...), if any."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})
