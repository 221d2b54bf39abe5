"""A small RASP-L interpreter on numpy arrays, and the counting task written as a RASP-L program.

RASP-L (Zhou et al. 2024) describes what one causal transformer computes, one operation at a time:
`select` builds an attention pattern (a query sees only keys at or before its own position),
`aggregate` reads values through it (one attention head), and `numerical_map` / `seq_map` act on each
position separately (an MLP). Here every primitive works on whole arrays whose last axis is the
sequence, so one call runs a batch of equal-length sequences at once. Map functions must therefore be
elementwise numpy functions (`x + 1`, `x == y`, `np.where(...)`), which is what RASP-L's per-position
maps are. Values are int64 rather than RASP-L's int8 because our vocabulary has 204 ids.

    python rasp.py "SoS 3 9 > 3 4 5"      # show the program's next-token prediction at every position
"""

import argparse
import sys
from collections import Counter
from collections.abc import Callable

import numpy as np

from data_generation import EOS, NUMBER_OFFSET, PAD, SEP, SOS, CountingTokenizer

_op_counts: Counter = Counter()  # calls per primitive, reset by count_ops


def _primitive(fn: Callable) -> Callable:
    """Mark fn as a RASP-L operation so count_ops can tally how many the program uses."""

    def counted(*args, **kwargs):
        _op_counts[fn.__name__] += 1
        return fn(*args, **kwargs)

    counted.__name__, counted.__doc__ = fn.__name__, fn.__doc__
    return counted


def tokens(seq) -> np.ndarray:
    """The input token ids, shape (..., T): the program's first input."""
    return np.asarray(seq, dtype=np.int64)


def indices(seq) -> np.ndarray:
    """Each position's index 0..T-1, shaped like seq: the program's second input."""
    seq = np.asarray(seq)
    return np.broadcast_to(np.arange(seq.shape[-1]), seq.shape)


@_primitive
def select(keys: np.ndarray, queries: np.ndarray, predicate: Callable) -> np.ndarray:
    """Attention pattern (..., T_query, T_key): predicate(key, query) holds and the key is not in the future."""
    keys, queries = np.asarray(keys), np.asarray(queries)
    T = keys.shape[-1]
    causal = np.tril(np.ones((T, T), dtype=bool))  # row q sees columns 0..q
    return np.asarray(predicate(keys[..., None, :], queries[..., :, None]), dtype=bool) & causal


@_primitive
def aggregate(selector: np.ndarray, values: np.ndarray, reduce: str = "mean", default: float = 0) -> np.ndarray:
    """For each query, the mean, max or min of the values at its selected keys; default where it selects none."""
    values = np.asarray(values)
    values = values.astype(np.int64) if values.dtype == bool else values
    v = np.broadcast_to(values[..., None, :], selector.shape)
    n_selected = selector.sum(-1)
    if reduce == "mean":
        out = np.where(selector, v, 0).sum(-1) / np.maximum(n_selected, 1)
    elif reduce in ("max", "min"):
        info = np.iinfo(v.dtype) if np.issubdtype(v.dtype, np.integer) else np.finfo(v.dtype)
        neutral = info.min if reduce == "max" else info.max
        out = getattr(np.where(selector, v, neutral), reduce)(-1)
    else:
        raise ValueError(f"reduce must be 'mean', 'max' or 'min', got {reduce!r}")
    return np.where(n_selected > 0, out, default)


@_primitive
def numerical_map(f: Callable, x: np.ndarray) -> np.ndarray:
    """f applied to every position of one sequence (an MLP reading one value)."""
    return np.asarray(f(np.asarray(x)))


@_primitive
def seq_map(f: Callable, *seqs: np.ndarray) -> np.ndarray:
    """f applied position by position to aligned sequences (an MLP; RASP-L's seq_map reads two, ours any number)."""
    return np.asarray(f(*(np.asarray(s) for s in seqs)))


def count_program(seq, direction: str = "both") -> np.ndarray:
    """The predicted next token at every position of seq (..., T); PAD where no answer token comes next.

    seq holds one or more `SoS a b > a a±1 ... b EoS` sequences back to back (the last may stop anywhere
    after '>'). At every answer position ('>' and the numbers after it) the output is the true next token.
    14 primitive operations: 4 select, 4 aggregate, 2 numerical_map, 4 seq_map (see count_ops).
    direction="up" is the paper's task (a <= b): it never compares start with end, 13 operations.
    """
    tok, idx = tokens(seq), indices(seq)
    # 1. Where the current sequence began (the most recent SoS), and where its most recent '>' is.
    sos_at = aggregate(select(tok, tok, lambda k, q: k == SOS), idx, "max", default=-1)
    sep_at = aggregate(select(tok, tok, lambda k, q: k == SEP), idx, "max", default=-1)
    # An answer position holds '>' or a number after this sequence's '>': its next token is predicted.
    answering = seq_map(lambda sep, sos, t: (sep > sos) & ((t == SEP) | (t >= NUMBER_OFFSET)), sep_at, sos_at, tok)
    # 2. Read start one position after SoS and end one after that (a single key each, so max = mean).
    start_at = numerical_map(lambda i: i + 1, sos_at)
    end_at = numerical_map(lambda i: i + 1, start_at)
    start = aggregate(select(idx, start_at, lambda k, q: k == q), tok, "max")
    end = aggregate(select(idx, end_at, lambda k, q: k == q), tok, "max")
    # The direction: count up when start <= end, down otherwise (ids of numbers are ordered like values).
    # This is the one map of two token values whose inputs training does not cover: |a - b| <= 54 there.
    step = seq_map(lambda s, e: np.where(s <= e, 1, -1), start, end) if direction == "both" else 1
    # 3. At '>' emit start; 4. where the current token is end emit EoS; 5. elsewhere step by one.
    nxt = seq_map(lambda t, s, e, d: np.where(t == SEP, s, np.where(t == e, EOS, t + d)), tok, start, end, step)
    return seq_map(lambda answer, n: np.where(answer, n, PAD), answering, nxt)


def count_ops(program: Callable = count_program, **kwargs) -> Counter:
    """Calls of each primitive made by one run of program (independent of the input and batch size)."""
    _op_counts.clear()
    program(np.array([SOS, 4, 6, SEP, 4, 5, 6, EOS]), **kwargs)
    return Counter(_op_counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the RASP-L counting program and show each prediction.")
    parser.add_argument("sequence", nargs="?", default="SoS 3 9 > 3 4 5 6 7 8 9 EoS", help="tokens, e.g. 'SoS 12 8 >'")
    parser.add_argument("--max_number", type=int, default=199, help="largest number token (default 199)")
    parser.add_argument("--direction", choices=["both", "up"], default="both", help="the task's program (default both)")
    args = parser.parse_args(argv)
    tokenizer = CountingTokenizer(args.max_number)
    try:
        ids = tokenizer.encode(args.sequence)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    predicted = count_program(ids, args.direction)
    print(f"{'pos':>3}  {'token':>5}  predicted next")
    for i, (token, nxt) in enumerate(zip(ids, predicted.tolist())):
        shown = "- (next token is not an answer token)" if nxt == PAD else tokenizer.decode([nxt])
        print(f"{i:>3}  {tokenizer.decode([token]):>5}  {shown}")
    ops = count_ops(direction=args.direction)
    print(f"{sum(ops.values())} primitive operations: " + ", ".join(f"{n} {name}" for name, n in ops.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
