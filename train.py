"""The same training as train_lightning.py in a plain PyTorch loop: no Lightning needed.

    python train.py --config counting_small [--seed 1] [--output_dir DIR] [--max_steps N] [key=value ...]
    python train.py --config counting_small --seed 1 --resume_from OUTPUT_DIR/checkpoints/last.ckpt

Same flags, model, data stream, optimizer, schedule and scorer; the checkpoints load in evaluate.py,
and last.ckpt (written after every evaluation) resumes to the same weights as an unbroken run.
"""

import math
import sys
import time
from pathlib import Path

import torch

from config import ConfigError, ExperimentConfig
from data_generation import PAD, DataError, TrainStream, answer_loss, ensure_splits
from evaluate import CheckpointError, selection_score
from model import CountingTransformer
from utils import (
    atomic_save,
    build_parser,
    check_loss,
    claim_output_dir,
    configure_optimizer,
    prepare_output_dir,
    progress_line,
    report_run,
    resolve_config,
    resume_state,
    score_chosen,
    score_splits,
    seed_step,
)


def save_checkpoint(model: CountingTransformer, cfg: ExperimentConfig, step: int, path: Path, **extra) -> None:
    """Write the layout evaluate.load_checkpoint reads (Lightning's keys), atomically; extra: resume state."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    ckpt = {"state_dict": state, "hyper_parameters": {"config": cfg.to_dict()}, "global_step": step, **extra}
    atomic_save(path, lambda tmp: torch.save(ckpt, tmp))


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


def train(cfg: ExperimentConfig, overwrite: bool = False, resume_from: str | None = None) -> dict:
    """Train, evaluating every eval_every steps and at the last; keep best.ckpt by ood_val selection_score, then
    score it on every pair of the report sets, as train_lightning.py does. Returns the best evaluation."""
    started = time.perf_counter()
    t = cfg.train
    if t.precision not in ("32-true", "32", "bf16-mixed"):
        raise ConfigError(f"train.py runs --precision 32-true or bf16-mixed, not {t.precision}: use train_lightning.py")
    torch.manual_seed(t.seed)
    lock = claim_output_dir(Path(t.output_dir))  # noqa: F841 (held until the run ends)
    out = prepare_output_dir(cfg, overwrite, resuming=resume_from is not None)
    ckpt_dir = out / "checkpoints"
    splits = ensure_splits(cfg.data)
    device = "cuda" if t.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu"
    model = CountingTransformer(cfg.model).to(device)
    optimizer, scheduler = configure_optimizer(model, t.lr, t.weight_decay, t.warmup_steps, t.max_steps, t.min_lr_ratio)
    best, best_score, first_step = {}, -math.inf, 1
    if resume_from:
        state = resume_state(resume_from, "optimizer", "train.py")
        model.load_state_dict({k.removeprefix("model."): v for k, v in state["state_dict"].items()})
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        best, best_score, first_step = state["best"], state["best_score"], state["global_step"] + 1
    autocast_dtype = torch.bfloat16 if t.precision == "bf16-mixed" else None
    stream = TrainStream.for_training(cfg.data, t.batch_size, t.seed, splits)
    stream.start_step = first_step - 1  # a resumed run continues the same batch sequence
    batches = iter(stream)
    print(f"Training {model.num_params():,} parameters on {device} for {t.max_steps} steps; output in {out}/")
    eval_s, n_evals, tokens_seen, window = 0.0, 0, 0, time.perf_counter()
    for step in range(first_step, t.max_steps + 1):
        batch = next(batches).to(device)
        seed_step(t.seed, step - 1)  # same per-step randomness as train_lightning.py
        loss = train_step(model, batch, optimizer, scheduler, t.grad_clip, autocast_dtype)
        check_loss(loss, step)
        tokens_seen += int((batch != PAD).sum())
        if step % t.log_every == 0:
            rate = tokens_seen / (time.perf_counter() - window)
            lr = scheduler.get_last_lr()[0]
            print(progress_line(step, t.max_steps, loss.item(), lr, rate), flush=True)
            tokens_seen, window = 0, time.perf_counter()
        if step % t.eval_every == 0 or step == t.max_steps:
            eval_started = time.perf_counter()
            best, best_score = evaluate_and_save(model, cfg, step, splits, (best, best_score), optimizer, scheduler)
            eval_s, n_evals = eval_s + time.perf_counter() - eval_started, n_evals + 1
            window += time.perf_counter() - eval_started  # throughput counts training time only
    best = best and {**best, "path": str(ckpt_dir / "best.ckpt")}
    sets, final_s = score_chosen(best, cfg, splits["ood_val"])
    report_run(out, best, sets, time.perf_counter() - started, eval_s + final_s, n_evals)
    return best


def evaluate_and_save(model, cfg: ExperimentConfig, step: int, splits: dict, best_so_far, optimizer, scheduler):
    """Score val and ood_val; write best.ckpt if ood_val's selection score improved, and last.ckpt with the
    resume state. Returns the (best, best score) after this step."""
    best, best_score = best_so_far
    results = score_splits(model, splits, cfg.train.eval_batch_size)
    scores = {k: results[k].summary()["exact_match"] for k in ("ood_val", "val")}
    print(f"step {step}: " + "  ".join(f"{k} {v:.1%}" for k, v in scores.items()), flush=True)
    ckpt_dir = Path(cfg.train.output_dir) / "checkpoints"
    if selection_score(results["ood_val"].summary()) > best_score:
        best, best_score = {"step": step, **scores}, selection_score(results["ood_val"].summary())
        save_checkpoint(model, cfg, step, ckpt_dir / "best.ckpt")
    resumable = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    save_checkpoint(model, cfg, step, ckpt_dir / "last.ckpt", best=best, best_score=best_score, **resumable)
    model.train()
    return best, best_score


DESCRIPTION = "Plain-PyTorch training of the counting transformer (the same run as train_lightning.py)."


def main(argv: list[str] | None = None) -> int:
    args = build_parser(DESCRIPTION, lightning=False).parse_args(argv)
    try:
        train(resolve_config(args), args.overwrite, args.resume_from)
    except (ConfigError, DataError, CheckpointError, FloatingPointError, OSError) as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
