"""Show, token by token, how exact match and token accuracy are computed, and where an answer goes wrong.

    python debug/debug_accuracy.py --prompt "SoS 3 9 >" --prediction "3 4 5 6 EoS"
    python debug/debug_accuracy.py --checkpoint CKPT [--split test] [--n 3]
    python debug/debug_accuracy.py --checkpoint CKPT --prompt "SoS 12 8 >" --prompt "SoS 40 170 >"

Scores with the project's own pieces (target_answer, classify, evaluate_pairs), so what this shows is
exactly what every accuracy number in the project means.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_generation import EOS, PROMPT_LEN, SPLITS, CountingTokenizer, answer_loss, encode_batch, make_splits  # noqa: E402
from evaluate import (  # noqa: E402
    CheckpointError,
    classify,
    evaluate_pairs,
    first_divergence,
    load_checkpoint,
    target_answer,
)
from model import CountingTransformer  # noqa: E402

HOW_SCORED = """How an answer is scored (evaluate.py):
  target       the tokens that must follow '>': a, a±1, ..., b, EoS (data_generation.target_answer)
  exact match  1 if the greedy answer equals the target token for token, EoS included, else 0;
               a split's accuracy is the mean of this over its sequences
  first error  the first answer index where the two differ, named by evaluate.classify
  token acc.   what training logs (data_generation.answer_loss): the share of answer positions where the
               model's top token, given the TRUE prefix (teacher forcing), is the target token"""

MEANING = {
    "correct": "the whole answer matches",
    "start": "index 0 must repeat a",
    "direction": "here the model chooses a+1 or a-1, which needs comparing a with b",
    "miscount": "a number after index 1 is wrong: skipped, repeated or off",
    "early_stop": "EoS came before b was reached",
    "no_stop": "every number a..b was right, but no EoS came right after b",
}


def stop_report(output: list[int], target: list[int]) -> str:
    """Whether the answer stopped early, on time, late or never, against the target's EoS position."""
    due = len(target) - 1
    if EOS not in output:
        return f"never: no EoS in {len(output)} tokens (evaluate.py cuts a generation 8 tokens past the target)"
    at = output.index(EOS)
    if at < due:
        return f"early: EoS at answer index {at}, the target's at {due} ({due - at} tokens too few)"
    if at > due:
        return f"late: EoS at answer index {at}, the target's at {due} ({at - due} tokens too many)"
    return f"on time: EoS at answer index {at}, as in the target"


def rows_to_show(n_rows: int, marks: list[int], keep: int = 2) -> list[int | None]:
    """Row indices to print: the ends and the neighbourhood of each mark; None stands for a skipped run."""
    wanted = {i for i in range(n_rows) if i < keep or i >= n_rows - keep}
    wanted |= {i for m in marks for i in range(m - keep, m + keep + 1) if 0 <= i < n_rows}
    shown: list[int | None] = []
    for i in sorted(wanted):
        if shown and shown[-1] is not None and i > shown[-1] + 1:
            shown.append(None)
        shown.append(i)
    return shown


def explain(
    tokenizer: CountingTokenizer,
    pair: tuple[int, int],
    output: list[int],
    forced: tuple[list[int], float] | None = None,
) -> str:
    """A readable account of one answer: table, exact match, first error, stop, and (with a model) token accuracy.

    forced is the model's top token at each answer position given the true prefix, with answer_loss's accuracy.
    """
    a, b = pair
    target = target_answer(a, b)
    k, want, got = first_divergence(output, target)  # the comparison evaluate_pairs(generate=True) makes
    failure = classify(k, want, got)

    def word(ids: list[int], i: int) -> str:
        return tokenizer.decode([ids[i]]) if i < len(ids) else "-"

    n_rows = max(len(target), len(output))
    lines = [f"SoS {a} {b} >  target {len(target)} tokens, generated {len(output)}"]
    header = f"  {'index':>5}  {'target':>6}  {'generated':>9}"
    lines.append(header + ("  teacher-forced" if forced is not None else ""))
    for i in rows_to_show(n_rows, [k] if k >= 0 else []):
        if i is None:
            lines.append("    ...")
            continue
        mark = "✓" if i < len(target) and i < len(output) and output[i] == target[i] else "✗"
        row = f"  {i:>5}  {word(target, i):>6}  {word(output, i):>9} {mark}"
        if forced is not None:
            row += f"  {word(forced[0], i):>7} {'✓' if i < len(target) and forced[0][i] == target[i] else '✗'}"
        lines.append(row + ("   <- first divergence" if i == k else ""))
    if failure == "correct":
        lines.append(f"  exact match: 1 (all {len(target)} target tokens match, EoS included)")
    else:
        lines.append(
            f"  exact match: 0 (first divergence at answer index {k}: wanted {word(target, k)}, got {word(output, k)})"
        )
    lines.append(f"  first error: {'none' if k < 0 else f'{failure} at answer index {k}'} ({MEANING[failure]})")
    lines.append(f"  stop: {stop_report(output, target)}")
    agree = sum(1 for i, t in enumerate(target) if i < len(output) and output[i] == t)
    lines.append(
        f"  position-by-position agreement: {agree}/{len(target)} (not a project metric:"
        " after one skipped number every later position disagrees)"
    )
    if forced is not None:
        right = sum(f == t for f, t in zip(forced[0], target))
        lines.append(
            f"  token accuracy (teacher-forced column): {right}/{len(target)} = {right / len(target):.1%}"
            f" (answer_loss reports {forced[1]:.1%})"
        )
    return "\n".join(lines)


@torch.no_grad()
def teacher_forced(model: CountingTransformer, pair: tuple[int, int]) -> tuple[list[int], float]:
    """The model's top token at each answer position given the true prefix, and answer_loss's token accuracy."""
    tokens = encode_batch(np.array([pair[0]]), np.array([pair[1]]))
    logits = model(tokens[:, :-1])
    _, accuracy = answer_loss(logits, tokens)
    return logits.argmax(-1)[0, PROMPT_LEN - 1 :].tolist(), accuracy.item()


def from_checkpoint(args: argparse.Namespace) -> int:
    """Generate with the checkpoint's model and explain a few answers (mistakes first for a split)."""
    model, cfg = load_checkpoint(args.checkpoint)
    tokenizer = CountingTokenizer(cfg.data.max_number)
    if args.prompt:
        pairs = np.array([tokenizer.parse_prompt(p) for p in args.prompt], dtype=np.int64)
    else:
        split = make_splits(cfg.data)[args.split]
        scored = evaluate_pairs(model, split)
        s = scored.summary()
        print(f"{args.split} split: exact match {scored.correct.sum()}/{len(split)} = {s['exact_match']:.1%}")
        print("  first errors: " + ", ".join(f"{k} {int((scored.failure == k).sum())}" for k in MEANING))
        pairs = split[np.argsort(scored.correct, kind="stable")[: args.n]]  # mistakes first
    result = evaluate_pairs(model, pairs, generate=True)
    print(HOW_SCORED + "\n")
    for pair, output in zip(pairs.tolist(), result.outputs):
        print(explain(tokenizer, tuple(pair), output, teacher_forced(model, tuple(pair))) + "\n")
    print(f"exact match over these {len(pairs)}: {result.correct.sum()}/{len(pairs)} = {result.correct.mean():.1%}")
    return 0


def from_text(args: argparse.Namespace) -> int:
    """Explain hand-written predictions (no model, so no teacher-forced token accuracy)."""
    tokenizer = CountingTokenizer(args.max_number)
    print(HOW_SCORED + "\n")
    print("A hand-written prediction has no model behind it: token accuracy needs the model's guess at every")
    print("position given the true prefix, so only exact match, first error and stopping are shown.\n")
    for prompt, prediction in zip(args.prompt, args.prediction):
        pair = tokenizer.parse_prompt(prompt)
        output = tokenizer.encode(prediction)
        if EOS in output[:-1]:
            print(f"(ignoring the tokens after the first EoS in {prediction!r}: generation stops there)")
            output = output[: output.index(EOS) + 1]
        print(explain(tokenizer, pair, output) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Explain exact match, token accuracy and first errors on examples.")
    parser.add_argument("--checkpoint", help="a .ckpt to generate answers with (train.py or train_lightning.py)")
    parser.add_argument("--prompt", action="append", default=[], help="'SoS a b >' (repeatable)")
    parser.add_argument("--prediction", action="append", default=[], help="hand-written answer, one per --prompt")
    parser.add_argument(
        "--split", default="test", choices=SPLITS, help="with --checkpoint and no --prompt (default test)"
    )
    parser.add_argument("--n", type=int, default=3, help="examples from --split, mistakes first (default 3)")
    parser.add_argument(
        "--max_number", type=int, default=199, help="largest number for hand-written input (default 199)"
    )
    args = parser.parse_args(argv)
    if args.checkpoint and args.prediction:
        parser.error("--prediction is for hand-written answers; with --checkpoint the model generates them")
    if not args.checkpoint and (not args.prompt or len(args.prompt) != len(args.prediction)):
        parser.error("without --checkpoint, give one --prediction for each --prompt")
    try:
        return from_checkpoint(args) if args.checkpoint else from_text(args)
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
