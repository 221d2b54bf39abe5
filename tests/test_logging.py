"""What the loggers receive, read back from disk: TensorBoard event files and the offline W&B run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from config import SMALL_TASK
from data_generation import load_splits, pair_count

ROOT = Path(__file__).resolve().parents[1]


def tb_events(cfg) -> EventAccumulator:
    acc = EventAccumulator(str(Path(cfg.train.output_dir) / "tb"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.mark.slow
def test_tensorboard_holds_scalars_examples_and_the_length_curve(trained):
    cfg, _ = trained
    acc = tb_events(cfg)
    tags = set(acc.Tags()["scalars"])
    for tag in (
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "train/tokens_per_s",
        "val/loss",
        "val/token_acc",
        "val/exact_match",
        "ood_val/exact_match",
        "test/exact_match",
        "test/exact_match/len_020-029",
        "ood_val/exact_match/len_020-029",
        "ood_val/stop_error_rate",
        "test/errors",
        "in_distribution/exact_match",
        "ood_val/best_exact_match",
    ):
        assert tag in tags, tag
    steps = [e.step for e in acc.Scalars("ood_val/exact_match")]
    # one per evaluation (Lightning logs them one step early), and one at the last step: 500 is no multiple of 200
    assert len(steps) == 3 and steps[1] - steps[0] == 200 and steps[2] - steps[1] == 100
    test_steps = [e.step for e in acc.Scalars("test/exact_match")]
    assert test_steps == [500]  # every test pair, scored once on the chosen checkpoint after training
    n_test = pair_count(22, 30, 39, "both") - len(load_splits(cfg.data)["ood_val"])  # every pair selection never saw
    assert acc.Scalars("test/pairs")[0].value == n_test and acc.Scalars("in_distribution/pairs")[0].value > 500
    assert all(0.0 <= e.value <= 1.0 for e in acc.Scalars("val/exact_match"))
    assert "length_curve" in acc.Tags()["images"] and "heads" in acc.Tags()["images"]  # heads: the last evaluation
    text_tags = acc.Tags()["tensors"]
    assert any("examples" in t for t in text_tags)
    example_text = acc.Tensors([t for t in text_tags if "examples" in t][0])[-1].tensor_proto.string_val[0].decode()
    assert "SoS" in example_text and ">" in example_text


@pytest.mark.slow
def test_offline_wandb_run_holds_config_and_summary(trained):
    cfg, _ = trained
    out = Path(cfg.train.output_dir)
    run_id = (out / "wandb_run_id.txt").read_text().strip()
    runs = list((out / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 1, list((out / "wandb").glob("*"))
    # An offline run is one protobuf log (run-<id>.wandb); its keys are stored as plain bytes.
    log = (runs[0] / f"run-{run_id}.wandb").read_bytes()
    assert log.startswith(b":W&B")
    for key in (
        b"pos_encoding",
        b"num_params",
        b"git_commit",
        b"test/exact_match",
        b"ood_val/best_exact_match",
        b"examples/ood_val",
        b"length_curve",
        b"heads",
    ):
        assert key in log, key


@pytest.mark.slow
def test_a_run_shorter_than_eval_every_still_ends_scored_and_logged(tmp_path):
    """40 steps with eval_every 100: the last step is evaluated, so best.ckpt and every logged item exist."""
    out = tmp_path / "run"
    overrides = [f"{k}={v}" for k, v in SMALL_TASK.items()] + [f"data.data_dir={tmp_path / 'data'}"]
    cmd = [sys.executable, "train_lightning.py", "--config", "counting_tiny", "--max_steps", "40", "--logger", "both"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.run([*cmd, "--output_dir", str(out), *overrides], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "checkpoints" / "best.ckpt").is_file()
    last = proc.stdout.strip().splitlines()
    assert last[-4].startswith("Best checkpoint (by ood_val): step 40, ood_val ")
    assert last[-3].startswith("Scored on every pair it was not chosen on: in-distribution 6-20: ")
    assert last[-1].startswith("Done in ") and "1 evaluations and the final scoring" in last[-1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["step"] == 40 and summary["n_evals"] == 1 and 0 < summary["eval_s"] < summary["wall_s"]
    acc = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    assert "test/exact_match/len_020-029" in acc.Tags()["scalars"] and "length_curve" in acc.Tags()["images"]
    assert any("examples" in t for t in acc.Tags()["tensors"])
    (run,) = (out / "wandb").glob("offline-run-*")
    log = next(run.glob("run-*.wandb")).read_bytes()
    assert all(key in log for key in (b"test/exact_match/len_020-029", b"examples/ood_val", b"length_curve"))
