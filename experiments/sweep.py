"""The study: rows (a model and a task) x seeds, trained side by side, scored, tabulated and plotted.

    python experiments/sweep.py --study --jobs 2          # every row; an interrupted study continues
    python experiments/sweep.py --study --quick           # minutes: the same path, two rows, 300 steps
    python experiments/sweep.py --rows recipe --seeds 0-14 --out experiments/results/recipe
    python experiments/sweep.py --report                  # rewrite tables and figure from finished runs
    python experiments/sweep.py --rows recipe_feature_head_n6000 --jobs 2 --runs outputs/wide \
        --out experiments/results/wide   # numbers 0..5999; the other wide rows: experiments/extrapolate.py

Every row is named by what it is against one of two references: the standard transformer
(`standard_*`; `counting_small` is `standard_nope_both_plus_value_bias`) or the full recipe
(`recipe_minus_*`). Each run keeps the checkpoint with the best ood_val score; that checkpoint and
the last are scored on every pair of 6-60, 61-69, 70-150 (less ood_val's pairs: the test) and
151-200, so test never chooses anything. Runs live in --runs (one folder each, record.json when
scored) and are skipped when their record matches the row's config, so the same command continues.
"""

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import runner  # first: it puts the project's root on sys.path
import torch

from config import RECIPE, ConfigError, ExperimentConfig, apply_overrides, from_dict, load_config, parse_overrides
from data_generation import PAIR_CAP, ensure_splits, set_ranges
from evaluate import (
    evaluate_pairs,
    load_checkpoint,
    meets_bar,
    score_sets,
    sets_line,
    worst_length_error,
)
from utils import git_commit

# Every row is a set of overrides on the config defaults, the standard decoder-only transformer
# (config.py), named by what it is against one of two references: the standard transformer
# (`standard_*`) or the full recipe (`recipe_minus_*`).
ENCODINGS = {  # row name part: (words, overrides)
    "nope": ("no positions", {"model.pos_encoding": "none"}),
    "learned": ("learned + random offsets", {"model.pos_encoding": "learned", "model.random_pos_offset": True}),
    "rope": ("RoPE", {"model.pos_encoding": "rope"}),
    "sinusoidal": ("sinusoidal", {"model.pos_encoding": "sinusoidal"}),
}
UP = {"data.direction": "up", "data.data_dir": "data/up"}  # the paper's task: count up only
HOPELESS = 0.5  # a row whose first 3 seeds all score below this on test stops at 3 seeds


@dataclass
class Row:
    overrides: dict
    what: str  # what the row is, against its reference, in a few words
    panel: str  # "up" (the paper's task), "both" (the seed's task), "wide", "length" or "control"


ROWS = {
    **{
        f"standard_{enc}_up": Row({**UP, **o}, f"standard, {words}, counting up", "up")
        for enc, (words, o) in ENCODINGS.items()
    },
    **{
        f"standard_{enc}_both": Row(o, f"standard, {words}, both directions", "both")
        for enc, (words, o) in ENCODINGS.items()
    },
    "standard_nope_both_prefix": Row(
        {**ENCODINGS["nope"][1], "data.prefix_fraction": 0.5},
        "standard, no positions, + prefix training (NOT the strict task)",
        "both",
    ),
    "recipe": Row(RECIPE, "the full recipe", "both"),
    "recipe_minus_value_bias": Row(
        {**RECIPE, "model.value_bias": False, "model.value_bias_scaled": False}, "recipe without the value bias", "both"
    ),
    "recipe_minus_bias_scaling": Row(
        {**RECIPE, "model.value_bias_scaled": False}, "recipe, value bias not scaled by s*log n", "both"
    ),
    "recipe_minus_order_code": Row(
        {**RECIPE, "model.number_encoding": "learned"}, "recipe, learned number embeddings", "both"
    ),
    "recipe_minus_order_stretch": Row({**RECIPE, "model.order_stretch": 1.0}, "recipe without order stretch", "both"),
    "recipe_minus_local_heads": Row(
        {**RECIPE, "model.local_heads": 0}, "recipe, every head global (no local RoPE)", "both"
    ),
    "recipe_minus_scalable_softmax": Row(
        {**RECIPE, "model.scalable_softmax": False, "model.value_bias_scaled": False},
        "recipe without Scalable-Softmax (so its bias is unscaled)",
        "both",
    ),
    "recipe_minus_online_sampling": Row(
        {**RECIPE, "data.sampling": "fixed"}, "recipe on the fixed 5000-pair split", "both"
    ),
    # The paper's layout (rule P, docs/baselines.md): 256-token rows of whole examples, 8 rows a step (the tokens
    # of 64 single examples), learned positions starting at a random offset.
    "standard_learned_up_packed": Row(
        {**UP, **ENCODINGS["learned"][1], "data.pack_len": 256, "train.batch_size": 8},
        "standard, learned + random offsets, counting up, examples packed into 256-token rows",
        "up",
    ),
    # The smallest change: the standard model plus the value bias and nothing else of the recipe.
    **{
        f"standard_nope_{task}_plus_value_bias": Row(
            {**ENCODINGS["nope"][1], **({} if task == "both" else UP), "model.value_bias": True},
            f"{'counting_small: ' if task == 'both' else ''}standard, no positions, + the value bias, {words}",
            task,
        )
        for task, words in (("both", "both directions"), ("up", "counting up"))
    },
}


def wide_rows(n: int, feature_head: bool = False) -> dict[str, Row]:
    """The recipe, the recipe without its value bias and paper_count's model with numbers 0..n-1, so
    counts reach n tokens; training stays on lengths <= 60 and selection on 70-150. With feature_head
    the two recipe rows build their numbers' output rows from the number features (model.number_head)."""
    wide = {"data.max_number": n - 1, "data.data_dir": f"data/n{n}"}
    recipe, words = ("recipe_feature_head", "the recipe + feature head") if feature_head else ("recipe", "the recipe")
    head = {"model.number_head": "features"} if feature_head else {}  # the recipe rows only
    return {
        f"{recipe}_n{n}": Row({**RECIPE, **wide, **head}, f"{words}, numbers 0..{n - 1}", "wide"),
        f"{recipe}_minus_value_bias_n{n}": Row(
            {**ROWS["recipe_minus_value_bias"].overrides, **wide, **head},
            f"{words} without the value bias, 0..{n - 1}",
            "wide",
        ),
        f"standard_nope_up_n{n}": Row(
            {**ROWS["standard_nope_up"].overrides, **wide, "data.data_dir": f"data/n{n}_up"},
            f"standard, no positions, counting up (paper_count), 0..{n - 1}",
            "wide",
        ),
    }


def length_rows(enc: str) -> dict[str, Row]:
    """paper_count's model trained on lengths up to 20 ... 50 (the paper's figure; 60 is its own row), and on
    6-150 (the realizability control: 70-150 is then in distribution)."""
    up = {**ROWS[f"standard_{enc}_up"].overrides}
    words = ENCODINGS[enc][0]
    # Below 60, 5000 split pairs over fewer lengths would need more than the 200 ascending pairs of length 6;
    # the split is never trained on (fresh pairs each step), so it shrinks to 2000.
    few = {"data.n_train": 2000}
    return {
        f"standard_{enc}_up_train{n}": Row(
            {**up, "data.train_max_len": n, "data.data_dir": f"data/up_train{n}", **(few if n < 60 else {})},
            f"standard, {words}, counting up, trained on lengths <= {n}",
            "length" if n < 70 else "control",
        )
        for n in (20, 30, 40, 50, 150)
    }


ROWS |= wide_rows(600) | wide_rows(6000, feature_head=True)  # 10x and 100x training; experiments/extrapolate.py
ROWS |= length_rows("nope")
ROWS["standard_nope_both_plus_value_bias_feature_head_n6000"] = Row(
    {**ROWS["standard_nope_both_plus_value_bias"].overrides, "data.max_number": 5999, "data.data_dir": "data/n6000"}
    | {"model.number_head": "features"},
    "standard + the value bias + feature head, numbers 0..5999",
    "wide",
)
STUDY_ROWS = [n for n, r in ROWS.items() if r.panel in ("up", "both")]
QUICK_ROWS = ("recipe", "standard_nope_up")
QUICK = {"train.max_steps": "300", "train.eval_every": "150"}


def row_config(name: str, seed: int, runs: Path, extra: dict) -> ExperimentConfig:
    overrides = {**ROWS[name].overrides, **extra, "train.seed": seed, "train.logger": "none"}
    return apply_overrides(ExperimentConfig(), {**overrides, "train.output_dir": str(run_dir(runs, name, seed))})


def run_dir(runs: Path, name: str, seed: int) -> Path:
    return runs / f"{name}_seed{seed}"


def comparable(cfg: dict) -> dict:
    """A config without the keys that do not change what a run computes."""
    return {**cfg, "train": {k: v for k, v in cfg["train"].items() if k not in ("output_dir", "logger")}}


def finished_record(cfg: ExperimentConfig) -> dict | None:
    """The run's record.json if it holds every range set_ranges names and was made with this config, else None."""
    path = Path(cfg.train.output_dir) / "record.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if set(record.get("chosen", {})) != set(set_ranges(cfg.data)):  # scored on other sets: again (training is kept)
        return None
    try:  # keys added since the run was made take their defaults, which reproduce what it computed
        saved = comparable(from_dict(record.get("config") or {}).to_dict())
    except ConfigError:  # a record of an option since removed
        return None
    return record if saved == comparable(cfg.to_dict()) else None


def trained(cfg: ExperimentConfig) -> bool:
    """Whether the run folder holds a finished training of this config (summary.json and its config.yaml)."""
    out = Path(cfg.train.output_dir)
    if not ((out / "summary.json").is_file() and (out / "config.yaml").is_file()):
        return False
    return comparable(load_config(str(out / "config.yaml")).to_dict()) == comparable(cfg.to_dict())


def train_and_score(name: str, seed: int, runs: Path, extra: dict) -> dict:
    """Train one (row, seed) unless its folder already holds that training, then record the chosen and the
    last checkpoint on every pair of the report sets (evaluate.score_sets)."""
    from train_lightning import train

    cfg = row_config(name, seed, runs, extra)
    out = Path(cfg.train.output_dir)
    if not trained(cfg):
        train(cfg, overwrite=True)
    summary = json.loads((out / "summary.json").read_text())
    model, cfg = load_checkpoint(out / "checkpoints" / "best.ckpt")
    splits = ensure_splits(cfg.data)
    chosen = summary.get("sets")
    if set(chosen or {}) != set(set_ranges(cfg.data)):  # trained before today's sets: score them
        chosen = score_sets(model, cfg.data, splits["ood_val"], seed)
    last_model, _ = load_checkpoint(out / "checkpoints" / "last.ckpt")
    same = all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), last_model.state_dict().values()))
    record = {
        "row": name,
        "seed": seed,
        "config": comparable(cfg.to_dict()),
        "best_step": summary["best"]["step"],
        "wall_s": summary["wall_s"],
        "eval_share": summary["eval_s"] / summary["wall_s"],
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
        "git_commit": git_commit(),
        "ood_val": evaluate_pairs(model, splits["ood_val"]).summary()["exact_match"],  # what chose the checkpoint
        "chosen": chosen,
        "last": chosen if same else score_sets(last_model, cfg.data, splits["ood_val"], seed),
        "meets_bar": meets_bar(chosen),
        "exact": all(s["errors"] == 0 for s in chosen.values()),
    }
    (out / "record.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def run_all(names: list[str], seeds: list[int], runs: Path, extra: dict, args: argparse.Namespace) -> tuple[list, int]:
    """Every (row, seed) not yet finished, as jobs of experiments/runner.py (args: --executor, --jobs ...).

    A row runs seeds 0-2 first and its later seeds only if one of those reaches HOPELESS on test.
    Returns the records in row order and the number of runs that failed.
    """
    datas = {cfg.data.data_dir: cfg.data for cfg in (row_config(n, 0, runs, extra) for n in names)}
    for data in datas.values():
        ensure_splits(data)  # written once here, before several jobs could race to write it
    phases = [[(n, s) for n in names for s in seeds if s < 3], [(n, s) for n in names for s in seeds if s >= 3]]
    records: dict[tuple, dict] = {}
    failed = 0
    for phase in phases:
        todo = []
        for name, seed in phase:
            done = [r for (n, _), r in records.items() if n == name]
            if seed >= 3 and len(done) >= 3 and all(r["chosen"]["test"]["exact_match"] < HOPELESS for r in done):
                continue
            record = finished_record(row_config(name, seed, runs, extra))
            if record:
                records[name, seed] = record
            else:
                todo.append((name, seed))
        print(f"{len(todo)} runs to go ({args.jobs} at a time, {args.executor}); runs in {runs}/", flush=True)
        calls = [
            ("sweep", "train_and_score", str(run_dir(runs, n, s) / "train.log"), (n, s, runs, extra)) for n, s in todo
        ]

        def done(i: int, record: dict | None, todo=todo) -> None:
            name, seed = todo[i]
            print(f"== {name} seed {seed}: " + (sets_line(record["chosen"]) if record else "failed"), flush=True)

        for (name, seed), record in zip(todo, runner.run_jobs(calls, args, runs, done)):
            if record:
                records[name, seed] = record
            failed += record is None
    return [records[k] for k in sorted(records, key=lambda k: (list(ROWS).index(k[0]), k[1]))], failed


def cell(counts: dict) -> str:
    """'99.93% (10/13,932)': exact match with errors / pairs; '~' marks a sample of a wide range."""
    return (
        f"{counts['exact_match']:.2%} ({counts['errors']:,}/{counts['pairs']:,}{'~' if counts.get('sampled') else ''})"
    )


def median_cell(sets: list[dict]) -> str:
    """The median seed's cell (by errors; the lower of the two middle seeds for an even count)."""
    return cell(sorted(sets, key=lambda c: c["errors"])[(len(sets) - 1) // 2])


def kinds(counts: dict) -> str:
    """First errors by kind: start / direction / miscount / stop (early or missing EoS)."""
    k = counts["kinds"]
    return f"{k['start']} / {k['direction']} / {k['miscount']} / {k['early_stop'] + k['no_stop']}"


def table(records: list[dict]) -> str:
    """Markdown: one line per row, the median seed's errors / pairs on each set and the success rates."""
    lines = [
        "| row | what it is | seeds | meets bar | exact | test 70-150 | worst length | in-dist 6-60 | 151-200 "
        "| last ckpt: test | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["row"] for r in records):
        rs = [r for r in records if r["row"] == name]
        sets = {k: [r["chosen"][k] for r in rs if k in r["chosen"]] for k in ("test", "in_distribution", "far")}
        worst = float(np.median([worst_length_error(c) for c in sets["test"]]))
        lines.append(
            f"| `{name}` | {ROWS[name].what} | {len(rs)} | {sum(r['meets_bar'] for r in rs)}/{len(rs)} "
            f"| {sum(r['exact'] for r in rs)}/{len(rs)} | {median_cell(sets['test'])} | {1 - worst:.1%} "
            f"| {median_cell(sets['in_distribution'])} | {median_cell(sets['far']) if sets['far'] else '-'} "
            f"| {median_cell([r['last']['test'] for r in rs])} | {np.median([r['wall_s'] for r in rs]):.0f} |"
        )
    return "\n".join(lines)


def seed_table(records: list[dict]) -> str:
    """Markdown: every run on its own line, so no lucky seed hides behind a median."""
    lines = [
        "| row | seed | test 70-150 | worst length | in-dist 6-60 | 151-200 | ood_val | test errors: start / direction "
        "/ miscount / stop | chosen step | last ckpt: test | last ckpt: in-dist | wall (s) | bar |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        c, last = r["chosen"], r["last"]
        verdict = "exact" if r["exact"] else "yes" if r["meets_bar"] else "no"
        far = cell(c["far"]) if "far" in c else "-"
        lines.append(
            f"| `{r['row']}` | {r['seed']} | {cell(c['test'])} | {1 - worst_length_error(c['test']):.1%} "
            f"| {cell(c['in_distribution'])} | {far} | {r['ood_val']:.1%} | {kinds(c['test'])} "
            f"| {r['best_step']} | {cell(last['test'])} | {cell(last['in_distribution'])} | {r['wall_s']:.0f} "
            f"| {verdict} |"
        )
    return "\n".join(lines)


def curve(record: dict) -> dict[int, float]:
    """Exact match by length over every set the chosen checkpoint was scored on."""
    merged = {}
    for counts in record["chosen"].values():
        merged |= {int(n): 1 - c["errors"] / c["pairs"] for n, c in counts["by_length"].items()}
    return dict(sorted(merged.items()))


COLORS = {  # one colour per model, the same in every figure
    "recipe": "tab:blue",
    "nope": "tab:orange",
    "learned": "tab:green",
    "rope": "tab:red",
    "sinusoidal": "tab:purple",
    "packed": "tab:olive",
    "prefix": "tab:brown",
    "plus_value_bias": "tab:cyan",
    "minus_value_bias": "tab:gray",
}
# The study figure: per panel, its one message and the rows it draws (label in words, colour key); the first
# row is the headline.
PANELS = {
    "up": (
        "A. Counting up: standard transformers fit 6-60, then miss some far counts",
        [
            ("standard_nope_up", "standard, no positions (paper_count)", "nope"),
            ("standard_learned_up", "standard, learned positions + offsets", "learned"),
            ("standard_learned_up_packed", "standard, learned + offsets, packed rows", "packed"),
            ("standard_rope_up", "standard, RoPE", "rope"),
            ("standard_nope_up_plus_value_bias", "standard + the value bias", "plus_value_bias"),
        ],
    ),
    "both": (
        "B. Both directions: the value bias alone makes it exact",
        [
            ("standard_nope_both_plus_value_bias", "standard + the value bias (counting_small)", "plus_value_bias"),
            ("recipe", "the full recipe", "recipe"),
            ("recipe_minus_value_bias", "the recipe without its value bias", "minus_value_bias"),
            ("standard_nope_both", "standard, no positions", "nope"),
            ("standard_learned_both", "standard, learned positions + offsets", "learned"),
            ("standard_nope_both_prefix", "standard + prefix training (not the strict task)", "prefix"),
        ],
    ),
}


def figure(records: list[dict], path: Path, train_max_len: int) -> bool:
    """Error rate against length, 6-200 in buckets of 10 (log scale: 97% and 100% far apart), one panel per task;
    False (no file) when no record belongs to a panel."""
    import matplotlib.pyplot as plt

    from plots import Curve, counts_of, length_panel

    runs: dict[str, list] = {}
    for r in records:
        runs.setdefault(r["row"], []).append(
            {k: v for c in r["chosen"].values() for k, v in counts_of(c["by_length"]).items()}
        )
    panels = {k: (t, [(n, w, c) for n, w, c in rows if n in runs]) for k, (t, rows) in PANELS.items()}
    panels = {k: v for k, v in panels.items() if v[1]}
    if not panels:
        return False
    with plt.rc_context({"font.size": 12}):  # legible when shrunk onto a slide
        fig, axes = plt.subplots(1, len(panels), figsize=(7.8 * len(panels), 5.4), squeeze=False)
        for ax, (title, rows) in zip(axes[0], panels.values()):
            curves = [Curve(words, runs[n], COLORS[c], headline=i == 0) for i, (n, words, c) in enumerate(rows)]
            length_panel(ax, curves, train_max_len, title, log_errors=True)
        fig.tight_layout()
        fig.savefig(path, dpi=130)
    plt.close(fig)
    return True


def training_length_figure(records: list[dict], path: Path) -> None:
    """The paper's figure: exact match against length (6-200) for each training maximum, paper_count's model,
    and the realizability control (trained to 150) where it has run."""
    import matplotlib.pyplot as plt

    from plots import Curve, counts_of, length_panel

    runs: dict[int, list] = {}
    for r in records:
        if r["row"] == "standard_nope_up" or ROWS[r["row"]].panel in ("length", "control"):
            by_length = {n: c for counts in r["chosen"].values() for n, c in counts_of(counts["by_length"]).items()}
            runs.setdefault(r["config"]["data"]["train_max_len"], []).append(by_length)
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(runs)))
    curves = [
        Curve(f"trained on lengths <= {n}", runs[n], colors[i], headline=n == 60) for i, n in enumerate(sorted(runs))
    ]
    with plt.rc_context({"font.size": 12}):
        fig, ax = plt.subplots(figsize=(8.5, 5.4))
        length_panel(ax, curves, None, "How long must training be? paper_count's model, counting up", log_errors=False,
                     xticks=(6, 20, 40, 60, 100, 150, 200))  # fmt: skip
        fig.tight_layout()
        fig.savefig(path, dpi=130)
    plt.close(fig)


def report(records: list[dict], out: Path, name: str = "results") -> None:
    """Write NAME.json, NAME.md and NAME.png into out, and print the table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(records, indent=1) + "\n")
    md = table(records) + "\n\nEvery run:\n\n" + seed_table(records)
    if any(c.get("sampled") for r in records for c in r["chosen"].values()):
        md += f"\n\n~ a sample: at most {PAIR_CAP} pairs per length, drawn with the run's seed, where a length has more"
    (out / f"{name}.md").write_text(md + "\n")
    written = [f"{name}.json", f"{name}.md"]
    if figure(records, out / f"{name}.png", ExperimentConfig().data.train_max_len):
        written.append(f"{name}.png")
    if any(ROWS[r["row"]].panel == "length" for r in records):
        training_length_figure(records, out / f"{name}_training_length.png")
        written.append(f"{name}_training_length.png")
    print(md)
    print(f"Wrote {', '.join(written)} into {out}/")


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' or '0-4' or '0-2,7' -> a list of ints."""
    seeds = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if not (lo.isdigit() and (hi.isdigit() or not hi)):
            raise ConfigError(f"--seeds {text!r} must look like 0-4 or 0,1,2")
        seeds += list(range(int(lo), int(hi or lo) + 1))
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", action="store_true", help="every row: 5 seeds (3 where seeds 0-2 all fail)")
    panels = "up, both, length, control, wide"
    parser.add_argument("--rows", help=f"comma list of rows (or of panels: {panels}) instead: {', '.join(ROWS)}")
    parser.add_argument("--seeds", default="0-4", help="seeds, e.g. 0-4 or 0,3,7 (default 0-4)")
    parser.add_argument("--quick", action="store_true", help=f"rows {', '.join(QUICK_ROWS)}, seed 0, 300 steps")
    parser.add_argument("--runs", help="folder of run folders (default outputs/study, outputs/study_quick)")
    parser.add_argument("--out", help="folder for results.json/.md/.png (default experiments/results)")
    parser.add_argument("--report", action="store_true", help="only rewrite the tables and figure from --runs")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    runner.add_arguments(parser)
    args = parser.parse_args(argv)
    runs = Path(args.runs or ("outputs/study_quick" if args.quick else "outputs/study"))
    out = Path(args.out or ("outputs/study_quick" if args.quick else "experiments/results"))
    try:
        extra = {**(QUICK if args.quick else {}), **parse_overrides(args.overrides)}
        names = list(QUICK_ROWS) if args.quick else args.rows.split(",") if args.rows else None
        panels = {r.panel for r in ROWS.values()}
        names = names and [
            m for n in names for m in ([k for k, r in ROWS.items() if r.panel == n] if n in panels else [n])
        ]
        names = names or (STUDY_ROWS if args.study or args.report else None)
        if not names:
            parser.error("choose --study, --quick, --report or --rows")
        unknown = [n for n in names if n not in ROWS]
        if unknown:
            raise ConfigError(f"unknown row {unknown[0]!r}; choose from {', '.join(ROWS)}")
        if args.jobs < 1:
            raise ConfigError("--jobs must be >= 1")
        seeds = [0] if args.quick else parse_seeds(args.seeds)
        failed = 0
        if args.report:
            configs = [row_config(n, s, runs, extra) for n in names for s in seeds]
            records = [r for r in map(finished_record, configs) if r]
        else:
            records, failed = run_all(names, seeds, runs, extra, args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not records:
        print(f"error: no finished runs in {runs}/ to report", file=sys.stderr)
        return 1
    report(records, out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
