"""Two processes on CPU (gloo) through Lightning's own DDP: trains, scores identically, rank 0 writes."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from config import SMALL_TASK
from data_generation import load_splits
from evaluate import evaluate_pairs, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_process_ddp_trains_and_reports_the_single_process_accuracy(tmp_path):
    out = tmp_path / "ddp"
    overrides = [f"{k}={v}" for k, v in SMALL_TASK.items()]
    proc = subprocess.run(
        [sys.executable, "train_lightning.py", "--config", "counting_tiny", "--accelerator", "cpu", "--devices", "2",
         "--strategy", "ddp", "--output_dir", str(out), "--logger", "none", f"data.data_dir={tmp_path / 'data'}",
         "train.max_steps=40", "train.eval_every=20", *overrides],
        cwd=ROOT, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("step 40:") == 1  # rank 0 alone prints the evaluation
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    printed = float(re.findall(r"ood_val\s+exact\s+([\d.]+)%", proc.stdout)[-1]) / 100  # at step 40, rank 0
    model, cfg = load_checkpoint(out / "checkpoints" / "last.ckpt")
    single = evaluate_pairs(model, load_splits(cfg.data)["ood_val"]).summary()["exact_match"]
    assert abs(printed - single) < 1e-3
