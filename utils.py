"""What both trainers share: the command line, the run's config from it, the output folder, per-step seeding,
the optimizer and schedule, the git commit and the closing lines."""

import argparse
import json
import math
import os
import shutil
import subprocess
import time
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from torch import nn

from config import (
    PRESETS,
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    changed_keys,
    load_config,
    parse_overrides,
    save_config,
)
from evaluate import CheckpointError, evaluate_pairs, load_checkpoint, score_sets, sets_line

# train.* keys a resumed run may change; any other value must agree with the checkpoint's.
RESUME_SAFE = {"max_steps", "eval_every", "log_every", "logger", "n_examples", "eval_batch_size", "output_dir"}
# Flags that set train.<flag>; the plain loop takes those that make sense without Lightning.
TRAIN_FLAGS = {
    "seed": (int, "training seed (init, batch order, dropout); the data split seed is data.seed"),
    "output_dir": (str, "where config.yaml, checkpoints/ and logs go"),
    "max_steps": (int, "total optimizer steps (the cosine schedule decays over them)"),
    "precision": (str, "32-true or bf16-mixed (16-mixed too with Lightning)"),
    "accelerator": (str, "cpu, gpu, auto ..."),
    "devices": (str, "number of devices per node, or auto"),
    "strategy": (str, "Lightning strategy, e.g. ddp (one process per device)"),
    "num_nodes": (int, "number of machines (must match torchrun/SLURM)"),
    "logger": (str, "experiment logger(s): tensorboard, wandb, both or none"),
}
LIGHTNING_ONLY = ("devices", "strategy", "num_nodes", "logger")


def build_parser(description: str, lightning: bool) -> argparse.ArgumentParser:
    """The command line of train_lightning.py (lightning=True) or train.py: the same flags and help texts."""
    script = "train_lightning.py" if lightning else "train.py"
    parser = argparse.ArgumentParser(
        description=description,
        epilog=f"Overrides: any config key as key=value, e.g. train.lr=3e-4 model.pos_encoding=rope n_layer=2. "
        f"Resume: repeat the command and add --resume_from OUTPUT_DIR/checkpoints/last.ckpt ({script}).",
    )
    parser.add_argument("--config", help=f"preset ({', '.join(PRESETS)}) or YAML path (default: counting_small)")
    for flag, (kind, text) in TRAIN_FLAGS.items():
        if lightning or flag not in LIGHTNING_ONLY:
            choices = ["tensorboard", "wandb", "both", "none"] if flag == "logger" else None
            parser.add_argument(f"--{flag}", type=kind, choices=choices, help=text)
    parser.add_argument("--resume_from", help="continue from this checkpoint (e.g. OUTPUT_DIR/checkpoints/last.ckpt)")
    if lightning:
        parser.add_argument(
            "--fast_dev_run", action="store_true", help="one train and one val batch, no logger/checkpoints"
        )
    parser.add_argument(
        "--overwrite", action="store_true", help="allow a fresh run in an output_dir that has checkpoints"
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    parser.add_argument("overrides", nargs="*", help="config overrides as key=value")
    return parser


def resolve_config(args: argparse.Namespace) -> ExperimentConfig:
    """The run's config: preset/YAML (or the checkpoint's on resume) + flags + key=value overrides.

    On resume, a flag or override that repeats the checkpoint's value is fine; one that changes a
    value outside RESUME_SAFE is refused, naming both values.
    """
    overrides = parse_overrides(args.overrides)
    for flag in TRAIN_FLAGS:
        if getattr(args, flag, None) is not None:
            overrides[f"train.{flag}"] = str(getattr(args, flag))
    if not args.resume_from:
        return load_config(args.config or "counting_small", overrides)
    _, cfg = load_checkpoint(args.resume_from)
    if args.config:  # the command's own config (preset + flags + overrides) must describe the checkpoint's run
        named = load_config(args.config, overrides).to_dict()
        for section, values in cfg.to_dict().items():
            for key, old in values.items():
                new = named[section][key]
                if new != old and key not in RESUME_SAFE | {"data_dir"}:
                    raise ConfigError(
                        f"{section}.{key} differs between --config {args.config} and the checkpoint "
                        f"(command {new!r}, checkpoint {old!r}); repeat the original command's flags, "
                        "or resume without --config"
                    )
    for key, (old, new) in changed_keys(cfg, overrides).items():
        if key.split(".")[-1] not in RESUME_SAFE:
            raise ConfigError(
                f"{key} cannot change on resume: the checkpoint has {old!r}, the command asks for {new!r}; "
                f"drop it (only {', '.join(sorted(RESUME_SAFE))} may change) or start a new run"
            )
    return apply_overrides(cfg, overrides)


def claim_output_dir(out: Path) -> FileLock | None:
    """Hold OUTPUT_DIR/.lock for the whole run (keep the returned lock), so a second run into the same folder
    stops at once, --overwrite or not; the OS drops the lock when a run dies, so a killed run's folder resumes.

    Only the first process of a run claims it: the others (DDP ranks, LOCAL_RANK > 0) share the folder.
    """
    if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0":
        return None
    lock, owner = FileLock(out / ".lock"), out / ".lock.owner"
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=0)
    except Timeout:  # before OSError, which it extends
        who = owner.read_text().strip() if owner.is_file() else "another process"
        raise ConfigError(
            f"{out} is in use by a running training ({who}); wait for it or pass another --output_dir"
        ) from None
    except OSError as err:
        raise ConfigError(f"cannot write to output dir {out}: {err.strerror}; choose another --output_dir") from None
    owner.write_text(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    return lock


def prepare_output_dir(cfg: ExperimentConfig, overwrite: bool = False, resuming: bool = False) -> Path:
    """Create OUTPUT_DIR and write config.yaml there; refuse to start a fresh run over old checkpoints.

    overwrite clears the old run (checkpoints, TensorBoard events, W&B run id) so nothing mixes.
    """
    out = Path(cfg.train.output_dir)
    ckpt_dir = out / "checkpoints"
    if not resuming and any(ckpt_dir.glob("*.ckpt")):
        if not overwrite:
            raise ConfigError(
                f"{ckpt_dir} already holds checkpoints; pass --resume_from {ckpt_dir}/last.ckpt, "
                "a new --output_dir, or --overwrite"
            )
        for old in ckpt_dir.glob("*.ckpt"):
            old.unlink()
        shutil.rmtree(out / "tb", ignore_errors=True)
        (out / "wandb_run_id.txt").unlink(missing_ok=True)
    try:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    except OSError as err:
        raise ConfigError(f"cannot write to output dir {out}: {err.strerror}; choose another --output_dir") from None
    return out


def score_chosen(best: dict | None, cfg: ExperimentConfig, ood_val) -> tuple[dict | None, float]:
    """The chosen checkpoint scored on every pair of the report sets (evaluate.score_sets), and the seconds it took."""
    if not best:
        return None, 0.0
    started = time.perf_counter()
    model, _ = load_checkpoint(best["path"])
    sets = score_sets(model, cfg.data, ood_val, cfg.train.seed, cfg.train.eval_batch_size)
    return sets, time.perf_counter() - started


def report_run(out: Path, best: dict | None, sets: dict | None, wall_s: float, eval_s: float, n_evals: int) -> None:
    """Print the closing lines and keep the same figures in OUTPUT_DIR/summary.json.

    eval_s counts every evaluation, the final scoring of the chosen checkpoint included.
    """
    summary = {"best": best or None, "sets": sets, "wall_s": round(wall_s, 1), "eval_s": round(eval_s, 1)}
    (Path(out) / "summary.json").write_text(json.dumps({**summary, "n_evals": n_evals}, indent=1) + "\n")
    print(closing_lines(best, sets, wall_s, eval_s, n_evals), flush=True)


def closing_lines(best: dict | None, sets: dict | None, wall_s: float, eval_s: float, n_evals: int) -> str:
    """The last lines of a run: the chosen checkpoint, its errors on every pair scored, where the time went.

    best holds step, path and the exact match of each split scored during training (val, ood_val).
    """
    lines = []
    if best:
        scores = ", ".join(f"{split} {best[split]:.1%}" for split in ("ood_val", "val") if split in best)
        lines.append(f"Best checkpoint (by ood_val): step {best['step']}, {scores}: {best['path']}")
        lines += [sets_line(sets)] if sets else []
        lines.append(f"Score it: python evaluate.py --checkpoint {best['path']}")
    else:
        lines.append("No evaluation ran, so there is no best checkpoint")
    share = eval_s / wall_s if wall_s > 0 else 0.0
    lines.append(
        f"Done in {format_seconds(wall_s)}; evaluation {share:.1%} of it ({eval_s:.1f} s: "
        f"{n_evals} evaluations and the final scoring)"
    )
    return "\n".join(lines)


def format_seconds(seconds: float) -> str:
    """'2 min 21 s' (or '48.3 s' under a minute)."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def seed_step(seed: int, index: int) -> None:
    """Seed torch for training step `index` (DDP: step * world + rank), so dropout and position offsets
    depend on (seed, step) alone and a resumed run draws what the unbroken one would have."""
    torch.manual_seed((seed * 1_000_003 + index) % 2**63)


def check_loss(loss: torch.Tensor, step: int) -> None:
    """Stop a run whose loss is no longer a number, naming the step and the fix."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower train.lr")


def progress_line(step: int, max_steps: int, loss: float, lr: float, tokens_per_s: float) -> str:
    return f"step {step:>6}/{max_steps}  loss {loss:.4f}  lr {lr:.2e}  {tokens_per_s:,.0f} tok/s"


def score_splits(model, splits: dict, batch_size: int) -> dict:
    """One evaluation during training: greedy answers on val (in distribution) and ood_val (which chooses)."""
    return {split: evaluate_pairs(model, splits[split], batch_size) for split in ("val", "ood_val")}


def atomic_save(path: Path, save, replace: bool = True) -> None:
    """save(tmp) writes the file; it then takes path's place in one step, so a killed run never leaves half a
    checkpoint. replace=False: write only (the other DDP ranks of a collective save)."""
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    save(tmp)
    if replace:
        os.replace(tmp, path)


def resume_state(path: str, needs: str, script: str) -> dict:
    """The state a resumed run starts from; a checkpoint without `needs` was written by the other trainer."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if needs not in state:
        raise CheckpointError(
            f"{path} holds no {script} resume state; resume a run with the script that trained it, "
            "from its own OUTPUT_DIR/checkpoints/last.ckpt"
        )
    return state


def configure_optimizer(
    model: nn.Module, lr: float, weight_decay: float, warmup_steps: int, max_steps: int, min_lr_ratio: float
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (decay on matrices only) with linear warmup then cosine decay to lr*min_lr_ratio."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98))

    def lr_factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def git_commit() -> str:
    """The commit the code runs from, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
