"""Generation accuracy: the one scorer used by training callbacks, train.py, debug tools and this CLI.

    python evaluate.py --checkpoint CKPT [--split test] [--min_len 151 --max_len 200] [--json FILE]
    python evaluate.py --checkpoint CKPT --prompts prompts.txt --output answers.txt
"""

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from config import ConfigError, from_dict
from data_generation import (
    EOS,
    NUMBER_OFFSET,
    PAD,
    PROMPT_LEN,
    SPLITS,
    CountingTokenizer,
    DataError,
    encode_batch,
    load_splits,
    pairs_of_length,
    seq_length,
)
from model import CountingTransformer

FAILURES = ("correct", "start", "direction", "miscount", "early_stop", "no_stop")


class CheckpointError(Exception):
    """A checkpoint path is missing, damaged or not ours; the message says so."""


@dataclass
class GenerationResult:
    """Greedy generations for a set of (a, b) pairs, scored against the true count."""

    pairs: np.ndarray  # (n, 2)
    outputs: list[list[int]]  # generated ids after '>', through EoS or the cut
    failure: np.ndarray  # (n,) one of FAILURES: where the first wrong token falls

    @property
    def lengths(self) -> np.ndarray:
        return seq_length(self.pairs[:, 0], self.pairs[:, 1])

    @property
    def correct(self) -> np.ndarray:
        return self.failure == "correct"

    def by_length(self) -> dict[int, float]:
        """Exact-match accuracy keyed by sequence length."""
        lengths = self.lengths
        return {int(n): float(self.correct[lengths == n].mean()) for n in np.unique(lengths)}

    def summary(self) -> dict:
        """Overall exact match, the worst length, and the rate of each kind of first error."""
        by_len = self.by_length()
        rates = {f"{kind}_rate": float((self.failure == kind).mean()) for kind in FAILURES[1:]}
        stopped_right = ~np.isin(self.failure, ("early_stop", "no_stop"))
        numbers_right = np.array([_numbers_right(o, p) for o, p in zip(self.outputs, self.pairs.tolist())])
        return {
            "exact_match": float(self.correct.mean()),
            "min_over_lengths": min(by_len.values()),
            "numbers_right": float(numbers_right.mean()),
            "stopped_right": float(stopped_right.mean()),
            **rates,
            "n": len(self.pairs),
        }


def target_answer(a: int, b: int) -> list[int]:
    """The ids that must follow '>': a .. b then EoS."""
    step = 1 if b >= a else -1
    return [NUMBER_OFFSET + v for v in range(a, b + step, step)] + [EOS]


def _numbers_right(output: list[int], pair: list[int]) -> bool:
    target = target_answer(*pair)[:-1]
    return output[: len(target)] == target


def classify(output: list[int], target: list[int]) -> str:
    """Name the first wrong token: start, direction (answer index 1), early/no stop, or miscount."""
    for k, want in enumerate(target):
        got = output[k] if k < len(output) else PAD
        if got == want:
            continue
        if want == EOS:
            return "no_stop"
        if got == EOS:
            return "early_stop"
        return "start" if k == 0 else "direction" if k == 1 else "miscount"
    return "correct"


@torch.no_grad()
def generate_answers(model: CountingTransformer, pairs: np.ndarray, batch_size: int = 512, extra: int = 8) -> list[list[int]]:
    """Greedy answers for each pair (batched by length; KV-cached), cut after EoS or `extra` past the target."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = np.argsort(seq_length(pairs[:, 0], pairs[:, 1]), kind="stable")
    outputs: list[list[int]] = [[] for _ in range(len(pairs))]
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        prompts = encode_batch(pairs[idx, 0], pairs[idx, 1])[:, :PROMPT_LEN].to(device)
        longest = int(seq_length(pairs[idx, 0], pairs[idx, 1]).max()) - PROMPT_LEN
        generated = model.generate(prompts, max_new_tokens=longest + extra).tolist()
        for i, row in zip(idx, generated):
            outputs[i] = row[: row.index(EOS) + 1] if EOS in row else row
    model.train(was_training)
    return outputs


def evaluate_pairs(model: CountingTransformer, pairs: np.ndarray, batch_size: int = 512) -> GenerationResult:
    """Generate for every pair and score it; the one accuracy function of the project."""
    outputs = generate_answers(model, pairs, batch_size)
    failure = np.array([classify(o, target_answer(a, b)) for o, (a, b) in zip(outputs, pairs.tolist())])
    return GenerationResult(pairs=pairs, outputs=outputs, failure=failure)


def bucket_table(by_length: dict[int, float], width: int = 10) -> dict[str, float]:
    """Mean accuracy per bucket of `width` lengths, keyed like 'len_070-079'."""
    buckets: dict[str, list[float]] = {}
    for n, acc in sorted(by_length.items()):
        lo = n // width * width
        buckets.setdefault(f"len_{lo:03d}-{lo + width - 1:03d}", []).append(acc)
    return {k: float(np.mean(v)) for k, v in buckets.items()}


def format_example(tokenizer: CountingTokenizer, pair, output: list[int], ok: bool, max_words: int = 14) -> str:
    """`SoS 24 18 > 24 23 … 18 EoS ✅`, long answers elided in the middle."""
    words = tokenizer.decode(output).split() or ["(nothing)"]
    if len(words) > max_words:
        words = words[: max_words // 2] + ["…"] + words[-max_words // 2 :]
    return f"SoS {pair[0]} {pair[1]} > {' '.join(words)} {'✅' if ok else '❌'}"


def examples(result: GenerationResult, tokenizer: CountingTokenizer, n: int) -> list[str]:
    """Up to n formatted examples, mistakes first."""
    order = np.argsort(result.correct, kind="stable")[:n]
    return [format_example(tokenizer, result.pairs[i], result.outputs[i], bool(result.correct[i])) for i in order]


def format_report(result: GenerationResult, title: str) -> str:
    """A readable per-length table: buckets of 10, then every length."""
    s = result.summary()
    lines = [
        f"{title}: exact match {s['exact_match']:.1%} over {s['n']} sequences "
        f"(worst length {s['min_over_lengths']:.1%}; numbers right {s['numbers_right']:.1%}, "
        f"stopped right {s['stopped_right']:.1%})",
        "first errors: " + ", ".join(f"{k} {s[k + '_rate']:.1%}" for k in FAILURES[1:]),
        "by bucket:    " + "  ".join(f"{k[4:]} {v:.0%}" for k, v in bucket_table(result.by_length()).items()),
        "every length:",
    ]
    items = [f"{n:>3}:{acc:>5.0%}" for n, acc in result.by_length().items()]
    lines += ["  " + "  ".join(items[i : i + 10]) for i in range(0, len(items), 10)]
    return "\n".join(lines)


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[CountingTransformer, object]:
    """Rebuild the model and its config from a Lightning or train.py checkpoint (no Lightning needed)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; pass the path of a .ckpt file")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} could not be read as a checkpoint ({type(err).__name__}); it may be truncated") from None
    config = ckpt.get("hyper_parameters", {}).get("config") if isinstance(ckpt, dict) else None
    if config is None or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint of this project (no config or state_dict inside)")
    try:
        cfg = from_dict(config)
        model = CountingTransformer(cfg.model).to(device)
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
        model.load_state_dict(state)
    except (ConfigError, RuntimeError, TypeError) as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{path} does not fit this version of the model: {first}") from None
    model.eval()
    return model, cfg


def pairs_for_range(min_len: int, max_len: int, max_number: int, per_length: int, seed: int = 0) -> np.ndarray:
    """Up to per_length random distinct pairs at every length in [min_len, max_len]."""
    if max_len - 6 > max_number:
        raise ValueError(f"length {max_len} needs numbers up to {max_len - 6}, beyond max_number={max_number}")
    rng = np.random.default_rng(seed)
    chunks = []
    for n in range(min_len, max_len + 1):
        pool = pairs_of_length(n, max_number)
        chunks.append(pool[rng.permutation(len(pool))[:per_length]])
    return np.concatenate(chunks)


def read_prompts(path: Path, tokenizer: CountingTokenizer) -> np.ndarray:
    """(a, b) pairs from a file of `SoS a b >` lines; errors name the line."""
    if not path.is_file():
        raise ValueError(f"prompt file {path} not found")
    lines = path.read_text().splitlines()
    pairs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            pairs.append(tokenizer.parse_prompt(line))
        except ValueError as err:
            raise ValueError(f"{path}:{number}: {err}") from None
    if not pairs:
        raise ValueError(f"prompt file {path} holds no prompts; write one 'SoS a b >' per line")
    return np.array(pairs, dtype=np.int64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score a checkpoint by greedy generation, per length.")
    parser.add_argument("--checkpoint", required=True, help="a .ckpt from train_lightning.py or train.py")
    parser.add_argument("--split", default="test", choices=SPLITS, help="split to score (default: test)")
    parser.add_argument("--data_dir", default=None, help="split folder (default: the checkpoint's data.data_dir)")
    parser.add_argument("--min_len", type=int, help="score fresh sequences of these lengths instead of a split")
    parser.add_argument("--max_len", type=int, help="upper end of --min_len's range (inclusive)")
    parser.add_argument("--per_length", type=int, default=10, help="sequences per length with --min_len (default 10)")
    parser.add_argument("--json", help="also write {overall, by_length, summary} to this file")
    parser.add_argument("--prompts", help="file of 'SoS a b >' lines to answer instead of scoring")
    parser.add_argument("--output", help="where --prompts answers go (default: stdout)")
    parser.add_argument("--batch_size", type=int, default=512)
    args = parser.parse_args(argv)
    try:
        model, cfg = load_checkpoint(args.checkpoint)
        tokenizer = CountingTokenizer(cfg.data.max_number)
        if args.prompts:
            pairs = read_prompts(Path(args.prompts), tokenizer)
            answers = generate_answers(model, pairs, args.batch_size)
            text = "".join(tokenizer.decode(o) + "\n" for o in answers)
            Path(args.output).write_text(text) if args.output else sys.stdout.write(text)
            return 0
        if args.min_len is not None or args.max_len is not None:
            lo, hi = args.min_len or cfg.data.test_min_len, args.max_len or cfg.data.test_max_len
            pairs, title = pairs_for_range(lo, hi, cfg.data.max_number, args.per_length), f"lengths {lo}-{hi}"
        else:
            if args.data_dir:
                cfg.data.data_dir = args.data_dir
            pairs, title = load_splits(cfg.data)[args.split], f"{args.split} split"
        result = evaluate_pairs(model, pairs, args.batch_size)
    except (CheckpointError, DataError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_report(result, title))
    for line in examples(result, tokenizer, 5):
        print("  " + line)
    if args.json:
        summary = result.summary()
        payload = {"overall": summary["exact_match"], "by_length": {str(k): v for k, v in result.by_length().items()}}
        Path(args.json).write_text(json.dumps({**payload, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
