"""``codecave train CONFIG``: train a model from a YAML recipe (resumable)."""

from __future__ import annotations

import argparse

import yaml

from codecave.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a YAML recipe",
                       description="Train a model from a YAML recipe. Running the same command again resumes "
                                   "from the run folder's last checkpoint. Under torchrun, trains with DDP.")
    p.add_argument("config", help="YAML recipe, e.g. configs/pnp_vcve/small.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=100 (repeatable)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start over")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def parse_overrides(items: list[str]) -> dict[str, object]:
    """``["a.b=1"]`` -> ``{"a.b": 1}`` (values parsed as YAML)."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def run(args: argparse.Namespace) -> int:
    from codecave.engine.config import load_config
    from codecave.engine.trainer import train

    cfg = load_config(args.config, parse_overrides(args.set))
    result = train(cfg, resume=not args.restart, progress=not args.no_progress, device=args.device)
    state = "finished" if result.finished else "stopped (run again to resume)"
    print(f"{cfg.name}: {state} at step {result.step}, loss {result.loss:.5f}, "
          f"{result.seconds / 60:.1f} min; weights in {result.out / 'model.safetensors'}")
    return 0
