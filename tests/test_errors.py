"""Bad input gets a one-line error naming the problem, a non-zero exit and no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from config import SMALL_TASK, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def assert_clean_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and sum(line.startswith("error") for line in lines) == 1
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
        ({"model.order_stretch": "0.5"}, ["model.order_stretch", ">= 1"]),
        ({"data.direction": "down"}, ["data.direction", "'up'"]),
        ({"model.number_head": "tied"}, ["model.number_head", "features"]),
        ({"data.pack_len": "30"}, ["data.pack_len", "train_max_len=60"]),
        ({"data.pack_len": "300", "model.pos_encoding": "learned"}, ["max_positions", "pack_len"]),
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


@pytest.mark.slow
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


@pytest.fixture
def untrained_ckpt(tmp_path):
    import torch

    from model import CountingTransformer
    from train import save_checkpoint

    cfg = load_config("counting_tiny", {"data.data_dir": str(tmp_path / "data")})
    path = tmp_path / "untrained.ckpt"
    save_checkpoint(CountingTransformer(cfg.model), cfg, 0, path)
    assert torch.load(path, weights_only=True)["global_step"] == 0
    return path


@pytest.mark.parametrize(
    "content,words",
    [
        ("SoS 3 9 >\nSoS 4 >\n", [":2:", "expected 'SoS a b >'"]),
        ("SoS 3 250 >\n", [":1:", "0..199"]),
        ("\n\n", ["holds no prompts"]),
    ],
)
@pytest.mark.slow
def test_bad_prompt_files_name_the_line(tmp_path, untrained_ckpt, content, words, in_process):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(content)
    assert_clean_error(
        in_process("evaluate.py", "--checkpoint", str(untrained_ckpt), "--prompts", str(prompts)), *words
    )


@pytest.mark.slow
def test_descending_prompt_to_an_up_only_checkpoint_is_answered_with_a_warning(tmp_path, in_process):
    import torch

    from model import CountingTransformer
    from train import save_checkpoint

    cfg = load_config("paper_count", {"data.data_dir": str(tmp_path / "data")})
    ckpt = tmp_path / "up.ckpt"
    save_checkpoint(CountingTransformer(cfg.model), cfg, 0, ckpt)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("SoS 3 9 >\nSoS 12 8 >\n")
    proc = in_process("evaluate.py", "--checkpoint", str(ckpt), "--prompts", str(prompts))
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 2
    assert proc.stderr.strip() == "warning: 1 prompt(s) count down; this model only ever saw up counts"
    assert torch.load(ckpt, weights_only=True)["hyper_parameters"]["config"]["data"]["direction"] == "up"


@pytest.mark.parametrize(
    "override,words",
    [
        ("model.n_layer=3", ["only data.KEY=VALUE"]),
        ("data.max_number=250", ["vocabulary"]),
        ("data.n_val", ["key=value"]),
    ],
)
@pytest.mark.slow
def test_evaluation_overrides_may_not_change_the_trained_model(untrained_ckpt, override, words, in_process):
    assert_clean_error(in_process("evaluate.py", "--checkpoint", str(untrained_ckpt), override), *words)


@pytest.mark.slow
def test_an_unknown_evaluation_device_is_refused(untrained_ckpt, in_process):
    assert_clean_error(
        in_process("evaluate.py", "--checkpoint", str(untrained_ckpt), "--device", "tpu"), "--device tpu"
    )


@pytest.mark.slow
def test_unwritable_output_dir_and_existing_checkpoints_are_refused(tmp_path, in_process):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    data = f"data.data_dir={tmp_path / 'data'}"
    assert_clean_error(
        in_process("train_lightning.py", "--config", "counting_tiny", "--output_dir", str(blocker / "run"), data),
        "cannot write to output dir",
    )
    ckpts = tmp_path / "old" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "best.ckpt").write_bytes(b"precious")
    proc = in_process("train_lightning.py", "--config", "counting_tiny", "--output_dir", str(tmp_path / "old"), data)
    assert_clean_error(proc, "already holds checkpoints", "--resume_from")
    assert (ckpts / "best.ckpt").read_bytes() == b"precious"


def test_empty_and_stale_splits_are_reported(tmp_path):
    import hashlib
    import json

    from data_generation import DataError, load_splits, write_splits

    cfg = load_config("counting_tiny", {"data.data_dir": str(tmp_path)}).data
    write_splits(cfg)
    (tmp_path / "val.txt").write_text("")
    meta = json.loads((tmp_path / "metadata.json").read_text())
    meta["splits"]["val"]["sha256"] = hashlib.sha256(b"").hexdigest()
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="val.txt is empty"):
        load_splits(cfg)
    (tmp_path / "metadata.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid metadata JSON"):
        load_splits(cfg)


@pytest.mark.slow
def test_diverging_loss_stops_with_a_clear_message(tmp_path, in_process):
    proc = in_process(
        "train_lightning.py", "--config", "counting_tiny", "--output_dir", str(tmp_path / "run"),
        f"data.data_dir={tmp_path / 'data'}", "train.lr=1e30", "train.warmup_steps=0", "train.grad_clip=0",
    )  # fmt: skip
    assert_clean_error(proc, "loss became", "lower train.lr")
    assert not (tmp_path / "run" / "checkpoints" / "best.ckpt").exists()


@pytest.mark.slow
def test_output_dir_guard_is_shared_and_overwrite_clears_the_old_run(tmp_path):
    from utils import prepare_output_dir

    cfg = load_config("counting_tiny", {"train.output_dir": str(tmp_path / "run")})
    out = prepare_output_dir(cfg)
    (out / "checkpoints" / "best.ckpt").write_bytes(b"old")
    (out / "tb").mkdir()
    (out / "wandb_run_id.txt").write_text("abc")
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        prepare_output_dir(cfg)  # what train.py does, as train_lightning.py does
    assert prepare_output_dir(cfg, resuming=True) == out and (out / "checkpoints" / "best.ckpt").exists()
    prepare_output_dir(cfg, overwrite=True)
    assert not any((out / "checkpoints").iterdir()) and not (out / "tb").exists()
    assert not (out / "wandb_run_id.txt").exists() and (out / "config.yaml").is_file()


@pytest.mark.parametrize("lo,hi", [(3, 10), (20, 10)])
def test_evaluate_length_range_must_be_valid(lo, hi):
    from data_generation import pairs_for_range

    with pytest.raises(ValueError, match="6 <= --min_len <= --max_len"):
        pairs_for_range(lo, hi, 199, 2)


@pytest.mark.slow
def test_a_second_run_into_a_running_runs_folder_stops_and_a_killed_runs_folder_is_free_again(tmp_path, in_process):
    out = tmp_path / "run"
    hold = (
        "import sys, time; from pathlib import Path; from utils import claim_output_dir as c; l = c(Path(sys.argv[1]))"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold + "; print('held', flush=True); time.sleep(120)", str(out)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout.readline().strip() == "held"  # a run is training in out/
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "best.ckpt").write_text("the running run's")
    cmd = ["train_lightning.py", "--config", "counting_tiny", "--max_steps", "2", "--output_dir", str(out)]
    cmd += ["--logger", "none", f"data.data_dir={tmp_path / 'data'}", *(f"{k}={v}" for k, v in SMALL_TASK.items())]
    for extra in ([], ["--overwrite"]):
        assert_clean_error(in_process(*cmd, *extra), "is in use by a running training", f"pid {holder.pid}")
    assert (out / "checkpoints" / "best.ckpt").read_text() == "the running run's"  # nothing touched
    holder.kill()
    holder.wait()
    proc = in_process(*cmd, "--overwrite")  # the killed run's lock went with it
    assert proc.returncode == 0, proc.stderr[-2000:]
