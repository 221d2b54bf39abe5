"""Crash safety: kill -9 mid-run, resume from last.ckpt, and land on the same weights as an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from config import SMALL_TASK, load_config

ROOT = Path(__file__).resolve().parents[1]


def command(out: Path, data: Path, *extra: str, script: str = "train_lightning.py") -> list[str]:
    overrides = [f"{k}={v}" for k, v in SMALL_TASK.items()]
    logger = ["--logger", "tensorboard"] if script == "train_lightning.py" else []
    return [
        sys.executable, script, "--config", "counting_tiny", "--seed", "3", "--output_dir", str(out), *logger,
        f"data.data_dir={data}", "train.max_steps=120", "train.eval_every=20", "model.dropout=0.1", *overrides, *extra,
    ]  # fmt: skip


def final_weights(out: Path) -> dict:
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 120
    return state["state_dict"]


def kill_then_resume(out: Path, data: Path, script: str) -> int:
    """Start the command, kill -9 it once last.ckpt is past step 40, rerun it plus --resume_from; the kill step."""
    last = out / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(command(out, data, script=script), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and torch.load(last, weights_only=True)["global_step"] >= 40:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(last, weights_only=True)["global_step"]
    assert 40 <= killed_at < 120
    resumed = subprocess.run(command(out, data, "--resume_from", str(last), script=script), cwd=ROOT,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    return killed_at


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train_lightning.py", "train.py"])
def test_kill_and_the_same_command_plus_resume_reproduces_the_uninterrupted_run(tmp_path, script):
    data = tmp_path / "data"
    straight = tmp_path / "straight"
    subprocess.run(command(straight, data, script=script), cwd=ROOT, check=True, capture_output=True, timeout=300)
    crashed = tmp_path / "crashed"
    kill_then_resume(crashed, data, script)
    a, b = final_weights(straight), final_weights(crashed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    best_a, best_b = (torch.load(d / "checkpoints" / "best.ckpt", weights_only=True) for d in (straight, crashed))
    assert best_a["global_step"] == best_b["global_step"]  # the same checkpoint wins after the resume
    if script == "train_lightning.py":  # the same TensorBoard run continues: one event per evaluation, none replayed
        steps = eval_steps(straight)
        assert len(steps) == 6 and steps == sorted(set(steps))
        assert eval_steps(crashed) == steps


def eval_steps(out: Path) -> list[int]:
    acc = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.step for e in acc.Scalars("ood_val/exact_match")]


@pytest.mark.slow
def test_resume_refuses_a_different_architecture(tmp_path, trained):
    cfg, best = trained
    proc = subprocess.run(
        [sys.executable, "train_lightning.py", "--resume_from", str(best), "--config", "counting_small"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "differs between --config counting_small and the checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, "train_lightning.py", "--resume_from", str(best), "model.n_layer=3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "model.n_layer cannot change on resume" in proc.stderr
    assert "the checkpoint has 2, the command asks for 3" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "train.py", "--resume_from", str(best), "--seed", str(cfg.train.seed + 1)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and f"has {cfg.train.seed}, the command asks for {cfg.train.seed + 1}" in proc.stderr


def test_last_checkpoint_is_saved_after_the_best_one_is_chosen(tmp_path):
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from lightning_model import LastCheckpoint
    from train_lightning import make_callbacks

    callbacks = make_callbacks(load_config("counting_tiny"), tmp_path)
    trainer = pl.Trainer(callbacks=callbacks, logger=False, enable_progress_bar=False)
    kinds = [type(c) for c in trainer.callbacks if isinstance(c, (ModelCheckpoint, LastCheckpoint))]
    assert kinds == [ModelCheckpoint, LastCheckpoint]  # so last.ckpt holds the newest best score


@pytest.mark.slow
def test_sigterm_saves_last_checkpoint_and_says_how_to_resume(tmp_path):
    out, data = tmp_path / "run", tmp_path / "data"
    last = out / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(
        command(out, data, "train.max_steps=100000"), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not last.exists():
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be stopped"
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in err
    assert "Resume with: python train_lightning.py --resume_from" in err
    assert torch.load(last, weights_only=True)["global_step"] > 20  # saved where it stopped, after the first save
