"""Seconds-long sanity report: data, token format, model forward, KV cache and loss masking.

    python debug/quick_test.py [--seed N]

Prints one PASS/FAIL line per check and exits 1 if any failed. Nothing is written to disk.
"""

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import SMALL_TASK, ExperimentConfig, load_config  # noqa: E402
from data_generation import (  # noqa: E402
    EOS,
    PAD,
    PROMPT_LEN,
    SPLITS,
    CountingTokenizer,
    answer_loss,
    encode_batch,
    make_splits,
    seq_length,
    split_text,
)
from model import POS_ENCODINGS, CountingTransformer  # noqa: E402


def check_data(cfg: ExperimentConfig) -> str:
    """The splits have the configured sizes and lengths, hold both directions and share no pair."""
    d = cfg.data
    splits = make_splits(d)
    assert set(splits) == set(SPLITS), f"splits {sorted(splits)}"
    n_long = d.test_max_len - d.test_min_len + 1
    sizes = {"train": d.n_train, "val": d.n_val, "test": n_long * d.n_test_per_length}
    sizes["ood_val"] = n_long * d.n_ood_val_per_length
    for name, pairs in splits.items():
        assert len(pairs) == sizes[name], f"{name} has {len(pairs)} pairs, expected {sizes[name]}"
        lengths = seq_length(pairs[:, 0], pairs[:, 1])
        lo, hi = (d.train_min_len, d.train_max_len) if name in ("train", "val") else (d.test_min_len, d.test_max_len)
        assert lo <= lengths.min() and lengths.max() <= hi, f"{name} lengths {lengths.min()}-{lengths.max()}"
        assert (pairs[:, 0] < pairs[:, 1]).any() and (pairs[:, 0] > pairs[:, 1]).any(), f"{name} lacks a direction"
    seen = [set(map(tuple, p.tolist())) for p in splits.values()]
    assert sum(map(len, seen)) == len(set().union(*seen)), "a pair appears twice or in two splits"
    return ", ".join(f"{k} {len(v)}" for k, v in splits.items()) + "; lengths in range, both directions, disjoint"


def check_format(cfg: ExperimentConfig) -> str:
    """Text -> ids -> text is the identity, and encode_batch rows equal the split-file lines."""
    tokenizer = CountingTokenizer(cfg.data.max_number)
    pairs = np.array([[3, 9], [12, 8], [5, 5], [0, cfg.data.max_number]])
    lines = split_text(pairs).splitlines()
    for line, row, (a, b) in zip(lines, encode_batch(pairs[:, 0], pairs[:, 1]).tolist(), pairs.tolist()):
        ids = [i for i in row if i != PAD]
        assert tokenizer.encode(line) == ids, f"{line!r} encodes differently from encode_batch"
        assert tokenizer.decode(ids) == line, f"decode gave {tokenizer.decode(ids)!r}, want {line!r}"
        assert tokenizer.parse_prompt(" ".join(line.split()[:PROMPT_LEN])) == (a, b)
        assert len(ids) == seq_length(a, b) and ids[-1] == EOS
    return f"e.g. {lines[1]!r}"


def check_forward(cfg: ExperimentConfig) -> str:
    """Logits have shape (B, T-1, vocab), are finite, and the untrained loss is near ln(vocab)."""
    model = CountingTransformer(cfg.model)
    tokens = encode_batch(np.array([3, 30, 7]), np.array([17, 20, 7]))
    logits = model(tokens[:, :-1])
    want = (tokens.shape[0], tokens.shape[1] - 1, cfg.model.vocab_size)
    assert tuple(logits.shape) == want, f"logits {tuple(logits.shape)}, expected {want}"
    assert torch.isfinite(logits).all(), "non-finite logits"
    loss, _ = answer_loss(logits, tokens)
    uniform = float(np.log(cfg.model.vocab_size))
    assert 0.8 * uniform < loss.item() < 1.2 * uniform, f"initial loss {loss.item():.2f}, ln(vocab) {uniform:.2f}"
    return f"logits {want}, initial loss {loss.item():.2f} vs ln(vocab) {uniform:.2f}"


def check_kv_cache(cfg: ExperimentConfig) -> str:
    """Greedy generation with the KV cache equals recomputing the whole prefix, for every positional encoding."""
    a, b = np.arange(0, 16), np.arange(20, 36)
    prompts = encode_batch(a, b)[:, :PROMPT_LEN]
    for pos_encoding in POS_ENCODINGS:
        model = CountingTransformer(replace(cfg.model, pos_encoding=pos_encoding)).eval()
        with torch.no_grad():  # a random model, sharpened so its greedy outputs vary and sometimes stop
            model.head.weight.mul_(30)
        cached = model.generate(prompts, 40, use_cache=True)
        full = model.generate(prompts, 40, use_cache=False)
        assert torch.equal(cached, full), f"{pos_encoding}: cached and uncached generations differ"
        assert cached.unique().numel() > 3, f"{pos_encoding}: degenerate output, the comparison proves little"
    return "identical for " + ", ".join(POS_ENCODINGS)


def check_loss_mask(cfg: ExperimentConfig) -> str:
    """The loss has gradient exactly at the positions predicting a..b and EoS; prompt and pads get none."""
    pairs = np.array([[3, 9], [12, 8], [5, 5]])
    tokens = encode_batch(pairs[:, 0], pairs[:, 1])
    logits = torch.randn(tokens.shape[0], tokens.shape[1] - 1, cfg.model.vocab_size, requires_grad=True)
    answer_loss(logits, tokens)[0].backward()
    has_grad = logits.grad.abs().sum(-1) > 0  # (B, T-1): which predictions the loss uses
    position = torch.arange(tokens.shape[1] - 1)
    want = (position >= PROMPT_LEN - 1) & (tokens[:, 1:] != PAD)
    assert torch.equal(has_grad, want), f"loss covers {has_grad.int().tolist()}, expected {want.int().tolist()}"
    n_answer = int((np.abs(pairs[:, 1] - pairs[:, 0]) + 2).sum())
    assert int(has_grad.sum()) == n_answer, f"{int(has_grad.sum())} positions in the loss, expected {n_answer}"
    return f"{n_answer} answer positions in the loss (a..b and EoS per sequence); prompt and padding excluded"


CHECKS: list[tuple[str, Callable[[ExperimentConfig], str]]] = [
    ("data generates", check_data),
    ("format round-trips", check_format),
    ("model runs forward", check_forward),
    ("KV cache = no cache", check_kv_cache),
    ("loss masks the prompt", check_loss_mask),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Seconds-long sanity checks; exits 1 if any check fails.")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for the random models (default 0)")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # these models are tiny: one thread is fastest and leaves cores to a training run
    cfg = load_config("counting_tiny", SMALL_TASK)
    failed = 0
    for name, check in CHECKS:
        started = time.perf_counter()
        try:
            verdict, detail = "PASS", check(cfg)
        except Exception as err:  # report every check, whatever breaks
            failed += 1
            where = traceback.extract_tb(err.__traceback__)[-1]
            verdict, detail = "FAIL", f"{type(err).__name__}: {err} ({Path(where.filename).name}:{where.lineno})"
        print(f"{verdict}  {name:<22} {time.perf_counter() - started:5.2f}s  {detail}")
    print(f"{len(CHECKS) - failed}/{len(CHECKS)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
