"""The benchmark script runs end to end at its smallest size and writes every headline figure."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import SMALL_TASK

ROOT = Path(__file__).resolve().parents[1]
FIGURES = (
    "lightning_vs_plain_throughput",
    "padding_fraction",
    "kv_vs_recompute_speedup",
    "eval_share_of_wall",
    "scoring_pairs_per_s",
    "mfu_cpu",
)


@pytest.mark.slow
def test_smoke_benchmark_writes_all_figures(tmp_path):
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "run.py"),
        "--smoke",
        "--config",
        "counting_tiny",
        "--json",
        str(out),
        *(f"{k}={v}" for k, v in SMALL_TASK.items()),  # the small task: every pair scores in a second
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "| figure | value | raw numbers |" in done.stdout
    figures = json.loads(out.read_text())
    for key in FIGURES:
        assert math.isfinite(figures[key]) and figures[key] > 0, (key, figures[key])
    assert figures["padding_fraction"] < 1
