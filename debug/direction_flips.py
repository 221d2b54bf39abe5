"""Are a model's miscounts direction flips? The first wrong step of every miscounted answer, by kind.

    python debug/direction_flips.py --checkpoint CKPT [--split test]

A miscount is a first error after answer index 1. It is a *flip* when the model steps the wrong
way from a right number (c+1 wanted, c-1 written, or the reverse): the direction decided again,
wrongly, in mid-count. Anything else (a skip, a repeat, a jump) is listed apart.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_generation import NUMBER_OFFSET, SPLITS, DataError, ensure_splits  # noqa: E402
from evaluate import CheckpointError, evaluate_pairs, load_checkpoint  # noqa: E402


def flips(pairs: np.ndarray, first_error: np.ndarray, got: np.ndarray) -> np.ndarray:
    """True where the first error (index >= 2) writes current-step instead of current+step; got is a number."""
    step = np.where(pairs[:, 0] <= pairs[:, 1], 1, -1)
    current = pairs[:, 0] + step * (first_error - 1)  # the right number just before the first error
    return (first_error >= 2) & (got == current - step)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a .ckpt from train_lightning.py or train.py")
    parser.add_argument("--split", default="test", choices=SPLITS, help="split to look at (default: test)")
    args = parser.parse_args(argv)
    try:
        model, cfg = load_checkpoint(args.checkpoint)
        pairs = ensure_splits(cfg.data)[args.split]
    except (CheckpointError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = evaluate_pairs(model, pairs, cfg.train.eval_batch_size)  # each greedy answer's first wrong token
    failure, k = result.failure, result.first_error
    a, b, got = pairs[:, 0], pairs[:, 1], result.first_wrong - NUMBER_OFFSET
    miscount = failure == "miscount"
    flipped = miscount & flips(pairs, k, got)
    print(f"{args.split}: {len(pairs)} answers, {(failure == 'correct').mean():.1%} exact")
    print(f"  direction wrong at answer index 1: {(failure == 'direction').mean():.1%} of answers")
    n_flips, n_miscounts = int(flipped.sum()), int(miscount.sum())
    print(f"  miscounts: {miscount.mean():.1%} of answers, {n_flips} of {n_miscounts} a step the wrong way")
    for i in np.flatnonzero(miscount & ~flipped)[:5]:
        print(f"  not a flip: SoS {a[i]} {b[i]} > ... then {got[i]} at answer index {k[i]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
