"""Train a tiny model on a small counting task for under a minute and check that it learns.

    python debug/quick_train_test.py [--steps N] [--lr LR] [--min_accuracy 0.9] [--keep DIR]

Runs train.py's train() (the real loop, checkpoints included) in a temporary folder, printing its loss
and accuracy log, then compares the untrained and the trained model on the in-distribution val split:
the answer loss must fall below a quarter of its start and greedy exact match must reach --min_accuracy.
Exits 1 if the model did not learn.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import SMALL_TASK, load_config  # noqa: E402
from data_generation import answer_loss, encode_batch, make_splits  # noqa: E402
from evaluate import evaluate_pairs, load_checkpoint  # noqa: E402
from model import CountingTransformer  # noqa: E402
from train import train  # noqa: E402


@torch.no_grad()
def val_scores(model: CountingTransformer, val_pairs) -> tuple[float, float]:
    """(answer loss, greedy exact match) on the val split, through the project's loss and scorer."""
    model.eval()
    tokens = encode_batch(val_pairs[:, 0], val_pairs[:, 1])
    loss, _ = answer_loss(model(tokens[:, :-1]), tokens)
    return loss.item(), evaluate_pairs(model, val_pairs).summary()["exact_match"]


def run(steps: int, lr: float, seed: int, output_dir: Path) -> tuple[tuple[float, float], tuple[float, float]]:
    """Train in output_dir; return val (loss, exact match) before and after training."""
    overrides = {
        **SMALL_TASK,
        "data.data_dir": str(output_dir / "data"),
        "train.output_dir": str(output_dir / "run"),
        "train.max_steps": steps,
        "train.lr": lr,
        "train.seed": seed,
        "train.warmup_steps": min(20, steps),
        "train.eval_every": max(1, steps // 4),
        "train.log_every": max(1, steps // 10),
        "train.accelerator": "cpu",
        "train.batch_size": 64,
        # Learned positions fit the training lengths fastest at this size; this checks the loop, not extrapolation.
        "model.pos_encoding": "learned",
    }
    cfg = load_config("counting_tiny", overrides)
    val_pairs = make_splits(cfg.data)["val"]
    torch.manual_seed(seed)  # train() seeds the same way, so this is the model it starts from
    before = val_scores(CountingTransformer(cfg.model), val_pairs)
    train(cfg)
    model, _ = load_checkpoint(Path(cfg.train.output_dir) / "checkpoints" / "last.ckpt")
    return before, val_scores(model, val_pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train a tiny model briefly; exit 1 unless loss falls and accuracy rises."
    )
    parser.add_argument("--steps", type=int, default=800, help="training steps (default 800: about 15 s on one core)")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--min_accuracy", type=float, default=0.9, help="val exact match needed to pass (default 0.9)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: fastest for tiny models)")
    parser.add_argument("--keep", help="train in this folder and keep it, instead of a temporary one")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if args.keep:
        before, after = run(args.steps, args.lr, args.seed, Path(args.keep))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            before, after = run(args.steps, args.lr, args.seed, Path(tmp))
        print("(the temporary run folder is gone; pass --keep DIR to keep the checkpoints)")
    (loss0, em0), (loss1, em1) = before, after
    loss_ok, em_ok = loss1 < 0.25 * loss0, em1 >= args.min_accuracy and em1 > em0
    verdict = {True: "PASS", False: "FAIL"}
    print(f"\nval answer loss:        {loss0:.3f} -> {loss1:.3f}  {verdict[loss_ok]} (must fall below a quarter)")
    print(f"val greedy exact match: {em0:.1%} -> {em1:.1%}  {verdict[em_ok]} (must reach {args.min_accuracy:.0%})")
    learned = loss_ok and em_ok
    outcome = "learned" if learned else "did not learn"
    print(f"{verdict[learned]}: {outcome} in {args.steps} steps, {time.perf_counter() - started:.0f}s")
    return 0 if learned else 1


if __name__ == "__main__":
    sys.exit(main())
