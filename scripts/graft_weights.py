"""Graft tensors of one shipped weights file into another (or change a setting), validate and ship.

A part trained with one set of weights can serve another set of the same architecture
without more training. The case it was written for: the default's high-CRF weights
(``pnp_vcve_fast_high``, trained before the shrinkage stage existed) take the shrinkage
stage that stage 9 trained with the main weights (``shrink.*`` of ``pnp_vcve_fast``:
:class:`codecave.layers.dct.ShiftedDCTShrinkage`, two tensors) and run it in front
(``dct_shrink=1.0``). No weight is trained: the receiver's tensors are kept as they are,
the donor's are copied, and the architecture setting is changed.

The receiver's manifest entry keeps its training record (no training minutes are added)
with a ``grafts`` list naming the donor, its SHA-256 and the tensors taken; its validation
is replaced by the new one (``scripts/ship_weights.py``'s, same options), and the reports go
to ``OUT/validation``. A switch chosen against the old weights (``high_crf`` of the main
entry) is then stale: rerun ``scripts/rate_switch.py`` with ``OUT``'s report.

``--from`` may also name a ``.safetensors`` file of tensors: a part fitted on its own
(``scripts/fit_shrinkage.py``: the stage after VIG, fitted on VIG's outputs); the graft record
then holds the file's hash and the fit's settings and wall time (its ``fit.json``).

Without ``--from`` no tensor is taken: only the settings change (a setting calibrated after
training, e.g. the shrinkage QP offset of I and P pictures that ``benchmarks/shrink_offset.py``
chooses on training clips); the entry's training record gains a ``calibrations`` list instead.

    python scripts/graft_weights.py pnp_vcve_fast_high --from pnp_vcve_fast --prefix shrink. \\
        --set dct_shrink=1.0 data/val_yuv6 --crf 15,18,25,28,35,38 --frames 6 --slice-type-crf 35 \\
        --slice-type-frames 4 --no-pass-through --out runs/pnp_vcve_fast_high_shrink
    python scripts/rate_switch.py runs/pnp_vcve_fast_stage9/validation/frame_qp/scores.json \\
        runs/pnp_vcve_fast_high_shrink/validation/frame_qp/scores.json --ship
    # CRDS, a luma model: its per-stream pass-through QP is chosen again from the new scores
    python scripts/graft_weights.py crds_small --from pnp_vcve_fast --prefix shrink. --set dct_shrink=1.0 \\
        data/vig_val --variants ldp22,ldp27,ldp32,ldp37,crf35 --frames 16 --slice-type-crf none \\
        --out runs/crds_small_shrink
    # a setting alone (no donor), here the default's shrinkage QP offset for I and P pictures
    python scripts/graft_weights.py pnp_vcve_fast --set shrink_ip_qp_offset=7 data/val_yuv6 \\
        --crf 15,18,25,28,35,38 --frames 6 --slice-type-crf 35 --slice-type-frames 4 \\
        --no-pass-through --out runs/pnp_vcve_fast_offset
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from ship_weights import WEIGHTS, validate, validation_entry, write_entry

from codecave.models.registry import build_model


def is_file_donor(donor: str) -> bool:
    """Whether ``--from`` names a tensors file (``scripts/fit_shrinkage.py``'s ``stage.safetensors``)
    rather than a manifest entry."""
    return donor.endswith(".safetensors")


def graft(entry: str, donor_entry: str | None, prefixes: list[str], settings: dict[str, object], weights: Path
          ) -> tuple[torch.nn.Module, dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, object]]:
    """The receiver ``entry``'s weights with ``donor_entry``'s tensors whose names start with one
    of ``prefixes`` (none without a donor), built with the receiver's architecture changed by
    ``settings``.

    Returns the model (eval mode), its full state, the tensors taken and the architecture.

    Raises:
        SystemExit: an unknown entry, a receiver file that is not the one its entry lists, no tensor
            taken from a donor, or a state that does not fit.
    """
    manifest = json.loads((weights / "manifest.json").read_text())
    for name in (entry, donor_entry):
        if name is not None and name not in manifest and not is_file_donor(name):
            raise SystemExit(f"no manifest entry {name!r}; have {', '.join(sorted(manifest))}")
    receiver = manifest[entry]
    path = weights / receiver["file"]
    if receiver.get("sha256") and hashlib.sha256(path.read_bytes()).hexdigest() != receiver["sha256"]:
        raise SystemExit(f"{path} is not the file its manifest entry {entry!r} lists (sha256 differs): restore the "
                         "two together (git checkout, or git show COMMIT:PATH for both)")
    own = load_file(str(path))
    taken: dict[str, torch.Tensor] = {}
    if donor_entry is not None:
        source = Path(donor_entry) if is_file_donor(donor_entry) else weights / manifest[donor_entry]["file"]
        if not source.is_file():
            raise SystemExit(f"{source}: no such weights file")
        taken = {k: v for k, v in load_file(str(source)).items() if k.startswith(tuple(prefixes))}
        if not taken:
            raise SystemExit(f"{donor_entry} has no tensor starting with {prefixes}")
    config = {**receiver.get("config", {}), **settings}
    model = build_model(receiver["model"], receiver["variant"], **config)
    state = {**own, **taken}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"the grafted weights do not fit: missing {missing[:4]}, unexpected {unexpected[:4]}")
    return model.eval(), state, taken, config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("entry", help="the receiving manifest entry (e.g. pnp_vcve_fast_high)")
    ap.add_argument("val", type=Path, help="prepared validation dataset")
    ap.add_argument("--from", dest="donor", default=None,
                    help="the donor manifest entry (e.g. pnp_vcve_fast) or a .safetensors file of tensors "
                         "(scripts/fit_shrinkage.py's stage.safetensors); none: only --set changes")
    ap.add_argument("--prefix", action="append", default=[],
                    help="take the donor's tensors whose names start with this (repeatable), e.g. shrink.")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="architecture setting of the result (YAML value), e.g. dct_shrink=1.0")
    ap.add_argument("--out", type=Path, required=True, help="folder for the validation reports")
    ap.add_argument("--crf", default="15,25,35,18,28,38", help="rate points to validate at (frame QP mode)")
    ap.add_argument("--variants", default=None, help="rate points by variant name instead of --crf")
    ap.add_argument("--frames", type=int, default=None, help="first N frames of each clip (default all)")
    ap.add_argument("--slice-type-crf", default="35", help="rate points for the slice-type-only check ('none')")
    ap.add_argument("--slice-type-frames", type=int, default=8, help="first N frames for the slice-type check")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--per-clip", action="store_true", help="pass-through QP chosen per clip (ship_weights.py)")
    ap.add_argument("--no-pass-through", action="store_true", help="do not set a pass-through QP")
    args = ap.parse_args()

    settings = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: use KEY=VALUE")
        settings[key] = yaml.safe_load(value)
    if args.donor is not None and not args.prefix:
        raise SystemExit("--from needs --prefix: which of the donor's tensors to take")
    if args.donor is None and (args.prefix or not settings):
        raise SystemExit("without --from: no --prefix, and at least one --set")
    model, state, taken, config = graft(args.entry, args.donor, args.prefix, settings, WEIGHTS)
    manifest = json.loads((WEIGHTS / "manifest.json").read_text())
    receiver = manifest[args.entry]
    what = f"{args.donor} {args.prefix}" if args.donor else ", ".join(f"{k}={v}" for k, v in settings.items())
    results, full, gate = validate(model, receiver["model"], f"{args.entry} + {what}",
                                   args.val, args, args.out / "validation")
    target = WEIGHTS / receiver["file"]
    with safe_open(str(WEIGHTS / receiver["file"]), "pt") as f:
        meta = {**(f.metadata() or {}), "config": json.dumps(config)}
    save_file({k: v.contiguous() for k, v in state.items()}, str(target), metadata=meta)
    training = dict(receiver.get("training", {}))
    if args.donor is not None and is_file_donor(args.donor):
        # a fitted part: its file's hash and the fit's record (fit.json beside it, curve left out)
        source = Path(args.donor)
        fit = source.with_name("fit.json")
        record = {"from": source.as_posix(), "from_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
                  "tensors": sorted(taken), "settings": settings,
                  "fit": {k: v for k, v in json.loads(fit.read_text()).items() if k != "curve"} if fit.is_file() else None}
    elif args.donor is not None:
        donor = manifest[args.donor]
        record = {"from": args.donor, "from_sha256": donor["sha256"], "tensors": sorted(taken),
                  "from_last_stage": (donor.get("training", {}).get("stages") or [{}])[-1].get("run"),
                  "settings": settings}
    if args.donor is not None:
        same = [g for g in training.get("grafts", [])
                if (g["from"], g["tensors"]) != (record["from"], record["tensors"])]
        training["grafts"] = [*same, record]  # grafting the same tensors again replaces the record
    else:  # setting the same keys again replaces the record
        same = [c for c in training.get("calibrations", []) if set(c["settings"]) != set(settings)]
        training["calibrations"] = [*same, {"settings": settings}]
    entry = {**receiver,
             "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
             "config": config,
             "parameters": sum(p.numel() for p in model.parameters()),
             "pass_through_qp": None if gate["threshold"] < 0 else gate["threshold"],
             "training": training,
             "validation": validation_entry(args.val, args, results, full, gate)}
    path = write_entry(args.entry, entry)
    print(f"shipped {target} ({f'{len(taken)} tensors from {args.donor}' if args.donor else what}) "
          f"and its entry in {path}")
    if any((e.get("high_crf") or {}).get("entry") == args.entry for e in manifest.values() if isinstance(e, dict)):
        print(f"a switch to {args.entry} was chosen against the weights just replaced: rerun scripts/rate_switch.py")
    if receiver.get("high_crf"):
        print(f"{args.entry}'s switch to {receiver['high_crf']['entry']} was chosen against the weights just "
              "replaced: rerun scripts/rate_switch.py")
    if receiver.get("pass_through_qp") is not None and entry["pass_through_qp"] is None:
        print(f"{args.entry} had a pass-through QP ({receiver['pass_through_qp']}) and now has none: "
              "choose it again with scripts/pass_through.py --ship")


if __name__ == "__main__":
    main()
