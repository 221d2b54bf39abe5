"""Generation accuracy: the one scorer used by training callbacks, train.py, debug tools and this CLI.

python evaluate.py --checkpoint CKPT [--split test] [--min_len 151 --max_len 200] [--json FILE] [data.KEY=VALUE ...]
python evaluate.py --checkpoint CKPT --prompts prompts.txt --output answers.txt
"""

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from config import ConfigError, ExperimentConfig, apply_overrides, from_dict, parse_overrides
from data_generation import (
    EOS,
    PAD,
    PROMPT_LEN,
    SPLITS,
    CountingTokenizer,
    DataError,
    answer_loss,
    encode_batch,
    ensure_splits,
    pairs_of_length,
    seq_length,
    target_answer,
)
from model import CountingTransformer

FAILURES = ("correct", "start", "direction", "miscount", "early_stop", "no_stop")


class CheckpointError(Exception):
    """A checkpoint path is missing, damaged or not ours; the message says so."""


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


def _by_length_batches(pairs: np.ndarray, batch_size: int):
    """Index batches of pairs sorted by length, so each batch pads little and stops early."""
    order = np.argsort(seq_length(pairs[:, 0], pairs[:, 1]), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


@torch.no_grad()
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
    n = int((targets[:, PROMPT_LEN - 1 :] != PAD).sum())
    block = max(1, EVAL_BUDGET // (B * model.cfg.n_head * T))
    if block >= T:
        logits = model(inputs)
        return logits.argmax(-1), answer_loss(logits, tokens)[0].item() * n
    answer = targets != PAD
    answer[:, : PROMPT_LEN - 1] = False  # the prompt's tokens are given, not predicted
    caches = [{} for _ in model.blocks]
    preds, loss = [], 0.0
    for start in range(0, T, block):
        logits = model(inputs[:, start : start + block], caches, start=start)  # (B, block, V)
        mask = answer[:, start : start + block]
        preds.append(logits.argmax(-1))
        if mask.any():
            loss += F.cross_entropy(
                logits[mask].float(), targets[:, start : start + block][mask], reduction="sum"
            ).item()
    return torch.cat(preds, dim=1), loss


@torch.no_grad()
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


def evaluate_pairs(model: CountingTransformer, pairs: np.ndarray, batch_size: int = 512, generate: bool = False):
    """Score greedy answers for every pair: the project's one accuracy function.

    generate=False finds each greedy answer's first error in one teacher-forced pass (fast);
    generate=True really decodes (KV-cached) and also returns the outputs. Both give the same scores.
    """
    if generate:
        outputs, loss = generate_answers(model, pairs, batch_size), None
        firsts = [_first_divergence(o, target_answer(a, b)) for o, (a, b) in zip(outputs, pairs.tolist())]
        k, want, got = (np.array(x) for x in zip(*firsts))
    else:
        outputs = None
        k, want, got, loss = _first_errors_teacher_forced(model, pairs, batch_size)
    failure = np.array([classify(*x) for x in zip(k.tolist(), want.tolist(), got.tolist())])
    return GenerationResult(pairs, failure, first_error=k, first_wrong=got, outputs=outputs, answer_loss=loss)


def _first_divergence(output: list[int], target: list[int]) -> tuple[int, int, int]:
    for k, want in enumerate(target):
        got = output[k] if k < len(output) else PAD
        if got != want:
            return k, want, got
    return -1, -1, -1


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


def format_report(result: GenerationResult, title: str) -> str:
    """A readable per-length table: buckets of 10, then every length."""
    s = result.summary()
    lines = [
        f"{title}: exact match {s['exact_match']:.1%} over {s['n']} sequences "
        f"(worst length {s['min_over_lengths']:.1%}; all numbers right {s['numbers_right']:.1%}, "
        f"stop errors {s['stop_error_rate']:.1%})",
        "first errors: " + ", ".join(f"{k} {s[k + '_rate']:.1%}" for k in FAILURES[1:]),
        "by bucket:    " + "  ".join(f"{k[4:]} {v:.0%}" for k, v in bucket_table(result.by_length()).items()),
        "every length:",
    ]
    items = [f"{n:>3}:{acc:>5.0%}" for n, acc in result.by_length().items()]
    lines += ["  " + "  ".join(items[i : i + 10]) for i in range(0, len(items), 10)]
    return "\n".join(lines)


def length_curve_figure(
    curves: dict[str, list[dict[int, float]]], train_max_len: int, title: str = "", ax=None, bucket: int = 1
):
    """Exact match vs length: one line per name (median over its runs, min-max shaded), training range marked.

    bucket > 1 averages each run over lengths [k*bucket, (k+1)*bucket) first, so many lines stay
    readable. Draws into ax if given (for a panel of a larger figure); returns the figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4)) if ax is None else (ax.figure, ax)
    palette = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20").colors  # one colour per line
    for i, (name, runs) in enumerate(curves.items()):
        runs = [_bucketed(run, bucket) for run in runs]
        lengths = sorted(set().union(*runs))
        grid = np.array([[run.get(n, np.nan) for n in lengths] for run in runs])
        color, width = palette[i % len(palette)], 2.5 if i == 0 else 1.5  # the first name: thicker, on top
        label = f"{name} (n={len(runs)})"
        ax.plot(lengths, np.nanmedian(grid, 0), ".-", ms=3, color=color, lw=width, zorder=3 - (i > 0), label=label)
        if len(runs) > 1:  # the same colour as its line
            ax.fill_between(lengths, np.nanmin(grid, 0), np.nanmax(grid, 0), color=color, alpha=0.2)
    ax.axvspan(0, train_max_len + 0.5, color="grey", alpha=0.15, label=f"training lengths (<= {train_max_len})")
    ax.set(xlabel="sequence length (tokens)", ylabel="exact match", ylim=(-0.02, 1.02), xlim=(0, None))
    ax.set_title(title or "Counting: generation accuracy by length")
    ax.legend(loc="lower left", **({} if bucket > 1 else {"fontsize": 8}))
    fig.tight_layout()
    return fig


def _bucketed(by_length: dict[int, float], width: int) -> dict[float, float]:
    """Mean accuracy per bucket of `width` lengths, keyed by the mean length it covers (for plotting)."""
    if width <= 1:
        return by_length
    buckets = list(_length_buckets(by_length, width).values())
    if len(buckets) > 1 and len(buckets[-1]) < width // 2:  # a lone last length (e.g. 200) joins its neighbours
        buckets[-2:] = [buckets[-2] + buckets[-1]]
    return {float(np.mean(ns)): float(np.mean([by_length[n] for n in ns])) for ns in buckets}


# Number features that lost to the recipe; their code is at this commit. Each key: the value meaning "off".
LAST_COMMIT_WITH_RETIRED = "33474da"
RETIRED_OFF = {"number_waves": "random", "value_waves": 0, "thermometer": False}


def _retired_options(model_section: dict) -> str:
    """Drop retired keys a checkpoint holds at their "off" value; name the first one it really used."""
    if model_section.get("number_encoding") == "value":
        return "model.number_encoding=value"
    saved_before_number_waves = "number_waves" not in model_section and "value_bias" not in model_section
    if model_section.get("number_encoding") == "order+code" and saved_before_number_waves:
        return "model.number_waves=harmonic"  # the only waves then
    for key, off in RETIRED_OFF.items():
        value = model_section.pop(key, off)
        if value != off:
            return f"model.{key}={value}"
    return ""


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[CountingTransformer, object]:
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
    retired = _retired_options(config.get("model", {}))
    if retired:
        raise CheckpointError(
            f"{path} uses {retired}, removed after commit {LAST_COMMIT_WITH_RETIRED}; "
            f"score it from that commit (git checkout {LAST_COMMIT_WITH_RETIRED})"
        )
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


def pairs_for_range(
    min_len: int, max_len: int, max_number: int, per_length: int, seed: int = 0, direction: str = "both"
) -> np.ndarray:
    """Up to per_length random distinct pairs at every length in [min_len, max_len] (of `direction`)."""
    if not 6 <= min_len <= max_len:
        raise ValueError(f"lengths must satisfy 6 <= --min_len <= --max_len, got {min_len}..{max_len}")
    if max_len - 6 > max_number:
        raise ValueError(f"length {max_len} needs numbers up to {max_len - 6}, beyond max_number={max_number}")
    rng = np.random.default_rng(seed)
    chunks = []
    for n in range(min_len, max_len + 1):
        pool = pairs_of_length(n, max_number, direction)
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


def override_data(cfg: ExperimentConfig, overrides: dict) -> None:
    """Apply data.KEY=VALUE overrides to a loaded checkpoint's config; the model it fixes must not change."""
    if any(not key.startswith("data.") for key in overrides):
        raise ConfigError(f"only data.KEY=VALUE overrides apply to a trained checkpoint, got {', '.join(overrides)}")
    vocab_size = cfg.model.vocab_size
    apply_overrides(cfg, overrides)
    if cfg.model.vocab_size != vocab_size:
        raise ConfigError("data.max_number sets the model's vocabulary; a trained checkpoint keeps its own")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score a checkpoint by greedy generation, per length.")
    parser.add_argument("--checkpoint", required=True, help="a .ckpt from train_lightning.py or train.py")
    parser.add_argument("--split", default="test", choices=SPLITS, help="split to score (default: test)")
    parser.add_argument(
        "--data_dir", default=None, help="split folder (default: the checkpoint's data.data_dir; made if missing)"
    )
    parser.add_argument("--min_len", type=int, help="score fresh sequences of these lengths instead of a split")
    parser.add_argument("--max_len", type=int, help="upper end of --min_len's range (inclusive)")
    parser.add_argument("--per_length", type=int, default=10, help="sequences per length with --min_len (default 10)")
    parser.add_argument("--json", help="also write {overall, by_length, summary} to this file")
    parser.add_argument("--prompts", help="file of 'SoS a b >' lines to answer instead of scoring")
    parser.add_argument("--output", help="where --prompts answers go (default: stdout)")
    parser.add_argument("--batch_size", type=int, default=512)
    parser.add_argument("--generate", action="store_true", help="score by real decoding (slower; same numbers)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument(
        "data_overrides",
        nargs="*",
        metavar="data.KEY=VALUE",
        help="change the checkpoint's data config, e.g. data.n_ood_val_per_length=20 (older checkpoints had 5)",
    )
    args = parser.parse_args(argv)
    try:
        device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
        if not device.startswith(("cpu", "cuda")) or (device.startswith("cuda") and not torch.cuda.is_available()):
            raise ValueError(f"--device {device} is not available here; use --device cpu (or auto)")
        model, cfg = load_checkpoint(args.checkpoint, device)
        override_data(cfg, parse_overrides(args.data_overrides))
        tokenizer = CountingTokenizer(cfg.data.max_number)
        if args.prompts:
            pairs = read_prompts(Path(args.prompts), tokenizer)
            if cfg.data.direction == "up" and (pairs[:, 0] > pairs[:, 1]).any():
                n_down = int((pairs[:, 0] > pairs[:, 1]).sum())
                print(f"warning: {n_down} prompt(s) count down; this model only ever saw up counts", file=sys.stderr)
            answers = generate_answers(model, pairs, args.batch_size)
            text = "".join(tokenizer.decode(o) + "\n" for o in answers)
            Path(args.output).write_text(text) if args.output else sys.stdout.write(text)
            return 0
        if args.min_len is not None or args.max_len is not None:
            lo = cfg.data.test_min_len if args.min_len is None else args.min_len
            hi = cfg.data.test_max_len if args.max_len is None else args.max_len
            pairs = pairs_for_range(lo, hi, cfg.data.max_number, args.per_length, direction=cfg.data.direction)
            title = f"lengths {lo}-{hi}"
        else:
            if args.data_dir:
                cfg.data.data_dir = args.data_dir
            pairs, title = ensure_splits(cfg.data)[args.split], f"{args.split} split"
        result = evaluate_pairs(model, pairs, args.batch_size, generate=args.generate)
        print(format_report(result, title))
        for line in examples(model, result, tokenizer, 5):
            print("  " + line)
        if args.json:
            summary = result.summary()
            by_length = {str(k): v for k, v in result.by_length().items()}
            payload = {"overall": summary["exact_match"], "by_length": by_length, "summary": summary}
            Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    except (CheckpointError, DataError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
