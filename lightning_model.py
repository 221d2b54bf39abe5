"""The LightningModule that trains the counting transformer, and the callback that scores generation."""

import math
import sys
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader

from config import ExperimentConfig, from_dict
from data_generation import (
    PAD,
    CountingTokenizer,
    TrainStream,
    answer_loss,
    encode_batch,
    ensure_splits,
    seq_length,
    target_answer,
)
from evaluate import (
    GenerationResult,
    bucket_table,
    example_rows,
    format_example,
    selection_score,
)
from model import CountingTransformer
from plots import count_heads_figure, counts_of, length_curve_figure
from utils import atomic_save, check_loss, configure_optimizer, git_commit, progress_line, score_splits, seed_step

EVAL_SPLITS = ("val", "ood_val")  # scored at every evaluation (utils.score_splits); every test pair at the end
MONITOR = "ood_val/selection_score"  # checkpoints are ranked on ood_val only (selection_score)


class CountingModule(pl.LightningModule):
    """Next-token training on answer tokens, teacher-forced validation, AdamW + warmup/cosine."""

    def __init__(self, config: dict):
        super().__init__()
        self.save_hyperparameters()  # a plain dict, so checkpoints load with weights_only=True
        self.cfg: ExperimentConfig = from_dict(config)
        self.model = CountingTransformer(self.cfg.model)
        self.splits: dict[str, np.ndarray] = {}

    def setup(self, stage: str) -> None:
        if not self.splits:
            self.splits = ensure_splits(self.cfg.data)

    def train_dataloader(self) -> DataLoader:
        stream = TrainStream.for_training(self.cfg.data, self.cfg.train.batch_size, self.cfg.train.seed, self.splits)
        stream.start_step = self.trainer.global_step  # a resumed run continues the same batch sequence
        stream.rank, stream.world_size = self.trainer.global_rank, self.trainer.world_size
        return DataLoader(stream, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        pairs = self.splits["val"]
        pairs = pairs[np.argsort(seq_length(pairs[:, 0], pairs[:, 1]), kind="stable")]
        size = self.cfg.train.batch_size * 4
        batches = [encode_batch(pairs[i : i + size, 0], pairs[i : i + size, 1]) for i in range(0, len(pairs), size)]
        return DataLoader(batches, batch_size=None)

    def _shared_step(self, tokens: torch.Tensor, stage: str) -> torch.Tensor:
        loss, accuracy = answer_loss(self.model(tokens[:, :-1]), tokens)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=not on_step, prog_bar=True, sync_dist=not on_step)
        self.log(f"{stage}/token_acc", accuracy, on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
        return loss

    def on_train_batch_start(self, batch: torch.Tensor, batch_idx: int) -> None:
        # Dropout and position offsets draw from a seed of (seed, step): checkpoints do not hold RNG
        # state, and this way a resumed run draws exactly what the uninterrupted one would have.
        # Each DDP rank draws its own masks: the same index scheme as its batches (step*world+rank).
        index = self.global_step * self.trainer.world_size + self.trainer.global_rank
        seed_step(self.cfg.train.seed, index)

    def training_step(self, tokens: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self._shared_step(tokens, "train")
        check_loss(loss, self.global_step)
        return loss

    def on_fit_start(self) -> None:
        """Record what the config alone does not say: size, device, precision, code version."""
        extra = {
            "num_params": self.model.num_params(),
            "device": str(self.device),
            "precision": str(self.trainer.precision),
            "git_commit": git_commit(),
        }
        for logger in self.trainer.loggers:
            logger.log_hyperparams(extra)

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.global_step % self.cfg.train.log_every == 0:
            norms = [p.grad.detach().norm() for p in self.model.parameters() if p.grad is not None]
            self.log("train/grad_norm", torch.stack(norms).norm())

    def validation_step(self, tokens: torch.Tensor, batch_idx: int) -> None:
        self._shared_step(tokens, "val")

    def configure_optimizers(self):
        t = self.cfg.train
        optimizer, scheduler = configure_optimizer(
            self.model, t.lr, t.weight_decay, t.warmup_steps, t.max_steps, t.min_lr_ratio
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class GenerationEval(pl.Callback):
    """After each validation: greedy generation on val and ood_val, logged overall and per length.

    ood_val chooses the checkpoint; test is scored once, on the chosen checkpoint after training.
    Examples (mistakes first) and the accuracy-vs-length curve come from val and ood_val. The run's
    last step is always evaluated, even when max_steps is not a multiple of eval_every.
    """

    def __init__(self, n_examples: int = 6, limit: int | None = None):
        self.n_examples = n_examples
        self.limit = limit  # score only this many pairs per split (for --fast_dev_run)
        self.best = -math.inf  # best ood_val exact match so far
        self.best_score = -math.inf  # best ood_val selection score so far
        self.best_scores: dict = {}  # step and exact match per split of the best evaluation
        self.eval_seconds, self.n_evals = 0.0, 0  # this process only
        self._started = 0.0

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= trainer.max_steps and not trainer.fast_dev_run:
            trainer.should_stop = True  # Lightning then validates once more before it stops

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.eval_seconds += time.perf_counter() - self._started
            self.n_evals += 1

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: CountingModule) -> None:
        if trainer.sanity_checking:
            return
        tokenizer = CountingTokenizer(module.cfg.data.max_number)
        step = trainer.global_step
        lines, curves = [f"step {step}:"], {}
        splits = {split: module.splits[split][: self.limit] for split in EVAL_SPLITS}
        results = score_splits(module.model, splits, module.cfg.train.eval_batch_size)
        for split, result in results.items():
            summary = result.summary()
            module.log(f"{split}/exact_match", summary["exact_match"])
            module.log(f"{split}/min_over_lengths", summary["min_over_lengths"])
            for key in ("numbers_right", "stop_error_rate", "direction_rate", "no_stop_rate", "early_stop_rate"):
                module.log(f"{split}/{key}", summary[key])
            if split == "ood_val":
                for bucket, acc in bucket_table(result.by_length()).items():
                    module.log(f"{split}/exact_match/{bucket}", acc)
            lines.append(
                f"  {split:7s} exact {summary['exact_match']:6.1%}  worst length {summary['min_over_lengths']:6.1%}"
                f"  direction errors {summary['direction_rate']:5.1%}  stop errors {summary['stop_error_rate']:5.1%}"
            )
            if split == "ood_val":
                rows = example_rows(module.model, result, self.n_examples)
                lines += ["    " + format_example(tokenizer, r["pair"], r["output"], r["correct"]) for r in rows]
                self.best = max(self.best, summary["exact_match"])
                module.log("ood_val/best_exact_match", self.best)
                module.log("ood_val/answer_loss", summary["answer_loss"])
                module.log(MONITOR, torch.tensor(selection_score(summary), dtype=torch.float64))
            curves[split] = counts_of(result.counts()["by_length"])
        if self._improves(results["ood_val"]):
            self.best_score = selection_score(results["ood_val"].summary())
            self.best_scores = {"step": step, **{k: r.summary()["exact_match"] for k, r in results.items()}}
        if trainer.is_global_zero:
            print("\n".join(lines), flush=True)
            self._send_to_loggers(trainer, module, rows, curves, tokenizer)

    def _improves(self, ood_val: GenerationResult) -> bool:
        """Would this ood_val result be the new best checkpoint (ModelCheckpoint ranks the same score)?"""
        return selection_score(ood_val.summary()) > self.best_score

    def _send_to_loggers(self, trainer, module, rows: list[dict], curves: dict, tokenizer) -> None:
        """Examples as a W&B table / TensorBoard text, and the length curve as an image, in each logger."""
        if not trainer.loggers:
            return
        step = trainer.global_step
        table = [
            [
                f"SoS {r['pair'][0]} {r['pair'][1]} >",
                tokenizer.decode(target_answer(*r["pair"])),
                tokenizer.decode(r["output"]),
                r["correct"],
                r["length"],
                r["failure"],
            ]
            for r in rows
        ]
        columns = ["prompt", "target", "output", "correct", "length", "first_error"]
        merged = {**curves.get("val", {}), **curves.get("ood_val", {})}
        figures = {
            "length_curve": length_curve_figure(
                merged, module.cfg.data.train_max_len, f"val and ood_val at step {step}"
            )
        }
        if step >= trainer.max_steps:  # the last evaluation: every head's attention on the longest ood_val count
            ood_val = module.splits["ood_val"]
            longest = ood_val[np.argmax(np.abs(ood_val[:, 1] - ood_val[:, 0]))]
            figures["heads"] = count_heads_figure(module.model, *longest)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                text = "\n".join(f"    {row[0]} {row[2]}  ({'right' if row[3] else row[5]})" for row in table)
                logger.experiment.add_text("examples/ood_val", text, step)
                for name, figure in figures.items():
                    logger.experiment.add_figure(name, figure, step)
            elif isinstance(logger, WandbLogger):
                logger.log_table("examples/ood_val", columns=columns, data=table, step=step)
                for name, figure in figures.items():
                    logger.log_image(name, [figure], step=step)
                logger.experiment.summary["ood_val/best_exact_match"] = self.best
        import matplotlib.pyplot as plt

        for figure in figures.values():
            plt.close(figure)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_score": self.best_score, "best_scores": self.best_scores}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]
        self.best_score = state.get("best_score", -math.inf)
        self.best_scores = state.get("best_scores", {})


class LastCheckpoint(Checkpoint):
    """Write `last.ckpt` after every evaluation and at the end, atomically (temp file, then rename).

    As a Checkpoint it runs after ModelCheckpoint, so the saved state already knows the newest best.

    Lightning's ModelCheckpoint only refreshes last.ckpt when it also saves a new best, so a run whose
    best came early would otherwise resume from that early step. Saving after the evaluation means
    a resumed run neither repeats nor skips one; TensorBoard is flushed so its events match.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def save(self, trainer: pl.Trainer) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.flush()
        # full state, for exact resume; every rank joins the save, rank 0 writes
        atomic_save(self.path, lambda tmp: trainer.save_checkpoint(tmp, weights_only=False), trainer.is_global_zero)

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.save(trainer)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.save(trainer)

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException) -> None:
        """Ctrl-C or SIGTERM: save where we are and say how to go on. Errors (NaN loss) save nothing."""
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            self.save(trainer)
            if trainer.is_global_zero:
                print(
                    f"\nStopped at step {trainer.global_step}; saved {self.path}.\n"
                    f"Resume with: python train_lightning.py --resume_from {self.path}",
                    file=sys.stderr,
                    flush=True,
                )


class PrintProgress(pl.Callback):
    """A plain progress line every `every` steps: loss, lr, useful tokens/s and step time (evaluation excluded)."""

    def __init__(self, every: int):
        self.every = every
        self.tokens, self.steps = 0, 0
        self.started = self.paused = time.perf_counter()

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.paused = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.started += time.perf_counter() - self.paused  # evaluation time is not training time

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        self.tokens += int((batch != PAD).sum())
        self.steps += 1
        step = trainer.global_step
        if step % self.every and step != trainer.max_steps:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        module.log("train/tokens_per_s", self.tokens / elapsed)
        module.log("train/step_time_s", elapsed / self.steps)
        module.log("train/lr", lr)
        if trainer.is_global_zero:
            loss = float(outputs["loss"]) if isinstance(outputs, dict) else float("nan")
            print(progress_line(step, trainer.max_steps, loss, lr, self.tokens / elapsed), flush=True)
        self.tokens, self.steps, self.started = 0, 0, time.perf_counter()


def progress_to_stdout() -> bool:
    """Show Lightning's bar only on a terminal; logs get PrintProgress lines instead."""
    return sys.stdout.isatty()
