"""Does a model count the right way when a and b are close? The direction decision for every close pair.

    python debug/close_pairs.py --checkpoint CKPT [--max_gap 9]

Feeds 'SoS a b > a' for every pair with 1 <= |b-a| <= max_gap (one teacher-forced pass) and checks
the next token: a+1 when counting up, a-1 when counting down. These are training lengths, so an
error here is a comparison the model never learned finely enough, not a length failure. The val
split's pairs are reported apart: training never draws them, so they show whether the comparison
generalizes to unseen pairs or was memorized pair by pair.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_generation import PROMPT_LEN, encode_batch, make_splits  # noqa: E402
from evaluate import CheckpointError, load_checkpoint  # noqa: E402


def close_pairs(max_number: int, max_gap: int, direction: str = "both") -> np.ndarray:
    """Every (a, b) with 1 <= |b-a| <= max_gap (and a < b for an up-only task), shape (n, 2)."""
    a, b = np.meshgrid(np.arange(max_number + 1), np.arange(max_number + 1), indexing="ij")
    keep = (abs(a - b) >= 1) & (abs(a - b) <= max_gap) & ((a < b) | (direction == "both"))
    return np.stack([a[keep], b[keep]], axis=1)


@torch.no_grad()
def wrong_direction(model: torch.nn.Module, pairs: np.ndarray) -> np.ndarray:
    """True where the token after 'SoS a b > a' is a-1 for an up count or a+1 for a down count. (n,)"""
    tokens = encode_batch(pairs[:, 0], pairs[:, 1])[:, : PROMPT_LEN + 1]  # SoS a b > a
    predicted = model(tokens)[:, -1].argmax(-1)  # (n,)
    step = torch.from_numpy(np.sign(pairs[:, 1] - pairs[:, 0]))
    return (predicted == tokens[:, -1] - step).numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a .ckpt from train_lightning.py or train.py")
    parser.add_argument("--max_gap", type=int, default=9, help="largest |b-a| to check")
    args = parser.parse_args(argv)
    try:
        model, cfg = load_checkpoint(args.checkpoint)
        val = make_splits(cfg.data)["val"]  # rebuilt from the config: no data folder needed
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not 1 <= args.max_gap <= cfg.data.max_number:
        print(f"error: --max_gap must be in [1, {cfg.data.max_number}], got {args.max_gap}", file=sys.stderr)
        return 2
    pairs = close_pairs(cfg.data.max_number, args.max_gap, cfg.data.direction)
    wrong = wrong_direction(model, pairs)
    gaps = abs(pairs[:, 1] - pairs[:, 0])
    in_val = np.zeros((cfg.data.max_number + 1,) * 2, dtype=bool)
    in_val[val[:, 0], val[:, 1]] = True
    held_out = in_val[pairs[:, 0], pairs[:, 1]]  # (n,) never drawn for training
    head = f"{len(pairs)} pairs with 1 <= |b-a| <= {args.max_gap}"
    print(f"{head}: wrong direction for {wrong.sum()} ({wrong.mean():.2%})")
    print(f"  of them {held_out.sum()} val pairs, never trained on: wrong for {_share(wrong[held_out])}")
    print("  |b-a|  pairs  wrong  val pairs  wrong")
    for g in range(1, args.max_gap + 1):
        gap, val_gap = gaps == g, (gaps == g) & held_out
        print(f"  {g:5d}  {gap.sum():5d}  {wrong[gap].mean():6.1%}  {val_gap.sum():9d}  {_share(wrong[val_gap]):>6}")
    return 0


def _share(flags: np.ndarray) -> str:
    """Percentage of True in flags, or '-' when there are none."""
    return f"{flags.mean():.1%}" if len(flags) else "-"


if __name__ == "__main__":
    sys.exit(main())
