"""CAVSR claim 1: the compression encoder learns compression order (paper Table 3 and Fig. 4,
moved to the encoder level).

``train`` runs one arm of ``configs/cavsr/ranker.yaml`` with the same seed, steps and data
order: ``rl`` (ranking loss on CRF and I/P/B pairs, the paper), ``rl_crf`` (ranking loss on
CRF pairs only, Table 3 row 8), ``cl`` (the contrastive loss, rows 6-7: two crops of one
frame at one CRF are positives). ``score`` measures, on validation data no recipe trains on:

* pairwise ranking accuracy: the share of validation pairs whose more compressed frame
  scores higher, for CRF pairs and for I/P/B pairs (ranking arms; a contrastive encoder has
  no score). The frame type is an input of the encoder (a learned token), so I/P/B pairs
  are also scored with the token hidden (both frames given as P): what the pictures alone
  tell;
* CRF separability, for every arm: nearest-centroid classification of a crop's CRF
  (0/15/25/35) from the encoder's pooled representation, the centroids taken from
  training crops (chance: 25%), the quantitative stand-in for the paper's t-SNE plot.

    codecave train configs/cavsr/ranker.yaml --set train.threads=1  # rl: the recipe itself
    python benchmarks/cavsr_ranker.py train runs/cavsr_ranker_claims --arm rl_crf
    python benchmarks/cavsr_ranker.py train runs/cavsr_ranker_claims --arm cl
    python benchmarks/cavsr_ranker.py score rl=runs/cavsr_ranker rl_crf=runs/cavsr_ranker_claims/rl_crf \
        cl=runs/cavsr_ranker_claims/cl --val data/sr_val --out runs/cavsr_ranker_claims/scores.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from codecave.data.ranking import CRF_PAIR, TYPE_PAIR, CompressionViews, RankingPairs
from codecave.engine.config import load_config
from codecave.engine.trainer import train
from codecave.models import create_model

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs/cavsr/ranker.yaml"
ARMS = {
    "rl": {},
    "rl_crf": {"objective.settings.type_share": 0.0},
    "cl": {"objective.name": "compression_contrast", "objective.settings": {"temperature": 0.07}},
}


def train_arm(out: Path, arm: str, steps: int | None, seed: int, threads: int) -> None:
    overrides: dict[str, object] = {**ARMS[arm], "out": str(out / arm), "train.seed": seed, "train.threads": threads}
    if steps:
        overrides["train.steps"] = steps
    cfg = load_config(RECIPE, overrides)
    result = train(cfg, progress=False)
    log = {"arm": arm, "seed": seed, "steps": result.step, "seconds": round(result.seconds, 1)}
    print(json.dumps(log))


@torch.inference_mode()
def ranking_accuracy(encoder: torch.nn.Module, val: str, pairs: int, crop: int) -> dict[str, float]:
    """Share of validation pairs ordered correctly, by kind."""
    data = RankingPairs(val, crop, pairs, seed=12345, augment=False)
    right = {CRF_PAIR: [], TYPE_PAIR: []}
    blind = []  # I/P/B pairs with the frame-type token hidden (both given as P): the pictures alone
    for i in range(pairs):
        s = data[i]
        score = encoder.score(s["frames"], s["frame_type"])
        right[int(s["kind"])].append(bool((score[0] - score[1]).sign() == s["order"]))
        if s["kind"] == TYPE_PAIR:
            score = encoder.score(s["frames"], torch.ones(2, dtype=torch.int64))
            blind.append(bool((score[0] - score[1]).sign() == s["order"]))
    return {"crf_pairs": float(np.mean(right[CRF_PAIR])), "type_pairs": float(np.mean(right[TYPE_PAIR])),
            "type_pairs_token_hidden": float(np.mean(blind)),
            "crf_pair_count": len(right[CRF_PAIR]), "type_pair_count": len(right[TYPE_PAIR])}


@torch.inference_mode()
def pooled(encoder: torch.nn.Module, root: str, count: int, crop: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled representations of ``count`` random crops and their CRF level index."""
    data = CompressionViews(root, crop, count, seed=seed, variants=("crf0", "crf15", "crf25", "crf35"), augment=False)
    feats, levels = [], []
    for i in range(count):
        s = data[i]
        feats.append(encoder.features(s["frames"][:1], s["frame_type"][:1]).mean(dim=(-2, -1))[0].numpy())
        levels.append(int(s["level"]))
    return np.stack(feats), np.array(levels)


def crf_separability(encoder: torch.nn.Module, train_root: str, val: str, count: int, crop: int) -> float:
    """Nearest-centroid accuracy of the CRF level (standardised features, centroids from training crops)."""
    x_train, y_train = pooled(encoder, train_root, count, crop, seed=1)
    x_val, y_val = pooled(encoder, val, count, crop, seed=2)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
    centroids = np.stack([x_train[y_train == k].mean(0) for k in range(4)])
    guess = ((x_val[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    return float((guess == y_val).mean())


def score(arms: dict[str, Path], val: str, train_root: str, pairs: int, count: int, crop: int, out: Path) -> None:
    rows = []
    for name, folder in arms.items():
        last = json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])
        encoder = create_model("cavsr", weights=str(folder)).compression_encoder.eval()
        objective = load_config(folder / "config.yaml").objective.name
        start = time.perf_counter()
        row = {"arm": name, "folder": str(folder), "objective": objective, "steps": last["step"],
               "seconds": last["seconds"], "crf_separability": crf_separability(encoder, train_root, val, count, crop)}
        if objective == "compression_ranking":
            row.update(ranking_accuracy(encoder, val, pairs, crop))
        row["score_seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        print(json.dumps(row))
    out.write_text(json.dumps(rows, indent=1))
    print("| arm | loss | steps | minutes | CRF pairs ordered | I/P/B pairs ordered | the same, type token hidden "
          "| CRF nearest-centroid accuracy |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        acc = (f"{100 * r['crf_pairs']:.1f}% ({r['crf_pair_count']}) | {100 * r['type_pairs']:.1f}% "
               f"({r['type_pair_count']}) | {100 * r['type_pairs_token_hidden']:.1f}%") if "crf_pairs" in r \
            else "n/a | n/a | n/a"
        print(f"| {r['arm']} | {r['objective']} | {r['steps']} | {r['seconds'] / 60:.1f} | {acc} | "
              f"{100 * r['crf_separability']:.1f}% |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("out", type=Path)
    t.add_argument("--arm", choices=sorted(ARMS), required=True)
    t.add_argument("--steps", type=int, default=None, help="default: the recipe's")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1, help="torch threads (the recipe's rl run used 1)")
    s = sub.add_parser("score")
    s.add_argument("arms", nargs="+", help="NAME=RUN_FOLDER, e.g. rl=runs/cavsr_ranker")
    s.add_argument("--out", type=Path, default=Path("ranker_scores.json"))
    s.add_argument("--val", default="data/sr_val")
    s.add_argument("--train-data", default="data/sr_train", help="where the CRF centroids come from")
    s.add_argument("--pairs", type=int, default=2000)
    s.add_argument("--crops", type=int, default=800, help="crops per set for the CRF separability")
    s.add_argument("--crop", type=int, default=48)
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.cmd == "train":
        train_arm(args.out, args.arm, args.steps, args.seed, args.threads)
    else:
        arms = dict(a.split("=", 1) for a in args.arms)
        score({k: Path(v) for k, v in arms.items()}, args.val, args.train_data, args.pairs, args.crops, args.crop,
              args.out)


if __name__ == "__main__":
    main()
