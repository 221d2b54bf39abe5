"""Generation accuracy: the one scorer used by both trainers, the study, the debug tools and this CLI.

python evaluate.py --checkpoint CKPT                      # every test pair: 70-150, those not in ood_val
python evaluate.py --checkpoint CKPT --all_pairs --min_len 6 --max_len 60 --json FILE
python evaluate.py --checkpoint CKPT --all_pairs --min_len 1000 --max_len 1000 --per_length 200 --sample_seed 3
python evaluate.py --checkpoint CKPT --split val          # one split file
python evaluate.py --checkpoint CKPT --prompts prompts.txt --output answers.txt
"""

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import beta

from config import ConfigError, DataConfig, ExperimentConfig, apply_overrides, from_dict, parse_overrides
from data_generation import (
    EOS,
    PAD,
    PROMPT_LEN,
    SPLITS,
    CountingTokenizer,
    DataError,
    answer_mask,
    encode_batch,
    ensure_splits,
    pair_count,
    pairs_for_range,
    pairs_in_range,
    report_sets,
    seq_length,
    target_answer,
)
from model import CountingTransformer, KVCache

FAILURES = ("correct", "start", "direction", "miscount", "early_stop", "no_stop")
# The bar a run must meet, on every pair it was not chosen on: error rates at most these.
BAR = {"test": 0.01, "test_length": 0.03, "in_distribution": 0.005}


class CheckpointError(Exception):
    """A checkpoint path is missing, damaged or not ours; the message says so."""


def error_upper95(errors: int, pairs: int) -> float:
    """One-sided 95% upper bound of the error rate (exact binomial, Clopper-Pearson); 0 of n gives about 3/n."""
    return 1.0 if errors >= pairs else float(beta.ppf(0.95, errors + 1, pairs - errors))


@dataclass
class GenerationResult:
    """Greedy answers for a set of (a, b) pairs, scored against the true count by their first error."""

    pairs: np.ndarray  # (n, 2)
    failure: np.ndarray  # (n,) one of FAILURES: what the first wrong token was
    first_error: np.ndarray  # (n,) answer index of the first wrong token, -1 if correct
    first_wrong: np.ndarray | None = None  # (n,) token id written at first_error; meaningless where correct
    outputs: list[list[int]] | None = None  # generated ids after '>' (generation mode only)
    answer_loss: float | None = None  # mean cross-entropy of answer tokens given the true prefix (teacher-forced)

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

    def counts(self) -> dict:
        """Pairs and errors, overall, by kind and by length, with the error rate's 95% upper bound (JSON-ready)."""
        lengths, wrong = self.lengths, ~self.correct
        errors = int(wrong.sum())
        by_length = {
            str(n): {"pairs": int((lengths == n).sum()), "errors": int(wrong[lengths == n].sum())}
            for n in np.unique(lengths)
        }
        return {
            "pairs": len(self.pairs),
            "errors": errors,
            "exact_match": 1 - errors / max(1, len(self.pairs)),
            "error_rate_upper95": error_upper95(errors, len(self.pairs)),
            "kinds": {kind: int((self.failure == kind).sum()) for kind in FAILURES[1:]},
            "by_length": by_length,
        }

    def summary(self) -> dict:
        """Overall exact match, the worst length, and how often each kind of first error occurs."""
        by_len = self.by_length()
        rates = {f"{kind}_rate": float((self.failure == kind).mean()) for kind in FAILURES[1:]}
        return {
            "exact_match": float(self.correct.mean()),
            "min_over_lengths": min(by_len.values()),
            "numbers_right": rates["no_stop_rate"] + float(self.correct.mean()),  # every number right
            "stop_error_rate": rates["no_stop_rate"] + rates["early_stop_rate"],  # numbers fine up to a bad stop
            **rates,
            "n": len(self.pairs),
            **({} if self.answer_loss is None else {"answer_loss": self.answer_loss}),
        }


def worst_length_error(counts: dict) -> float:
    """The highest error rate of any single length in a counts() dict."""
    return max(c["errors"] / c["pairs"] for c in counts["by_length"].values())


def meets_bar(sets: dict[str, dict]) -> bool:
    """Test error <= 1% and <= 3% at every length, in-distribution error <= 0.5%, each over every pair scored."""
    test, in_dist = sets["test"], sets["in_distribution"]
    return bool(
        test["errors"] <= BAR["test"] * test["pairs"]
        and worst_length_error(test) <= BAR["test_length"]
        and in_dist["errors"] <= BAR["in_distribution"] * in_dist["pairs"]
    )


def selection_score(summary: dict) -> float:
    """How checkpoints are ranked on ood_val: exact match, ties broken by the lower answer loss.

    Once several checkpoints answer every ood_val sequence right, exact match cannot rank them; the
    loss still says how sure each is. 1e-5 x loss stays below one sequence (1/1620) for any loss < 60.
    Log it in float64: in float32, 1 - 1e-5 x loss rounds to 1 for the small losses that need ranking.
    """
    return summary["exact_match"] - 1e-5 * summary["answer_loss"]


def classify(k: int, want: int, got: int) -> str:
    """Name a first error at answer index k: start, direction (index 1), early/no stop, or miscount."""
    if k < 0:
        return "correct"
    if want == EOS:
        return "no_stop"
    if got == EOS:
        return "early_stop"
    return "start" if k == 0 else "direction" if k == 1 else "miscount"


# Tokens per scoring batch: small batches keep each layer's (B, heads, T, T) mask in cache on a CPU.
TOKENS_PER_BATCH = 4096


def _by_length_batches(pairs: np.ndarray, batch_size: int):
    """Index batches of pairs sorted by length (little padding), each at most batch_size pairs and about
    TOKENS_PER_BATCH tokens."""
    lengths = seq_length(pairs[:, 0], pairs[:, 1])
    order = np.argsort(lengths, kind="stable")
    start = 0
    while start < len(order):
        size = min(batch_size, max(1, TOKENS_PER_BATCH // int(lengths[order[start]])))
        yield order[start : start + size]
        start += size


@torch.inference_mode()
def generate_answers(
    model: CountingTransformer, pairs: np.ndarray, batch_size: int = 512, extra: int = 8, use_cache: bool = True
) -> list[list[int]]:
    """Greedy answers for each pair (KV-cached unless use_cache=False), cut after EoS or `extra` past the target."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs: list[list[int]] = [[] for _ in range(len(pairs))]
    for idx in _by_length_batches(pairs, batch_size):
        prompts = encode_batch(pairs[idx, 0], pairs[idx, 1])[:, :PROMPT_LEN].to(device)
        longest = int(seq_length(pairs[idx, 0], pairs[idx, 1]).max()) - PROMPT_LEN
        generated = model.generate(prompts, max_new_tokens=longest + extra, use_cache=use_cache).tolist()
        for i, row in zip(idx, generated):
            outputs[i] = row[: row.index(EOS) + 1] if EOS in row else row
    model.train(was_training)
    return outputs


# Largest attention tensor (elements) one scoring forward may build: 2**25 floats are 128 MB.
EVAL_BUDGET = 2**25


def _teacher_forced(model: CountingTransformer, tokens: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Argmax predictions (B, T-1) for tokens[:, 1:] given the true prefix, and their summed answer loss.

    A short batch is one forward pass. A long one goes through the KV cache a block of positions
    at a time, so the (B, heads, block, T) attention mask stays within EVAL_BUDGET elements
    whatever the length: the same predictions in bounded memory.
    """
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    B, T = inputs.shape
    answer = answer_mask(tokens)
    block = max(1, EVAL_BUDGET // (B * model.cfg.n_head * T))
    cache = None if block >= T else KVCache(model.cfg.n_layer)
    preds, loss = [], 0.0
    for start in range(0, T, min(block, T)):
        logits = model(inputs[:, start : start + block], cache)  # (B, block, V)
        mask = answer[:, start : start + block]
        preds.append(logits.argmax(-1))
        if mask.any():
            picked = targets[:, start : start + block][mask]
            loss += F.cross_entropy(logits[mask].float(), picked, reduction="sum").item()
    return torch.cat(preds, dim=1), loss


@torch.inference_mode()
def _first_errors_teacher_forced(model: CountingTransformer, pairs: np.ndarray, batch_size: int):
    """(first error index, wanted id, predicted id) per pair, and the mean answer loss, from one
    teacher-forced pass over the true sequence.

    Greedy decoding reproduces the target exactly iff the argmax is right at every answer position
    given the true prefix, and the first greedy mistake is the first teacher-forced one.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    k_all, want_all, got_all = (np.full(len(pairs), -1) for _ in range(3))
    loss_sum, n_answer_tokens = 0.0, 0
    for idx in _by_length_batches(pairs, batch_size):
        tokens = encode_batch(pairs[idx, 0], pairs[idx, 1]).to(device)
        pred, loss = _teacher_forced(model, tokens)
        pred = pred[:, PROMPT_LEN - 1 :]  # predictions of answer tokens
        target = tokens[:, PROMPT_LEN:]
        loss_sum, n_answer_tokens = loss_sum + loss, n_answer_tokens + int((target != PAD).sum())
        wrong = (pred != target) & (target != PAD)
        k = torch.where(wrong.any(1), wrong.float().argmax(1), torch.full_like(wrong[:, 0], -1, dtype=torch.long))
        safe = k.clamp(min=0)[:, None]
        k_all[idx], want_all[idx] = k.cpu().numpy(), target.gather(1, safe)[:, 0].cpu().numpy()
        got_all[idx] = pred.gather(1, safe)[:, 0].cpu().numpy()
    model.train(was_training)
    return k_all, want_all, got_all, loss_sum / max(1, n_answer_tokens)


def first_divergence(output: list[int], target: list[int]) -> tuple[int, int, int]:
    """(answer index, wanted id, written id) of the first place a generated answer leaves the target; -1s if none."""
    for k, want in enumerate(target):
        got = output[k] if k < len(output) else PAD
        if got != want:
            return k, want, got
    return -1, -1, -1


def evaluate_pairs(model: CountingTransformer, pairs: np.ndarray, batch_size: int = 512, generate: bool = False):
    """Score greedy answers for every pair: the project's one accuracy function.

    generate=False finds each greedy answer's first error in one teacher-forced pass (fast);
    generate=True really decodes (KV-cached) and also returns the outputs. Both give the same scores.
    """
    if generate:
        outputs, loss = generate_answers(model, pairs, batch_size), None
        firsts = [first_divergence(o, target_answer(a, b)) for o, (a, b) in zip(outputs, pairs.tolist())]
        k, want, got = (np.array(x) for x in zip(*firsts)) if firsts else (np.zeros(0, int),) * 3
    else:
        outputs = None
        k, want, got, loss = _first_errors_teacher_forced(model, pairs, batch_size)
    failure = np.array([classify(*x) for x in zip(k.tolist(), want.tolist(), got.tolist())], dtype="<U10")
    return GenerationResult(pairs, failure, first_error=k, first_wrong=got, outputs=outputs, answer_loss=loss)


def _length_buckets(lengths, width: int) -> dict[int, list[int]]:
    """Lengths grouped by n // width, in increasing order."""
    groups: dict[int, list[int]] = {}
    for n in sorted(lengths):
        groups.setdefault(n // width, []).append(n)
    return groups


def bucket_table(by_length: dict[int, float], width: int = 10) -> dict[str, float]:
    """Mean accuracy per bucket of `width` lengths, keyed like 'len_070-079'."""
    return {
        f"len_{k * width:03d}-{k * width + width - 1:03d}": float(np.mean([by_length[n] for n in ns]))
        for k, ns in _length_buckets(by_length, width).items()
    }


def format_example(tokenizer: CountingTokenizer, pair, output: list[int], ok: bool, max_words: int = 14) -> str:
    """`SoS 24 18 > 24 23 … 18 EoS ✅`, long answers elided in the middle."""
    words = tokenizer.decode(output).split() or ["(nothing)"]
    if len(words) > max_words:
        words = words[: max_words // 2] + ["…"] + words[-max_words // 2 :]
    return f"SoS {pair[0]} {pair[1]} > {' '.join(words)} {'✅' if ok else '❌'}"


def example_rows(model: CountingTransformer, result: GenerationResult, n: int) -> list[dict]:
    """Up to n examples, mistakes first, decoded for real (even if result was teacher-forced)."""
    order = np.argsort(result.correct, kind="stable")[:n]
    if result.outputs is not None:
        outputs = [result.outputs[i] for i in order]
    else:
        outputs = generate_answers(model, result.pairs[order])
    return [
        {
            "pair": result.pairs[i].tolist(),
            "output": out,
            "correct": bool(result.correct[i]),
            "length": int(result.lengths[i]),
            "failure": str(result.failure[i]),
        }
        for i, out in zip(order, outputs)
    ]


def examples(model: CountingTransformer, result: GenerationResult, tokenizer: CountingTokenizer, n: int) -> list[str]:
    """Up to n formatted examples, mistakes first."""
    rows = example_rows(model, result, n)
    return [format_example(tokenizer, r["pair"], r["output"], r["correct"]) for r in rows]


def format_counts(counts: dict) -> str:
    """'0 errors in 13,932 pairs (exact; error rate < 0.022% at 95%)' or '12 errors in 9,515 pairs (99.87%; ...)'."""
    e, n = counts["errors"], counts["pairs"]
    score = "exact" if e == 0 else f"{1 - e / n:.2%} right"
    return f"{e:,} errors in {n:,} pairs ({score}; error rate < {counts['error_rate_upper95']:.3%} at 95%)"


def format_report(result: GenerationResult, title: str) -> str:
    """Overall counts and kinds of first error, then every length: pairs, errors, exact match, upper bound."""
    c = result.counts()
    lines = [f"{title}: {format_counts(c)}", "first errors: " + ", ".join(f"{k} {v}" for k, v in c["kinds"].items())]
    lines.append("length   pairs  errors   exact   error < (95%)")
    for n, x in c["by_length"].items():
        up = error_upper95(x["errors"], x["pairs"])
        lines.append(f"{n:>6} {x['pairs']:>7,} {x['errors']:>7,} {1 - x['errors'] / x['pairs']:>7.1%} {up:>10.2%}")
    return "\n".join(lines)


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[CountingTransformer, ExperimentConfig]:
    """Rebuild the model and its config from a Lightning or train.py checkpoint (no Lightning needed)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; pass the path of a .ckpt file")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"{path} could not be read as a checkpoint ({type(err).__name__}); it may be truncated"
        ) from None
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
        raise CheckpointError(
            f"{path} does not fit this version of the model: {first}; docs/history.md names the commit that reads it"
        ) from None
    model.eval()
    return model, cfg


def score_sets(model: CountingTransformer, data: DataConfig, ood_val: np.ndarray, seed: int = 0, batch_size=512):
    """counts() of the model on each of report_sets, with its length range and whether it was sampled."""
    out = {}
    for name, (pairs, label) in report_sets(data, ood_val, seed).items():
        lo, hi = map(int, label.split("-"))
        total = pair_count(lo, hi, data.max_number, data.direction)
        counts = evaluate_pairs(model, pairs, batch_size).counts()
        out[name] = {"range": label, "sampled": len(pairs) < total - pairs_in_range(ood_val, lo, hi), **counts}
    return out


def sets_line(sets: dict[str, dict]) -> str:
    """One line: errors / pairs on each reported set, and whether the run is exact or meets the bar."""
    names = {"in_distribution": "in-distribution", "between": "between", "test": "test", "far": "longer"}
    parts = [
        f"{names[k]} {s['range']}: {s['errors']:,}/{s['pairs']:,} errors{' (sampled)' if s['sampled'] else ''}".strip()
        for k, s in sets.items()
    ]
    exact = all(s["errors"] == 0 for s in sets.values())
    verdict = "exact on all" if exact else "meets the bar" if meets_bar(sets) else "misses the bar"
    return f"Scored on every pair it was not chosen on: {', '.join(parts)}; {verdict}"


def read_prompts(path: Path, tokenizer: CountingTokenizer) -> np.ndarray:
    """(a, b) pairs from a file of `SoS a b >` lines; errors name the line."""
    if not path.is_file():
        raise ValueError(f"prompt file {path} not found")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            pairs.append(tokenizer.parse_prompt(line))
        except ValueError as err:
            raise ValueError(f"{path}:{number}: {err}") from None
    if not pairs:
        raise ValueError(f"prompt file {path} holds no prompts; write one 'SoS a b >' per line")
    return np.array(pairs, dtype=np.int64)


def override_data(cfg: ExperimentConfig, overrides: dict) -> None:
    """Apply data.KEY=VALUE overrides to a loaded checkpoint's config; the model it fixes must not change."""
    if any(not key.startswith("data.") for key in overrides):
        raise ConfigError(f"only data.KEY=VALUE overrides apply to a trained checkpoint, got {', '.join(overrides)}")
    vocab_size = cfg.model.vocab_size
    apply_overrides(cfg, overrides)
    if cfg.model.vocab_size != vocab_size:
        raise ConfigError("data.max_number sets the model's vocabulary; a trained checkpoint keeps its own")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Score a checkpoint by greedy generation, per length.")
    add = parser.add_argument
    add("--checkpoint", required=True, help="a .ckpt from train_lightning.py or train.py")
    add("--all_pairs", action="store_true", help="every pair of --min_len..--max_len not in ood_val (the default)")
    add("--min_len", type=int, help="shortest length scored (default: the test range, 70)")
    add("--max_len", type=int, help="longest length scored, inclusive (default: the test range, 150)")
    add("--per_length", type=int, help="a sample of at most this many pairs per length (default: every pair)")
    add("--sample_seed", type=int, default=0, help="which sample --per_length draws (default 0)")
    add("--split", choices=SPLITS, help="score one split file instead (test.txt holds 10 pairs per length)")
    add("--data_dir", help="split folder (default: the checkpoint's data.data_dir; made if missing)")
    add("--json", help="also write pairs, errors, the 95%% upper bound and per-length counts to this file")
    add("--prompts", help="file of 'SoS a b >' lines to answer instead of scoring")
    add("--output", help="where --prompts answers go (default: stdout)")
    add("--batch_size", type=int, default=512, help="most pairs per scoring batch")
    add("--generate", action="store_true", help="score by real decoding (slower; same numbers)")
    add("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    add("data_overrides", nargs="*", metavar="data.KEY=VALUE", help="change the checkpoint's data config")
    return parser


def _pairs_to_score(args, cfg: ExperimentConfig) -> tuple[np.ndarray, str]:
    """The pairs the command asks for and a title that says what they are."""
    if args.data_dir:
        cfg.data.data_dir = args.data_dir
    splits = ensure_splits(cfg.data)
    if args.split:
        return splits[args.split], f"{args.split} split"
    lo = cfg.data.test_min_len if args.min_len is None else args.min_len
    hi = cfg.data.test_max_len if args.max_len is None else args.max_len
    d = cfg.data
    pairs = pairs_for_range(lo, hi, d.max_number, args.per_length, args.sample_seed, d.direction, splits["ood_val"])
    total, left_out = pair_count(lo, hi, d.max_number, d.direction), pairs_in_range(splits["ood_val"], lo, hi)
    what = f"every {d.direction if d.direction == 'up' else 'two-way'} pair"
    if len(pairs) < total - left_out:
        what = f"a sample (seed {args.sample_seed}) of at most {args.per_length} pairs per length of {total:,}"
    return pairs, f"lengths {lo}-{hi}, {what}" + (f", {left_out:,} ood_val pairs left out" if left_out else "")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
        if not device.startswith(("cpu", "cuda")) or (device.startswith("cuda") and not torch.cuda.is_available()):
            raise ValueError(f"--device {device} is not available here; use --device cpu (or auto)")
        model, cfg = load_checkpoint(args.checkpoint, device)
        override_data(cfg, parse_overrides(args.data_overrides))
        tokenizer = CountingTokenizer(cfg.data.max_number)
        if args.prompts:
            return _answer_prompts(model, cfg, tokenizer, args)
        pairs, title = _pairs_to_score(args, cfg)
        started = time.perf_counter()
        result = evaluate_pairs(model, pairs, args.batch_size, generate=args.generate)
        seconds = time.perf_counter() - started
        print(format_report(result, title))
        print(f"scored {len(pairs):,} pairs in {seconds:.1f} s ({len(pairs) / max(seconds, 1e-9):,.0f} pairs/s)")
        for line in examples(model, result, tokenizer, 5):
            print("  " + line)
        if args.json:
            payload = {"checkpoint": str(args.checkpoint), "scored": title, **result.counts()}
            Path(args.json).write_text(json.dumps(payload, indent=1) + "\n")
    except (CheckpointError, DataError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _answer_prompts(model, cfg: ExperimentConfig, tokenizer: CountingTokenizer, args) -> int:
    pairs = read_prompts(Path(args.prompts), tokenizer)
    n_down = int((pairs[:, 0] > pairs[:, 1]).sum())
    if cfg.data.direction == "up" and n_down:
        print(f"warning: {n_down} prompt(s) count down; this model only ever saw up counts", file=sys.stderr)
    text = "".join(tokenizer.decode(o) + "\n" for o in generate_answers(model, pairs, args.batch_size))
    Path(args.output).write_text(text) if args.output else sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
