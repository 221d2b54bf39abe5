"""Train the counting transformer with Lightning; keep the best checkpoint by long-length generation.

python train_lightning.py --config counting_small [--seed 1] [--output_dir DIR] [key=value ...]
python train_lightning.py --config counting_small --seed 1 --resume_from OUTPUT_DIR/checkpoints/last.ckpt
"""

import logging
import os
import sys
import time
import uuid
import warnings
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

from config import ConfigError, ExperimentConfig
from data_generation import DataError
from evaluate import CheckpointError, bucket_table
from lightning_model import MONITOR, CountingModule, GenerationEval, LastCheckpoint, PrintProgress, progress_to_stdout
from utils import (
    build_parser,
    claim_output_dir,
    prepare_output_dir,
    report_run,
    resolve_config,
    resume_state,
    score_chosen,
)

DESCRIPTION = "Train a decoder-only transformer to count; score it by greedy generation at unseen lengths."


def make_loggers(cfg: ExperimentConfig, out: Path, resume_step: int | None = None) -> list:
    """TensorBoard and/or W&B; W&B runs offline unless an API key or WANDB_MODE says otherwise.

    On resume both continue the same run: TensorBoard drops events logged after the checkpoint's
    step (a killed run logged some), and W&B reuses the run id kept in the output dir.
    """
    loggers = []
    if cfg.train.logger in ("tensorboard", "both"):
        purge = {} if resume_step is None else {"purge_step": resume_step + 1}
        loggers.append(TensorBoardLogger(str(out), name="tb", version="", default_hp_metric=False, **purge))
    if cfg.train.logger in ("wandb", "both"):
        if "WANDB_MODE" not in os.environ and "WANDB_API_KEY" not in os.environ:
            os.environ["WANDB_MODE"] = "offline"
        id_file = out / "wandb_run_id.txt"
        if not id_file.exists():  # our own id, so a resumed run can name the same W&B run
            id_file.write_text(uuid.uuid4().hex[:8])
        loggers.append(WandbLogger(project="length-generalization-counting", save_dir=str(out), id=id_file.read_text()))
    return loggers


def _finish_wandb(trainer) -> None:
    """Close the W&B run so its files are complete; say how to upload an offline run."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and trainer.is_global_zero:
            run_dir = Path(logger.experiment.dir).parent
            offline = logger.experiment.settings.mode == "offline"
            import wandb

            wandb.finish()
            if offline:
                print(f"W&B ran offline; upload with: wandb sync {run_dir}")


def log_sets(loggers: list, sets: dict | None, step: int) -> None:
    """The chosen checkpoint's final scores (test, in_distribution, far): exact match, errors, pairs, and by bucket."""
    metrics = {}
    for name, counts in (sets or {}).items():
        metrics |= {f"{name}/{key}": counts[key] for key in ("exact_match", "errors", "pairs")}
        by_length = {int(n): 1 - c["errors"] / c["pairs"] for n, c in counts["by_length"].items()}
        metrics |= {f"{name}/exact_match/{k}": v for k, v in bucket_table(by_length).items()}
    for logger in loggers:
        logger.log_metrics(metrics, step=step)


def make_callbacks(cfg: ExperimentConfig, ckpt_dir: Path, fast_dev_run: bool = False) -> list:
    """Generation scoring, progress lines, and (unless fast_dev_run) best.ckpt then last.ckpt.

    Lightning runs checkpoint callbacks last and in list order, so last.ckpt is written after
    ModelCheckpoint has taken in the newest score.
    """
    callbacks = [
        GenerationEval(cfg.train.n_examples, limit=32 if fast_dev_run else None),
        PrintProgress(cfg.train.log_every),
    ]
    if not fast_dev_run:
        best = ModelCheckpoint(
            dirpath=ckpt_dir, filename="best", monitor=MONITOR, mode="max", save_top_k=1, auto_insert_metric_name=False
        )
        callbacks += [best, LastCheckpoint(ckpt_dir / "last.ckpt")]
    return callbacks


def make_trainer(cfg: ExperimentConfig, callbacks: list, fast_dev_run: bool, resume_step: int | None) -> pl.Trainer:
    """The Lightning Trainer of a run: steps, evaluation cadence, precision, devices, loggers."""
    t = cfg.train
    return pl.Trainer(
        max_steps=t.max_steps,
        val_check_interval=t.eval_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        gradient_clip_val=t.grad_clip or None,
        precision=t.precision,
        accelerator=t.accelerator,
        devices=int(t.devices) if t.devices.isdigit() else t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        logger=False if fast_dev_run or t.logger == "none" else make_loggers(cfg, Path(t.output_dir), resume_step),
        callbacks=callbacks,
        fast_dev_run=fast_dev_run,
        enable_progress_bar=progress_to_stdout(),
        enable_model_summary=False,
        log_every_n_steps=t.log_every,
        default_root_dir=t.output_dir,
    )


def train(cfg: ExperimentConfig, fast_dev_run: bool = False, resume_from: str | None = None, overwrite: bool = False):
    """Build the module, trainer and callbacks, and fit. Returns the trainer."""
    started = time.perf_counter()
    out = Path(cfg.train.output_dir)
    ckpt_dir = out / "checkpoints"
    if not fast_dev_run:
        lock = claim_output_dir(out)  # noqa: F841 (held until the run ends)
        prepare_output_dir(cfg, overwrite=overwrite, resuming=resume_from is not None)
    resume_step = None
    if resume_from:
        resume_step = resume_state(resume_from, "loops", "train_lightning.py")["global_step"]
    pl.seed_everything(cfg.train.seed, workers=True, verbose=False)
    module = CountingModule(cfg.to_dict())
    module.setup("fit")  # load (or generate) the data now, so data errors come before training starts
    callbacks = make_callbacks(cfg, ckpt_dir, fast_dev_run)
    trainer = make_trainer(cfg, callbacks, fast_dev_run, resume_step)
    t = cfg.train
    print(
        f"Training {module.model.num_params():,} parameters ({cfg.model.pos_encoding} positions, "
        f"{cfg.model.number_encoding} numbers) for {t.max_steps} steps on {trainer.strategy.root_device}; "
        f"output in {out}/",
        flush=True,
    )
    trainer.fit(module, ckpt_path=resume_from)
    if not fast_dev_run and trainer.is_global_zero:
        scorer = next(c for c in callbacks if isinstance(c, GenerationEval))
        best = scorer.best_scores and {**scorer.best_scores, "path": trainer.checkpoint_callback.best_model_path}
        sets, final_s = score_chosen(best, cfg, module.splits["ood_val"])
        log_sets(trainer.loggers, sets, trainer.global_step)
    _finish_wandb(trainer)
    if not fast_dev_run and trainer.is_global_zero:
        report_run(out, best, sets, time.perf_counter() - started, scorer.eval_seconds + final_s, scorer.n_evals)
    return trainer


def main(argv: list[str] | None = None) -> int:
    args = build_parser(DESCRIPTION, lightning=True).parse_args(argv)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*IterableDataset.*__len__.*")
    warnings.filterwarnings("ignore", ".*treespec.*")  # a Lightning-internal deprecation, not ours
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)  # drop banner lines
    try:
        cfg = resolve_config(args)
        train(cfg, args.fast_dev_run, args.resume_from, args.overwrite)
    except (ConfigError, DataError, CheckpointError, FloatingPointError) as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SystemExit as stop:  # Ctrl-C / SIGTERM: LastCheckpoint already saved and said how to resume
        return 130 if stop.code in (None, 0, 1) else int(stop.code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
