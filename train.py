"""The same training as train_lightning.py in a plain PyTorch loop: no Lightning needed.

    python train.py --config counting_small [--seed 1] [--output_dir DIR] [key=value ...]

Same model, data stream, optimizer, schedule and scorer; the checkpoint loads in evaluate.py.
"""

import argparse
import math
import shutil
import sys
import time
from pathlib import Path

import torch

from config import PRESETS, ConfigError, ExperimentConfig, load_config, parse_overrides, save_config
from data_generation import PAD, DataError, TrainStream, answer_loss, ensure_splits
from evaluate import evaluate_pairs, selection_score
from model import CountingTransformer, configure_optimizer, step_seed


def save_checkpoint(model: CountingTransformer, cfg: ExperimentConfig, step: int, path: Path) -> None:
    """Write the layout evaluate.load_checkpoint reads (Lightning's keys), atomically."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": state, "hyper_parameters": {"config": cfg.to_dict()}, "global_step": step}, tmp)
    tmp.replace(path)


def train_step(model, batch, optimizer, scheduler, grad_clip: float, autocast_dtype=None, forward=None) -> torch.Tensor:
    """One optimizer step on the answer loss: forward, backward, clip, AdamW, schedule. Returns the loss.

    forward defaults to the model itself (a compiled wrapper can stand in for it).
    """
    device = batch.device.type
    with torch.autocast(device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        loss, _ = answer_loss((model if forward is None else forward)(batch[:, :-1]), batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    return loss.detach()


def prepare_output_dir(cfg: ExperimentConfig, overwrite: bool = False, resuming: bool = False) -> Path:
    """Create OUTPUT_DIR and write config.yaml there; refuse to start a fresh run over old checkpoints.

    overwrite clears the old run (checkpoints, TensorBoard events, W&B run id) so nothing mixes.
    """
    out = Path(cfg.train.output_dir)
    ckpt_dir = out / "checkpoints"
    if not resuming and any(ckpt_dir.glob("*.ckpt")):
        if not overwrite:
            raise ConfigError(
                f"{ckpt_dir} already holds checkpoints; pass --resume_from {ckpt_dir}/last.ckpt (train_lightning.py), "
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


def train(cfg: ExperimentConfig, overwrite: bool = False) -> dict:
    """Train, evaluating every eval_every steps; keep best.ckpt by ood_val selection_score; return its scores."""
    t = cfg.train
    torch.manual_seed(t.seed)
    out = prepare_output_dir(cfg, overwrite)
    splits = ensure_splits(cfg.data)
    device = "cuda" if t.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu"
    model = CountingTransformer(cfg.model).to(device)
    optimizer, scheduler = configure_optimizer(model, t.lr, t.weight_decay, t.warmup_steps, t.max_steps, t.min_lr_ratio)
    autocast_dtype = torch.bfloat16 if t.precision.startswith("bf16") else None
    stream = iter(TrainStream.for_training(cfg.data, t.batch_size, t.seed, splits))
    print(f"Training {model.num_params():,} parameters on {device} for {t.max_steps} steps; output in {out}/")
    best, best_score = {"ood_val": -math.inf}, -math.inf
    tokens_seen, started = 0, time.perf_counter()
    for step in range(1, t.max_steps + 1):
        batch = next(stream).to(device)
        torch.manual_seed(step_seed(t.seed, step - 1))  # same per-step randomness as train_lightning.py
        loss = train_step(model, batch, optimizer, scheduler, t.grad_clip, autocast_dtype)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower train.lr")
        tokens_seen += int((batch != PAD).sum())
        if step % t.log_every == 0:
            rate = tokens_seen / (time.perf_counter() - started)
            lr = scheduler.get_last_lr()[0]
            print(f"step {step:>6}/{t.max_steps}  loss {loss.item():.4f}  lr {lr:.2e}  {rate:,.0f} tok/s")
        if step % t.eval_every == 0 or step == t.max_steps:
            summaries = {split: evaluate_pairs(model, splits[split]).summary() for split in splits if split != "train"}
            scores = {split: summary["exact_match"] for split, summary in summaries.items()}
            print(f"step {step}: " + "  ".join(f"{k} {v:.1%}" for k, v in scores.items()))
            if selection_score(summaries["ood_val"]) > best_score:
                best, best_score = scores, selection_score(summaries["ood_val"])
                save_checkpoint(model, cfg, step, out / "checkpoints" / "best.ckpt")
            model.train()
    save_checkpoint(model, cfg, t.max_steps, out / "checkpoints" / "last.ckpt")
    print(f"Best by ood_val: {best}\nScore it: python evaluate.py --checkpoint {out}/checkpoints/best.ckpt")
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Plain-PyTorch training of the counting transformer.")
    parser.add_argument("--config", default="counting_small", help=f"preset ({', '.join(PRESETS)}) or YAML path")
    parser.add_argument("--seed", type=int, help="training seed")
    parser.add_argument("--output_dir", help="where config.yaml and checkpoints/ go")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous run in --output_dir")
    parser.add_argument("overrides", nargs="*", help="config overrides as key=value")
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.overrides)
        if args.seed is not None:
            overrides["train.seed"] = str(args.seed)
        if args.output_dir:
            overrides["train.output_dir"] = args.output_dir
        train(load_config(args.config, overrides), args.overwrite)
    except (ConfigError, DataError, FloatingPointError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
