"""Train several recipes x seeds one after another, score each best checkpoint, and tabulate/plot.

    python experiments/sweep.py --variants recipe,value_numbers --seeds 0,1,2,3,4 --out experiments/results
    python experiments/sweep.py --quick        # two recipes, one seed, few steps: a few minutes

Model selection uses ood_val only (the checkpoint monitor); the test split is only reported.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import OOD_VAL_5 as DATA_OOD_VAL_5  # noqa: E402
from config import ConfigError, load_config, parse_overrides  # noqa: E402
from data_generation import ensure_splits  # noqa: E402
from evaluate import evaluate_pairs, length_curve_figure, load_checkpoint, pairs_for_range  # noqa: E402
from train_lightning import train  # noqa: E402

# What the preset was when a variant was measured; each variant pins it, so it rebuilds exactly.
OOD_VAL_5 = {f"data.{k}": v for k, v in DATA_OOD_VAL_5.items()}  # before ood_val grew to 20 per length
NO_VALUE_BIAS = {**OOD_VAL_5, "model.value_bias": False, "model.value_bias_scaled": False}  # before value_bias
STEPS_3000 = {**NO_VALUE_BIAS, "train.max_steps": 3000}  # before the preset moved to 4500 steps
WIDTH_64 = {**STEPS_3000, "model.d_model": 64, "model.d_ff": 256}  # before it moved to width 96


def _baseline(pos_encoding: str, **extra) -> dict:
    """A plain transformer on the fixed train split: every head uses pos_encoding, numbers are free vectors."""
    return {
        **WIDTH_64,
        "data.sampling": "fixed",
        "model.pos_encoding": pos_encoding,
        "model.local_heads": 0,
        "model.number_encoding": "learned",
        "model.scalable_softmax": False,
        **extra,
    }


# Each recipe is a set of overrides on the base preset; "recipe" is the preset itself.
VARIANTS = {
    "recipe": {},
    # the recipe with checkpoints chosen on 5 ood_val sequences per length instead of 20
    "recipe_ood_val_5": OOD_VAL_5,
    # the previous preset: the recipe with a fixed value bias, not scaled by s*log n
    "value_bias_unscaled": {**OOD_VAL_5, "model.value_bias_scaled": False},
    # the preset before that: value_bias_unscaled without the value bias in its global heads
    "no_value_bias": NO_VALUE_BIAS,
    # no_value_bias with 5x the weight decay: less room to memorize close pairs one by one
    "weight_decay_0.5": {**NO_VALUE_BIAS, "train.weight_decay": 0.5},
    # the preset before that: no_value_bias trained for 3000 steps instead of 4500
    "no_value_bias_3000_steps": STEPS_3000,
    # no_value_bias_3000_steps plus a thermometer code: fine order for close pairs that never repeats
    "thermometer": {**STEPS_3000, "model.thermometer": True},
    # the preset before that: no_value_bias_3000_steps at width 64 (d_ff 256)
    "no_value_bias_d64": WIDTH_64,
    # no_value_bias_d64 plus the value encoding's 8 sinusoids: fine order for close pairs
    "value_waves": {**WIDTH_64, "model.value_waves": 8},
    # the strict recipe before that: waves with periods 3-24 (they repeat every 24), no order stretch
    "harmonic_waves": {**WIDTH_64, "model.number_waves": "harmonic", "model.order_stretch": 1.0},
    # the earlier strict recipe: sinusoidal value features, fixed train split
    "value_numbers": {**WIDTH_64, "model.number_encoding": "value", "data.sampling": "fixed"},
    # labelled option, not the strict task: the counting_small_prefix preset
    "value_numbers+prefix": {
        **WIDTH_64,
        "model.number_encoding": "value",
        "data.sampling": "fixed",
        "data.prefix_fraction": 0.5,
    },
    "nope": _baseline("none"),
    "rope": _baseline("rope"),
    "sinusoidal": _baseline("sinusoidal"),
    "learned_shift": _baseline("learned", **{"model.random_pos_offset": True}),
}
BASELINES = ("nope", "rope", "sinusoidal", "learned_shift")  # these run on --baseline_seeds
BAR = {"overall": 0.99, "min_length": 0.97, "in_distribution": 0.995}


def run_one(base: str, name: str, seed: int, out: Path, extra: dict) -> dict:
    """Train one (recipe, seed), then score its best checkpoint on val, test and 151-200."""
    run_dir = out / "runs" / f"{name}_seed{seed}"
    overrides = {
        **VARIANTS[name],
        **extra,
        "train.seed": seed,
        "train.output_dir": str(run_dir),
        "train.logger": "none",
    }
    cfg = load_config(base, overrides)
    started = time.perf_counter()
    trainer = train(cfg, overwrite=True)
    wall = time.perf_counter() - started
    model, cfg = load_checkpoint(trainer.checkpoint_callback.best_model_path)
    splits = ensure_splits(cfg.data)
    test = evaluate_pairs(model, splits["test"])
    val = evaluate_pairs(model, splits["val"]).summary()
    record = {
        "variant": name,
        "seed": seed,
        "wall_s": round(wall, 1),
        "test": test.summary(),
        "test_by_length": {str(k): v for k, v in test.by_length().items()},
        "in_distribution": val["exact_match"],
        "ood_val": evaluate_pairs(model, splits["ood_val"]).summary()["exact_match"],  # what chose the checkpoint
    }
    if cfg.data.max_number + 6 >= 200:
        record["stretch_151_200"] = evaluate_pairs(model, pairs_for_range(151, 200, cfg.data.max_number, 5)).summary()[
            "exact_match"
        ]
    s = record["test"]
    record["meets_bar"] = bool(
        s["exact_match"] >= BAR["overall"]
        and s["min_over_lengths"] >= BAR["min_length"]
        and record["in_distribution"] >= BAR["in_distribution"]
    )
    print(
        f"== {name} seed {seed}: test {s['exact_match']:.1%} (worst length {s['min_over_lengths']:.1%}), "
        f"in-dist {record['in_distribution']:.1%}, direction errors {s['direction_rate']:.1%}, "
        f"stop errors {s['early_stop_rate'] + s['no_stop_rate']:.1%}, {wall:.0f}s",
        flush=True,
    )
    return record


def table(records: list[dict]) -> str:
    """Markdown: one row per recipe, median over seeds and success rate against the bar."""
    rows = [
        "| recipe | seeds | meets bar | median test EM | median worst length | median in-dist EM "
        "| median 151-200 EM | direction err | stop err | median wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["variant"] for r in records):
        rs = [r for r in records if r["variant"] == name]

        def med(f, rs=rs) -> float:
            return float(np.median([f(r) for r in rs]))

        rows.append(
            f"| {name} | {len(rs)} | {sum(r['meets_bar'] for r in rs)}/{len(rs)} "
            f"| {med(lambda r: r['test']['exact_match']):.1%} | {med(lambda r: r['test']['min_over_lengths']):.1%} "
            f"| {med(lambda r: r['in_distribution']):.1%} | {med(lambda r: r.get('stretch_151_200', np.nan)):.1%} "
            f"| {med(lambda r: r['test']['direction_rate']):.1%} | {med(lambda r: r['test']['stop_error_rate']):.1%} "
            f"| {med(lambda r: r['wall_s']):.0f} |"
        )
    return "\n".join(rows)


def seed_table(records: list[dict]) -> str:
    """Markdown: every run on its own row, so no lucky seed hides behind a median."""
    rows = [
        "| recipe | seed | test EM | worst length | in-dist EM | 151-200 EM | direction err | stop err | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        t = r["test"]
        rows.append(
            f"| {r['variant']} | {r['seed']} | {t['exact_match']:.1%} | {t['min_over_lengths']:.1%} "
            f"| {r['in_distribution']:.1%} | {r.get('stretch_151_200', float('nan')):.1%} "
            f"| {t['direction_rate']:.1%} | {t['stop_error_rate']:.1%} | {r['wall_s']:.0f} |"
        )
    return "\n".join(rows)


def plot(records: list[dict], path: Path, train_max_len: int) -> None:
    """The length-generalization figure: median exact match per recipe, seed spread shaded."""
    curves: dict[str, list[dict[int, float]]] = {}
    for r in records:
        curves.setdefault(r["variant"], []).append({int(k): v for k, v in r["test_by_length"].items()})
    fig = length_curve_figure(curves, train_max_len, "Counting: exact match on unseen lengths (median over seeds)")
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="counting_small", help="base preset or YAML")
    parser.add_argument(
        "--variants", default="recipe,nope,rope,learned_shift", help=f"comma list of {', '.join(VARIANTS)}"
    )
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated training seeds (all but the baselines)")
    parser.add_argument("--baseline_seeds", help="seeds for the other variants (default: --seeds)")
    parser.add_argument("--merge", nargs="+", metavar="DIR", help="only combine the results.json of these folders")
    parser.add_argument("--out", default="experiments/results", help="folder for results.json, results.md, plot")
    parser.add_argument("--quick", action="store_true", help="recipe and nope, seed 0, 600 steps")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_max_len = load_config(args.config).data.train_max_len
    if args.merge:
        records = [r for folder in args.merge for r in json.loads((Path(folder) / "results.json").read_text())]
        (out / "results.json").write_text(json.dumps(records, indent=1) + "\n")
        return report(records, out, train_max_len)
    variants, seeds = args.variants.split(","), [int(s) for s in args.seeds.split(",")]
    baseline_seeds = [int(s) for s in args.baseline_seeds.split(",")] if args.baseline_seeds else seeds
    try:
        extra = parse_overrides(args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.quick:
        variants, seeds = ["recipe", "nope"], [0]
        extra.setdefault("train.max_steps", "600")
        extra.setdefault("train.eval_every", "200")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f"error: unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    records = []
    for name in variants:
        for seed in baseline_seeds if name in BASELINES else seeds:
            records.append(run_one(args.config, name, seed, out, extra))
            (out / "results.json").write_text(json.dumps(records, indent=1) + "\n")  # keep partial results
    return report(records, out, train_max_len)


def report(records: list[dict], out: Path, train_max_len: int) -> int:
    """Write results.md and length_curve.png for these records, and print the table."""
    md = table(records) + "\n\nEvery run:\n\n" + seed_table(records)
    (out / "results.md").write_text(md + "\n")
    plot(records, out / "length_curve.png", train_max_len)
    print(md)
    print(f"Wrote {out / 'results.json'}, {out / 'results.md'} and {out / 'length_curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
