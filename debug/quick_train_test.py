"""Train a tiny model on a small counting task for about a minute and check that it learns.

    python debug/quick_train_test.py [--steps 800] [--min_accuracy 0.9] [--output_dir DIR]

Runs train.py's loop (the real one: checkpoints, evaluations, the final scoring) on counting_tiny with
numbers 0..39 and training lengths up to 20, then exits 1 unless its chosen checkpoint's exact match
on every pair of the training lengths reaches --min_accuracy.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import SMALL_TASK, load_config  # noqa: E402
from train import train  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a tiny model briefly; exit 1 unless it learns.")
    parser.add_argument("--steps", type=int, default=800, help="training steps (default 800)")
    parser.add_argument("--min_accuracy", type=float, default=0.9, help="exact match needed at 6-20 (default 0.9)")
    parser.add_argument("--output_dir", help="train here and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a tiny model: one thread is fastest
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.output_dir or tmp)
        overrides = {**SMALL_TASK, "data.data_dir": str(out / "data"), "train.output_dir": str(out / "run")}
        overrides |= {"train.max_steps": args.steps, "train.eval_every": max(1, args.steps // 4), "train.lr": 3e-3}
        overrides |= {"model.pos_encoding": "learned"}  # fits the training lengths fastest: this checks the loop
        train(load_config("counting_tiny", overrides))
        in_dist = json.loads((out / "run" / "summary.json").read_text())["sets"]["in_distribution"]
    learned = in_dist["exact_match"] >= args.min_accuracy
    print(f"{'PASS' if learned else 'FAIL'}: {in_dist['exact_match']:.1%} exact at 6-20 after {args.steps} steps "
          f"(needed {args.min_accuracy:.0%})")  # fmt: skip
    return 0 if learned else 1


if __name__ == "__main__":
    sys.exit(main())
