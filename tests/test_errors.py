"""Bad input gets a one-line error naming the problem, a non-zero exit and no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def assert_clean_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    for word in words:
        assert word in proc.stderr


@pytest.mark.parametrize(
    "overrides,words",
    [
        ({"train.lr": "0"}, ["train.lr", "> 0"]),
        ({"train.lr": "fast"}, ["train.lr", "float"]),
        ({"model.n_layers": "2"}, ["unknown config key", "model.n_layers"]),
        ({"data.test_max_len": "50"}, ["test_min_len"]),
        ({"data.max_number": "100"}, ["max_number", "test_max_len"]),
        ({"model.pos_encoding": "alibi"}, ["pos_encoding"]),
        ({"model.pos_encoding": "learned", "model.max_positions": "100"}, ["max_positions"]),
        ({"model.d_model": "30", "model.n_head": "4"}, ["divisible"]),
    ],
)
def test_impossible_config_values_name_the_key(overrides, words):
    with pytest.raises(ConfigError) as err:
        load_config("counting_small", overrides)
    for word in words:
        assert word in str(err.value)


def test_unknown_preset_and_malformed_yaml(tmp_path):
    with pytest.raises(ConfigError, match="unknown config"):
        load_config("counting_huge")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  n_layer: [2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("optim:\n  lr: 1\n")
    with pytest.raises(ConfigError, match="unknown config section"):
        load_config(str(wrong))


def test_yaml_round_trip(tmp_path):
    from config import save_config

    cfg = load_config("counting_small", {"model.pos_encoding": "rope", "train.lr": "2e-3"})
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(str(tmp_path / "c.yaml")) == cfg


def test_cli_errors_are_one_line(tmp_path):
    assert_clean_error(run("train_lightning.py", "--config", "nope_preset"), "unknown config")
    assert_clean_error(run("train_lightning.py", "train.lr=-1"), "train.lr")
    assert_clean_error(run("train_lightning.py", "--resume_from", str(tmp_path / "missing.ckpt")), "not found")
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a checkpoint")
    assert_clean_error(run("evaluate.py", "--checkpoint", str(junk)), "could not be read")
    assert_clean_error(
        run(
            "train_lightning.py",
            "--config",
            "counting_tiny",
            "--fast_dev_run",
            f"data.data_dir={tmp_path}/none",
            "data.n_train=90000",
        ),
        "distinct sequences",
    )
