"""Shared fixtures: a small task that a tiny model learns in well under a minute on 2 CPU cores."""

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from config import SMALL_TASK, load_config
from train_lightning import train

ROOT = Path(__file__).resolve().parents[1]


def small_config(tmp_path, **overrides):
    """The counting_tiny preset on the small task, writing under tmp_path."""
    values = {
        **SMALL_TASK,
        "data.data_dir": str(tmp_path / "data"),
        "train.output_dir": str(tmp_path / "run"),
        "train.logger": "none",
        **overrides,
    }
    return load_config("counting_tiny", values)


@pytest.fixture
def small_cfg(tmp_path):
    return small_config(tmp_path)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Train the tiny model on the small task for real (about half a minute on 2 cores)."""
    tmp = tmp_path_factory.mktemp("trained")
    cfg = small_config(
        tmp,
        **{
            "train.max_steps": 500,  # not a multiple of eval_every: the last step is evaluated all the same
            "train.eval_every": 200,
            "train.lr": 3e-3,
            "train.logger": "both",
            "model.pos_encoding": "learned",  # fits the small task fastest at this size: these tests check the pipeline
        },
    )
    trainer = train(cfg)
    return cfg, Path(trainer.checkpoint_callback.best_model_path)


@pytest.fixture
def in_process(capsys, monkeypatch):
    """run(script, *args) does what `python script args` from the repo root does, in this process: the exit
    code, stdout and stderr, without the seconds a fresh interpreter spends importing torch. An uncaught
    exception fails the test (no traceback can pass). tests/test_errors.py keeps real subprocesses as well."""
    monkeypatch.chdir(ROOT)

    def run(script: str, *args: str) -> subprocess.CompletedProcess:
        monkeypatch.setattr(sys, "argv", [script, *args])
        capsys.readouterr()
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        out = capsys.readouterr()
        return subprocess.CompletedProcess([script, *args], code, out.out, out.err)

    return run
