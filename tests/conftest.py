"""Shared fixtures: a small task that a tiny model learns in well under a minute on 2 CPU cores."""

from pathlib import Path

import pytest

from config import SMALL_TASK, load_config
from train_lightning import train


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
