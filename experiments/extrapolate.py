"""How far each model counts: exact match at log-spaced lengths out to 6,000 tokens.

    python experiments/sweep.py --rows recipe_n600,recipe_minus_value_bias_n600,standard_nope_up_n600,\
recipe_feature_head_n6000,standard_nope_up_n6000 --jobs 2 --runs outputs/wide   # 5 seeds each
    python experiments/sweep.py --rows recipe_feature_head_minus_value_bias_n6000 \
        --seeds 0-2 --jobs 2 --runs outputs/wide                      # 3 seeds
    python experiments/sweep.py --rows standard_nope_both_plus_value_bias_feature_head_n6000 \
        --jobs 2 --runs outputs/wide                                  # 5 seeds
    python experiments/sweep.py --report --rows wide --runs outputs/wide --out experiments/results/wide
    python experiments/extrapolate.py [--runs outputs/wide] [--out experiments/results/wide] [--jobs 2]

The wide rows (`*_n600`, `*_n6000`) train on lengths <= 60 with numbers 0..599 or 0..5999 and keep
the checkpoint with the best ood_val score (70-150), as every run does. This script scores each
finished run's best checkpoint at every length of --lengths on up to --per_length pairs drawn with the
run's own seed (every pair where a length has fewer), teacher-forced in bounded memory
(evaluate.EVAL_BUDGET), one job per run (experiments/runner.py) so each run's peak memory is its own.
It writes extrapolation.{json,md,png} into --out: the median over seeds and the errors / pairs at each
length, where the median first drops below 99% and 50%, the kinds of error, and time and memory.
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import runner  # first: it puts the project's root on sys.path
import sweep

from config import ConfigError, ExperimentConfig, parse_overrides
from data_generation import pairs_for_range
from evaluate import evaluate_pairs, load_checkpoint

LENGTHS = (30, 60, 70, 100, 150, 200, 300, 400, 500, 600, 1000, 2000, 4000, 6000)
PER_LENGTH = 200  # pairs per length; a length with fewer (12 at 6,000 of 0..5999) is scored whole
KINDS = ("early_stop", "no_stop", "direction", "miscount", "start")
WIDE_ROWS = [n for n, r in sweep.ROWS.items() if r.panel == "wide"]
TRAIN_MAX_LEN = ExperimentConfig().data.train_max_len  # every wide row trains on the default lengths


def score_run(run: Path, lengths: list[int], per_length: int) -> dict:
    """Score one run's best checkpoint at each length, shortest first, on a sample drawn with the run's own
    seed (every pair where a length has per_length or fewer); peak memory is this process's so far."""
    model, cfg = load_checkpoint(run / "checkpoints" / "best.ckpt")
    out = {"lengths": lengths, "per_length": per_length, "max_number": cfg.data.max_number, "by_length": {}}
    for length in [n for n in lengths if n - 6 <= cfg.data.max_number]:  # longer counts need larger numbers
        pairs = pairs_for_range(length, length, cfg.data.max_number, per_length, cfg.train.seed, cfg.data.direction)
        started = time.perf_counter()
        counts = evaluate_pairs(model, pairs, batch_size=8).counts()
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KB
        out["by_length"][str(length)] = {**counts, "seconds": time.perf_counter() - started, "peak_rss_mb": peak_mb}
        print(f"{run.name} length {length}: {counts['errors']} errors in {counts['pairs']} pairs", flush=True)
    (run / "extrapolation.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def scored(run: Path, lengths: list[int], per_length: int) -> dict | None:
    path = run / "extrapolation.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    return result if result["lengths"] == lengths and result["per_length"] == per_length else None


def first_below(medians: dict[int, float], level: float) -> int | None:
    """The shortest length beyond the training range whose median is under level."""
    return next((n for n, v in sorted(medians.items()) if n > TRAIN_MAX_LEN and v < level), None)


def report(results: dict[str, list[dict]], out: Path) -> None:
    """extrapolation.json, .md and .png from {row: [per-seed results]}."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "extrapolation.json").write_text(json.dumps(results, indent=1) + "\n")
    lengths = sorted({int(n) for runs in results.values() for r in runs for n in r["by_length"]})
    head = "| row | seeds | " + " | ".join(str(n) for n in lengths) + " | first < 99% | first < 50% |"
    lines = [head, "|" + "---|" * (len(lengths) + 4)]
    kinds = ["| row | length | errors | " + " | ".join(KINDS) + " |", "|" + "---|" * (len(KINDS) + 3)]
    cost = ["| length | median seconds per run | largest peak memory (MB) |", "|---|---|---|"]
    for name, runs in results.items():
        at = {n: [r["by_length"][str(n)] for r in runs if str(n) in r["by_length"]] for n in lengths}
        med = {n: float(np.median([s["exact_match"] for s in at[n]])) for n in lengths if at[n]}
        cells = [_cell(med[n], at[n]) if at[n] else "-" for n in lengths]
        below = [first_below(med, level) for level in (0.99, 0.5)]
        marks = " | ".join(str(b or "-") for b in below)
        lines.append(f"| `{name}` | {len(runs)} | " + " | ".join(cells) + f" | {marks} |")
        for n in lengths:
            errors = sum(s["errors"] for s in at[n])
            if errors:
                counts = " | ".join(str(sum(s["kinds"][k] for s in at[n])) for k in KINDS)
                kinds.append(f"| `{name}` | {n} | {errors} | {counts} |")
    for n in lengths:
        runs_at = [r["by_length"][str(n)] for runs in results.values() for r in runs if str(n) in r["by_length"]]
        seconds = np.median([s["seconds"] for s in runs_at])
        cost.append(f"| {n} | {seconds:.2f} | {max(s['peak_rss_mb'] for s in runs_at):.0f} |")
    md = "\n".join(
        [
            "Exact match by length: the median over seeds, then errors / pairs over all seeds together (each seed",
            "scores its own sample of up to " + f"{PER_LENGTH} pairs per length, every pair where a length has fewer):",
            "",
            *lines,
            "",
            *(
                ["Kinds of first error, summed over seeds, where there are any:", "", *kinds]
                if any(s["errors"] for runs in results.values() for r in runs for s in r["by_length"].values())
                else ["No errors at any length, so no kinds of first error."]
            ),
            "",
            "Cost of scoring one run at each length (teacher-forced; peak memory of the process so far):",
            "",
            *cost,
        ]
    )
    (out / "extrapolation.md").write_text(md + "\n")
    figure(results, out / "extrapolation.png")
    print(md)
    print(f"Wrote {out}/extrapolation.json, .md and .png")


def _cell(median: float, seeds: list[dict]) -> str:
    """'100% (0/1,000)': the median seed's exact match, then errors / pairs of every seed together."""
    errors, pairs = sum(s["errors"] for s in seeds), sum(s["pairs"] for s in seeds)
    return f"{median:.1%} ({errors:,}/{pairs:,})"


def figure(results: dict[str, list[dict]], path: Path) -> None:
    """Error rate against length (log-log), one panel per number range, the recipe's curve on top."""
    import matplotlib.pyplot as plt

    from plots import Curve, length_panel

    panels = {}
    for name, runs in results.items():
        n = runs[0]["max_number"] + 1  # the row's number range: numbers 0..n-1
        recipe = name.startswith("recipe") and "minus_value_bias" not in name
        kind = "recipe" if recipe else next(k for k in ("plus_value_bias", "minus_value_bias", "nope") if k in name)
        color = sweep.COLORS[kind]
        words = {
            "recipe": "the recipe",
            "plus_value_bias": "standard + the value bias (counting_small's model)",
            "minus_value_bias": "the recipe, no value bias",
            "nope": "paper_count's standard model",
        }[kind]
        counts = [{int(k): (s["errors"], s["pairs"]) for k, s in r["by_length"].items()} for r in runs]
        panels.setdefault(n, []).append(Curve(words, counts, color, headline=recipe))
    with plt.rc_context({"font.size": 12}):
        fig, axes = plt.subplots(1, len(panels), figsize=(7.6 * len(panels), 5.4), squeeze=False)
        for ax, (n, curves) in zip(axes[0], sorted(panels.items())):
            ticks = [x for x in (30, 60, 150, 600, 2000, 6000) if x <= n]
            title = f"Numbers 0..{n - 1}: trained on lengths <= {TRAIN_MAX_LEN}, counted to {n:,}"
            length_panel(ax, curves, TRAIN_MAX_LEN, title, log_errors=True, bucket=1, xticks=ticks, log_x=True)
        fig.tight_layout()
        fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="outputs/wide", help="the wide rows' run folders (default outputs/wide)")
    parser.add_argument("--out", default="experiments/results/wide", help="where extrapolation.* go")
    parser.add_argument("--rows", default=",".join(WIDE_ROWS), help="comma list of rows (default: the wide rows)")
    parser.add_argument("--seeds", default="0-4", help="seeds, e.g. 0-4 (default 0-4)")
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)), help="comma list of sequence lengths")
    parser.add_argument("--per_length", type=int, default=PER_LENGTH, help=f"pairs per length (default {PER_LENGTH})")
    parser.add_argument("overrides", nargs="*", help="the key=value overrides the runs were trained with, if any")
    runner.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        lengths = [int(x) for x in args.lengths.split(",")]
        rows, seeds, runs = args.rows.split(","), sweep.parse_seeds(args.seeds), Path(args.runs)
        extra = parse_overrides(args.overrides)
        unknown = [r for r in rows if r not in sweep.ROWS]
        if unknown:
            raise ConfigError(f"unknown row {unknown[0]!r}; choose from {', '.join(WIDE_ROWS)}")
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finished = [
        (name, sweep.run_dir(runs, name, s))
        for name in rows
        for s in seeds
        if sweep.finished_record(sweep.row_config(name, s, runs, extra))
    ]
    if not finished:
        print(f"error: no finished runs of {', '.join(rows)} in {runs}/; train them with sweep.py", file=sys.stderr)
        return 1
    todo = [run for _, run in finished if not scored(run, lengths, args.per_length)]
    print(f"{len(finished)} finished runs, {len(todo)} to score ({args.jobs} at a time)", flush=True)
    calls = [
        ("extrapolate", "score_run", str(run / "extrapolation.log"), (run, lengths, args.per_length)) for run in todo
    ]
    failed = sum(r is None for r in runner.run_jobs(calls, args, runs))
    results: dict[str, list[dict]] = {}
    for name, run in finished:
        result = scored(run, lengths, args.per_length)
        if result:
            results.setdefault(name, []).append(result)
    report(results, Path(args.out))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
