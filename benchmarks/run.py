# ruff: noqa: E402
"""Performance figures of the counting experiment, all measured in one invocation on this machine.

    python benchmarks/run.py                                 # 200 timed steps each, the whole test split decoded,
                                                             # the preset's whole run for the evaluation share
    python benchmarks/run.py --quick --json bench.json       # a few minutes on 2 quiet CPU cores
    python benchmarks/run.py --smoke --config counting_tiny  # seconds: checks that every part runs
    python benchmarks/run.py --quick model.n_layer=2         # key=value overrides go to load_config

Figures: Lightning vs plain-loop training throughput, padding waste of the length-bucketed stream,
KV-cached vs recomputed decoding, evaluation's share of training wall time, MFU on CPU, and the
optional switches torch.compile, bf16 autocast and thread count. Timed windows skip warm-up steps.
"""

import argparse
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import data_generation as dg
import train as plain_train
import train_lightning
from config import ConfigError, ExperimentConfig, load_config, parse_overrides
from evaluate import evaluate_pairs, generate_answers
from model import CountingTransformer
from utils import configure_optimizer

Make = Callable[[dict], ExperimentConfig]  # extra overrides -> the run's config
Row = tuple[str, str, str]  # (figure, value, raw numbers) of the final table


@dataclass
class Budget:
    """How much each part measures."""

    warmup: int  # untimed steps before every timed window
    steps: int  # timed training steps per measurement
    pad_batches: int  # training batches the padding statistics cover
    eval_n: int | None  # test sequences decoded (None: the whole test split)
    eval_every: int | None  # eval cadence of the eval-share run (None: the config's)
    evals: int | None  # evaluations in that run (None: the config's whole schedule)
    matmul_repeats: int
    compile: bool


BUDGETS = {
    "full": Budget(20, 200, 200, None, None, None, 10, True),
    "quick": Budget(5, 50, 200, 64, None, 1, 5, True),
    "smoke": Budget(2, 3, 20, 8, 2, 2, 2, False),
}


def train_stream(cfg: ExperimentConfig) -> dg.TrainStream:
    """The training batch stream, built as train.py and the LightningModule build it."""
    return dg.TrainStream.for_training(cfg.data, cfg.train.batch_size, cfg.train.seed, dg.ensure_splits(cfg.data))


def useful(batch: torch.Tensor) -> int:
    """Non-pad tokens, the count train.py and PrintProgress report as tokens."""
    return int((batch != dg.PAD).sum())


def seconds(fn: Callable[[], object]) -> float:
    """Wall time of one call."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def step_times(run: Callable[[ExperimentConfig], object], cfg: ExperimentConfig) -> list[float]:
    """Call run(cfg); return the wall time after each of its optimizer steps (a global torch hook)."""
    times: list[float] = []
    hook = register_optimizer_step_post_hook(lambda *_: times.append(time.perf_counter()))
    try:
        run(cfg)
    finally:
        hook.remove()
    return times


def step_rate(cfg: ExperimentConfig, batches: list, warmup: int, bf16: bool = False, compiled: bool = False) -> dict:
    """The training step of train.py (forward, answer loss, backward, clip, AdamW, schedule) on CPU, no logging.

    Rates cover the batches after `warmup` (recompilations after it, if any, count); computed tokens
    are the model's inputs, padding included.
    """
    t = cfg.train
    torch.manual_seed(t.seed)
    model = CountingTransformer(cfg.model)
    optimizer, scheduler = configure_optimizer(model, t.lr, t.weight_decay, t.warmup_steps, t.max_steps, t.min_lr_ratio)
    forward = torch.compile(model, dynamic=True) if compiled else model
    started = time.perf_counter()
    for i, batch in enumerate(batches):
        if i == warmup:
            warm_s, started = time.perf_counter() - started, time.perf_counter()
        plain_train.train_step(
            model, batch, optimizer, scheduler, t.grad_clip, torch.bfloat16 if bf16 else None, forward
        )
    spent, timed = time.perf_counter() - started, batches[warmup:]
    computed = sum(b[:, :-1].numel() for b in timed)
    return {"useful_tok_s": sum(map(useful, timed)) / spent, "computed_tok_s": computed / spent, "warmup_s": warm_s}


def lightning_vs_plain(make: Make, b: Budget, out: Path) -> tuple[dict, list[Row]]:
    """Useful tokens/s of train_lightning.train vs train.train: same config, seed and batches, back to back.

    A global optimizer-step hook stamps every step; the window from the end of step `warmup` to the end
    of step `warmup+steps` holds whole step cycles (batch, forward, backward, clip, update, scheduler,
    logging) and leaves out start-up and the end-of-run evaluation and checkpoint. No evaluation runs inside.
    """
    n = b.warmup + b.steps
    cfg = make({"train.max_steps": n, "train.eval_every": n + 1})
    stream = train_stream(cfg)
    tokens = sum(useful(stream.batch_tokens(i)) for i in range(b.warmup, n))
    runs = {"plain": plain_train.train, "lightning": lambda c: train_lightning.train(c, overwrite=True)}
    res: dict = {"tokens": tokens, "steps": b.steps, "warmup": b.warmup}
    for name, run in runs.items():
        cfg.train.output_dir = str(out / name)
        times = step_times(run, cfg)
        res[f"{name}_s"] = times[n - 1] - times[b.warmup - 1]
        res[f"{name}_tok_s"] = tokens / res[f"{name}_s"]
    res["ratio"] = res["lightning_tok_s"] / res["plain_tok_s"]
    raw = f"{res['lightning_tok_s']:,.0f} vs {res['plain_tok_s']:,.0f} useful tok/s, {b.steps} steps after {b.warmup}"
    return res, [("Lightning / plain training throughput", f"{res['ratio']:.2f}x", raw)]


def padding(make: Make, b: Budget) -> tuple[dict, list[Row]]:
    """Share of token positions that are PAD: the length-bucketed stream vs naive batches.

    Naive batches draw batch_size random rows of the train split (flat over lengths), unbucketed.
    Tokens/s before/after come from plain training steps on the first warmup+steps batches of each kind.
    """
    cfg = make({})
    count, bs = max(b.pad_batches, b.warmup + b.steps), cfg.train.batch_size
    stream, pairs, rng = train_stream(cfg), dg.ensure_splits(cfg.data)["train"], np.random.default_rng(0)
    kinds = {
        "bucketed": [stream.batch_tokens(i) for i in range(count)],
        "naive": [dg.encode_batch(*pairs[rng.integers(len(pairs), size=bs)].T) for _ in range(count)],
    }
    res: dict = {"batches": count}
    for name, batches in kinds.items():
        res[f"{name}_pad_fraction"] = 1 - sum(map(useful, batches)) / sum(x.numel() for x in batches)
        res[f"{name}_tok_s"] = step_rate(cfg, batches[: b.warmup + b.steps], b.warmup)["useful_tok_s"]
    value = f"{res['bucketed_pad_fraction']:.1%} (naive {res['naive_pad_fraction']:.1%})"
    raw = f"over {count} batches; useful tok/s {res['bucketed_tok_s']:,.0f} bucketed vs {res['naive_tok_s']:,.0f} naive"
    return res, [("padding fraction, bucketed (naive)", value, raw)]


def evaluation(make: Make, b: Budget) -> tuple[dict, list[Row]]:
    """Scoring the test split: KV-cached decoding vs full recomputation vs the teacher-forced pass.

    The untrained model gets eos_id=-1 so no row stops early: every row decodes its whole budget
    (target length + 8 tokens), a little more than a trained model that stops at EoS.
    """
    cfg = make({})
    pairs = dg.ensure_splits(cfg.data)["test"][: b.eval_n]
    torch.manual_seed(cfg.train.seed)
    model, bs = CountingTransformer(replace(cfg.model, eos_id=-1)).eval(), cfg.train.eval_batch_size
    res: dict = {"sequences": len(pairs)}
    res["kv_cache_s"] = seconds(lambda: generate_answers(model, pairs, bs, use_cache=True))
    res["recompute_s"] = seconds(lambda: generate_answers(model, pairs, bs, use_cache=False))
    res["teacher_forced_s"] = seconds(lambda: evaluate_pairs(model, pairs, bs))
    for name in ("kv_cache", "recompute", "teacher_forced"):
        res[f"{name}_seq_s"] = len(pairs) / res[f"{name}_s"]
    res["kv_speedup"] = res["recompute_s"] / res["kv_cache_s"]
    res["teacher_forced_speedup"] = res["kv_cache_s"] / res["teacher_forced_s"]
    d = cfg.data  # every pair of the test range, as evaluate.py --all_pairs scores it (ood_val's pairs too)
    every = dg.pairs_for_range(d.test_min_len, d.test_max_len, d.max_number, direction=d.direction)
    res["all_pairs"], res["all_pairs_s"] = len(every), seconds(lambda: evaluate_pairs(model, every, 512))
    res["pairs_per_s"] = len(every) / res["all_pairs_s"]
    used = f"{len(pairs)} test sequences" + (" (a subset)" if b.eval_n else " (whole split)")
    seq_s = ", ".join(f"{k} {res[f'{k}_seq_s']:,.1f}" for k in ("kv_cache", "recompute", "teacher_forced"))
    return res, [
        ("KV cache vs recompute decoding", f"{res['kv_speedup']:.1f}x", f"{used}; sequences/s: {seq_s}"),
        ("teacher-forced scoring vs KV decoding", f"{res['teacher_forced_speedup']:.1f}x", used),
        (
            "every pair of the test range, scored",
            f"{res['pairs_per_s']:,.0f} pairs/s",
            f"{res['all_pairs']:,} pairs ({d.test_min_len}-{d.test_max_len}) in {res['all_pairs_s']:.1f} s",
        ),
    ]


def eval_share(make: Make, b: Budget, out: Path) -> tuple[dict, list[Row]]:
    """Share of a real train_lightning.train run's wall time spent evaluating, as the run itself reports it.

    The run evaluates at the preset's cadence (eval_every) unless the budget sets one; the full budget
    runs the preset's whole schedule, i.e. the main command. Wall and evaluation time come from the
    run's own summary.json (the figures of its closing line).
    """
    preset = make({}).train
    every = b.eval_every or preset.eval_every
    steps = every * b.evals if b.evals else preset.max_steps
    cfg = make({"train.max_steps": steps, "train.eval_every": every, "train.output_dir": str(out / "eval")})
    train_lightning.train(cfg, overwrite=True)
    summary = json.loads((out / "eval" / "summary.json").read_text())
    res = {**summary, "share": summary["eval_s"] / summary["wall_s"], "steps": steps, "eval_every": every}
    raw = (
        f"{summary['eval_s']:.1f}s of {summary['wall_s']:.1f}s over {summary['n_evals']} evaluations; "
        f"{steps} steps, eval every {every}" + (" (the preset's whole run)" if steps == preset.max_steps else "")
    )
    return res, [("evaluation share of training wall", f"{res['share']:.1%}", raw)]


def mfu(make: Make, b: Budget, computed_tok_s: float) -> tuple[dict, list[Row]]:
    """Achieved training FLOP/s over the FLOP/s of an n=2048 fp32 matmul measured now.

    Training FLOPs are estimated as 6 x params x computed tokens (2 forward, 4 backward per parameter
    and token; attention's score/value products are left out, and padding counts as computed).
    """
    params = CountingTransformer(make({}).model).num_params()
    n = 2048
    x, y = torch.randn(n, n), torch.randn(n, n)
    x @ y  # warm-up
    best = min(seconds(lambda: x @ y) for _ in range(b.matmul_repeats))
    res = {"params": params, "achieved_flop_s": 6 * params * computed_tok_s, "matmul_flop_s": 2 * n**3 / best}
    res["mfu"] = res["achieved_flop_s"] / res["matmul_flop_s"]
    raw = (
        f"6 x {params:,} params x {computed_tok_s:,.0f} tok/s = {res['achieved_flop_s'] / 1e9:.1f} GFLOP/s "
        f"vs matmul {res['matmul_flop_s'] / 1e9:.1f} GFLOP/s"
    )
    return res, [("MFU on CPU", f"{res['mfu']:.1%}", raw)]


def switches(make: Make, b: Budget) -> tuple[dict, list[Row]]:
    """Plain training-step tokens/s with one switch at a time vs the default (fp32, eager, current threads)."""
    cfg = make({})
    stream = train_stream(cfg)
    batches = [stream.batch_tokens(i) for i in range(b.warmup + b.steps)]
    res = {"default": step_rate(cfg, batches, b.warmup), "bf16": step_rate(cfg, batches, b.warmup, bf16=True)}
    threads = torch.get_num_threads()
    for n in (1, 2):
        torch.set_num_threads(n)
        try:
            res[f"threads_{n}"] = step_rate(cfg, batches, b.warmup)
        finally:
            torch.set_num_threads(threads)
    rate = lambda key: res[key]["useful_tok_s"]
    rows = [("bf16 autocast / fp32", f"{rate('bf16') / rate('default'):.2f}x", f"{rate('bf16'):,.0f} tok/s")]
    raw = f"{rate('threads_1'):,.0f} vs {rate('threads_2'):,.0f} tok/s"
    rows.append(("1 thread / 2 threads", f"{rate('threads_1') / rate('threads_2'):.2f}x", raw))
    if not b.compile:
        rows.append(("torch.compile / eager", "skipped", "--smoke or --no-compile"))
    else:
        try:
            res["compile"] = step_rate(cfg, batches, b.warmup, compiled=True)
            raw = f"{rate('compile'):,.0f} tok/s; warm-up incl. compiling {res['compile']['warmup_s']:.0f}s"
            rows.append(("torch.compile / eager", f"{rate('compile') / rate('default'):.2f}x", raw))
        except Exception as err:  # compilation needs a working C++ toolchain; report, do not crash
            res["compile"] = f"failed: {type(err).__name__}: {str(err).strip().splitlines()[0][:200]}"
            rows.append(("torch.compile / eager", "failed", res["compile"]))
    rows.append(("DataLoader num_workers", "n/a", "batches are built in the training process; no loader workers"))
    return res, rows


def hardware() -> str:
    """CPU model (from /proc/cpuinfo when present) and platform.processor(), cores, torch version, threads."""
    info = Path("/proc/cpuinfo")
    names = re.findall(r"^model name\s*:\s*(.+)$", info.read_text() if info.is_file() else "", re.M)
    cpu = f"{names[0] if names else ''} ({platform.processor() or platform.machine()})".strip()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="counting_small", help="preset or YAML path (default: counting_small)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="fewer steps, 64 test sequences decoded: about 3 min on 2 quiet cores"
    )
    size.add_argument("--smoke", action="store_true", help="a few steps of every part, no torch.compile")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (compiling takes a while)")
    parser.add_argument("--json", help="write every figure and raw number to this file")
    parser.add_argument("overrides", nargs="*", help="config overrides as key=value, e.g. train.batch_size=32")
    args = parser.parse_args(argv)
    b = BUDGETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    b = replace(b, compile=b.compile and not args.no_compile)
    warnings.filterwarnings("ignore", ".*does not have many workers.*|.*IterableDataset.*__len__.*")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        try:
            base = {"data.data_dir": str(out / "data"), **parse_overrides(args.overrides), "train.logger": "none"}
            make: Make = lambda extra: load_config(args.config, {"train.output_dir": str(out / "run"), **base, **extra})
            make({})
            results, rows = {}, []
            for name, run in (
                ("throughput", lambda: lightning_vs_plain(make, b, out)),
                ("padding", lambda: padding(make, b)),
                ("evaluation", lambda: evaluation(make, b)),
                ("eval_share", lambda: eval_share(make, b, out)),
                ("switches", lambda: switches(make, b)),
                ("mfu", lambda: mfu(make, b, results["switches"]["default"]["computed_tok_s"])),
            ):
                results[name], new = run()
                rows += new
                print("\n".join(f"== {figure}: {value}  ({raw})" for figure, value, raw in new), flush=True)
        except (ConfigError, dg.DataError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    figures = {
        "lightning_vs_plain_throughput": results["throughput"]["ratio"],
        "padding_fraction": results["padding"]["bucketed_pad_fraction"],
        "kv_vs_recompute_speedup": results["evaluation"]["kv_speedup"],
        "eval_share_of_wall": results["eval_share"]["share"],
        "scoring_pairs_per_s": results["evaluation"]["pairs_per_s"],
        "mfu_cpu": results["mfu"]["mfu"],
    }
    hw = hardware()
    print(f"\nHardware: {hw}; config {args.config}, {' '.join(args.overrides) or 'no overrides'}\n")
    print("| figure | value | raw numbers |\n|---|---|---|")
    print("\n".join(f"| {figure} | {value} | {raw} |" for figure, value, raw in rows))
    if args.json:
        payload = {**figures, "hardware": hw, "config": args.config, "budget": asdict(b), "details": results}
        Path(args.json).write_text(json.dumps(payload, indent=1, default=str) + "\n")
    return 0 if all(math.isfinite(v) for v in figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
