"""The study runner trains rows side by side for real, skips finished runs, and writes its tables and figure."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import sweep  # noqa: E402

from config import SMALL_TASK, ExperimentConfig, apply_overrides, load_config  # noqa: E402
from data_generation import ensure_splits, pair_count  # noqa: E402
from evaluate import load_checkpoint  # noqa: E402


def test_rows_are_named_against_their_reference_and_paper_count_is_the_standard_up_row():
    assert all(n.startswith(("standard_", "recipe")) for n in sweep.ROWS)
    for name, row in sweep.ROWS.items():
        cfg = apply_overrides(ExperimentConfig(), dict(row.overrides))  # every row is a valid config
        if name.startswith("recipe_minus_"):
            assert row.overrides and cfg.data.direction == "both"
        if name.startswith("standard_"):  # plus the value bias where the name says so, nothing else of the recipe
            assert cfg.model.value_bias == ("plus_value_bias" in name)
            assert not (cfg.model.scalable_softmax or cfg.model.local_heads or cfg.model.number_encoding != "learned")
    paper = load_config("paper_count").to_dict()
    row = f"standard_{ {'none': 'nope'}.get(paper['model']['pos_encoding'], 'learned') }_up"
    same = apply_overrides(ExperimentConfig(), {**sweep.ROWS[row].overrides, "train.output_dir": "outputs/paper_count"})
    assert same.to_dict() == paper
    wide_row = sweep.ROWS["standard_nope_both_plus_value_bias_feature_head_n6000"]
    wide = apply_overrides(ExperimentConfig(), {**wide_row.overrides, "train.output_dir": "x"})
    assert wide.to_dict() == load_config("counting_wide", {"train.output_dir": "x"}).to_dict()  # the pretrained row
    small = apply_overrides(ExperimentConfig(), {**sweep.ROWS["standard_nope_both_plus_value_bias"].overrides})
    assert small.to_dict() == load_config("counting_small", {"train.output_dir": small.train.output_dir}).to_dict()


@pytest.mark.parametrize("preset", ["counting_small", "counting_wide"])
def test_each_pretrained_checkpoint_is_its_preset(preset):
    _, cfg = load_checkpoint(ROOT / "pretrained" / f"{preset}_seed0.ckpt")
    assert cfg.to_dict() == load_config(preset, {"train.logger": cfg.train.logger}).to_dict()


def test_a_record_made_before_a_new_config_key_still_counts_as_finished(tmp_path):
    cfg = sweep.row_config("recipe", 0, tmp_path, {})
    saved = sweep.comparable(cfg.to_dict())
    del saved["model"]["number_head"]  # written before the key existed; its default reproduces the run
    Path(cfg.train.output_dir).mkdir(parents=True)
    record = Path(cfg.train.output_dir) / "record.json"
    scored = {name: {} for name in ("in_distribution", "between", "test", "far")}
    record.write_text(json.dumps({"config": saved, "chosen": scored}))
    assert sweep.finished_record(cfg) == {"config": saved, "chosen": scored}
    record.write_text(json.dumps({"config": saved, "chosen": {"test": {}}}))
    assert sweep.finished_record(cfg) is None  # scored on other sets than today's: scored again
    saved["model"]["n_layer"] += 1  # a different model is not this run
    record.write_text(json.dumps({"config": saved, "chosen": scored}))
    assert sweep.finished_record(cfg) is None


@pytest.mark.slow
def test_study_runs_side_by_side_skips_what_is_done_and_reports(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    small = [f"{k}={v}" for k, v in SMALL_TASK.items()] + [f"data.data_dir={tmp_path / 'data'}"]
    overrides = ["train.max_steps=20", "train.eval_every=10", *small]  # the small task: seconds to score
    cmd = [sys.executable, "experiments/sweep.py", "--rows", "recipe,standard_nope_both", "--seeds", "0", "--jobs", "2"]
    cmd += ["--runs", str(runs), "--out", str(out), *overrides]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "2 runs to go (2 at a time, local)" in first.stdout
    assert "Training" in (runs / "recipe_seed0" / "train.log").read_text()  # each job's output in its own log
    records = json.loads((out / "results.json").read_text())
    assert [r["row"] for r in records] == ["standard_nope_both", "recipe"]  # the study's row order
    for r in records:
        assert set(sweep.curve(r)) == set(range(6, 46)) and r["best_step"] == 20  # every length to 45, 21 too
        test = r["chosen"]["test"]
        assert test["pairs"] == pair_count(22, 30, 39, "both") - 9 * 2 and not test["sampled"]  # less ood_val's
        assert test["errors"] == sum(c["errors"] for c in test["by_length"].values())
        assert r["last"] == r["chosen"]  # the last evaluation chose it, so the last checkpoint is the chosen one
    assert "| `recipe` | the full recipe | 1 |" in (out / "results.md").read_text()
    assert (out / "results.png").stat().st_size > 10_000
    control = [{**records[0], "row": "standard_nope_up_train150"}]  # a row no study panel draws
    sweep.report(control, out / "control")
    assert (out / "control" / "results.md").is_file() and not (out / "control" / "results.png").exists()
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "0 runs to go" in again.stdout  # finished runs are not trained again
    changed = sweep.row_config("recipe", 0, runs, sweep.parse_overrides(overrides) | {"train.max_steps": "21"})
    assert sweep.finished_record(changed) is None  # a run made with another config does not count as done

    far = [sys.executable, "experiments/extrapolate.py", "--runs", str(runs), "--out", str(out), "--seeds", "0"]
    far += ["--rows", "recipe,standard_nope_both", "--lengths", "10,30,45", "--per_length", "2", *overrides]
    scored = subprocess.run(far, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert scored.returncode == 0, scored.stdout[-2000:] + scored.stderr[-2000:]
    results = json.loads((out / "extrapolation.json").read_text())
    assert set(results) == {"recipe", "standard_nope_both"}
    assert list(results["recipe"][0]["by_length"]) == ["10", "30", "45"]
    assert "| `recipe` | 1 |" in (out / "extrapolation.md").read_text()
    assert (out / "extrapolation.png").stat().st_size > 10_000


def test_every_length_row_can_generate_its_splits(tmp_path):
    for name, row in sweep.ROWS.items():
        if row.panel in ("length", "control"):  # few pairs at short lengths counting up: the split sizes must fit
            cfg = apply_overrides(ExperimentConfig(), {**row.overrides, "data.data_dir": str(tmp_path / name)})
            assert ensure_splits(cfg.data)["train"].shape[0] == cfg.data.n_train
