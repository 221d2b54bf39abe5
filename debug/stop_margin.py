"""Where does a model want to stop? The EoS margin along correct long answers, by distance to b.

    python debug/stop_margin.py --checkpoint CKPT [--min_len 70] [--max_len 150] [--per_length 4]

Feeds correct answers (teacher forcing, one pass) and records, at every answer position before b,
logit(EoS) minus logit(the right next number). A margin above 0 means greedy decoding would stop
there. Grouped by the gap |current - b|, this shows whether early stops cluster at particular gaps
(features that make far-apart numbers look alike) or at particular numbers.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_generation import (  # noqa: E402
    EOS,
    NUMBER_OFFSET,
    PROMPT_LEN,
    encode_batch,
    pairs_for_range,  # noqa: E402
)
from evaluate import CheckpointError, load_checkpoint  # noqa: E402


@torch.no_grad()
def stop_margins(model: torch.nn.Module, pairs: np.ndarray) -> list[tuple[int, int, int, float]]:
    """(a, b, current number, EoS margin) at every answer position whose current number is not yet b."""
    tokens = encode_batch(pairs[:, 0], pairs[:, 1])  # (B, T)
    logits = model(tokens)[:, PROMPT_LEN - 1 : -1]  # (B, T-P, V): predictions at '>' and after
    current, following = tokens[:, PROMPT_LEN - 1 : -1], tokens[:, PROMPT_LEN:]  # (B, T-P)
    before_b = (current >= NUMBER_OFFSET) & (following >= NUMBER_OFFSET)  # the next token is a number
    margin = logits[..., EOS] - logits.gather(-1, following[..., None])[..., 0]  # (B, T-P)
    rows, cols = before_b.nonzero(as_tuple=True)
    return [
        (int(pairs[r, 0]), int(pairs[r, 1]), int(current[r, c]) - NUMBER_OFFSET, float(margin[r, c]))
        for r, c in zip(rows.tolist(), cols.tolist())
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a .ckpt from train_lightning.py or train.py")
    parser.add_argument("--min_len", type=int, default=70)
    parser.add_argument("--max_len", type=int, default=150)
    parser.add_argument("--per_length", type=int, default=4, help="random pairs per length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=12, help="how many gaps and positive cases to list")
    args = parser.parse_args(argv)
    try:
        model, cfg = load_checkpoint(args.checkpoint)
        pairs = pairs_for_range(
            args.min_len, args.max_len, cfg.data.max_number, args.per_length, args.seed, cfg.data.direction
        )
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = stop_margins(model, pairs)
    gaps = np.array([abs(b - c) for a, b, c, _ in rows])
    margins = np.array([m for *_, m in rows])
    print(f"{len(pairs)} answers, {len(rows)} positions before b; margin > 0 at {(margins > 0).mean():.2%} of them")
    by_gap = sorted(set(gaps.tolist()), key=lambda g: -margins[gaps == g].max())
    print(f"gaps with the highest margin (top {args.top}):")
    print("  gap  positions  mean margin  max margin  share > 0")
    for g in by_gap[: args.top]:
        m = margins[gaps == g]
        print(f"  {g:3d}  {len(m):9d}  {m.mean():11.2f}  {m.max():10.2f}  {(m > 0).mean():9.1%}")
    positive = sorted((r for r in rows if r[3] > 0), key=lambda r: -r[3])
    if positive:
        print(f"positions where greedy decoding would stop early (top {args.top}): a, b, current, margin")
        for a, b, c, m in positive[: args.top]:
            print(f"  SoS {a} {b} > ... {c}   margin {m:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
