"""Integration: a tiny model trained for real, its checkpoint reloaded and scored by evaluate.py."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from data_generation import load_splits
from evaluate import evaluate_pairs, load_checkpoint, selection_score
from evaluate import main as evaluate_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tiny_model_learns_to_count_in_distribution(trained):
    cfg, best = trained
    assert best.name == "best.ckpt" and (best.parent / "last.ckpt").is_file()
    assert (Path(cfg.train.output_dir) / "config.yaml").is_file()
    model, loaded_cfg = load_checkpoint(best)
    assert loaded_cfg.model == cfg.model  # the checkpoint alone rebuilds the model
    val = evaluate_pairs(model, load_splits(cfg.data)["val"], generate=True)
    assert val.summary()["exact_match"] >= 0.9
    assert all(o[-1] == 3 for o, ok in zip(val.outputs, val.correct) if ok)  # correct answers end in EoS


@pytest.mark.slow
def test_teacher_forced_scoring_equals_real_decoding(trained):
    cfg, best = trained
    model, _ = load_checkpoint(best)
    splits = load_splits(cfg.data)
    pairs = np.concatenate([splits["val"], splits["test"]])
    fast, slow = evaluate_pairs(model, pairs), evaluate_pairs(model, pairs, generate=True)
    assert 0 < slow.correct.mean() and not slow.correct.all()  # a mix, so the comparison means something
    assert np.array_equal(fast.failure, slow.failure)
    assert np.array_equal(fast.first_error, slow.first_error)


@pytest.mark.slow
def test_scoring_in_blocks_gives_the_same_scores(trained, monkeypatch):
    import evaluate

    model, _ = load_checkpoint(trained[1])
    splits = load_splits(trained[0].data)
    pairs = np.concatenate([splits["val"], splits["test"]])
    whole = evaluate_pairs(model, pairs)
    monkeypatch.setattr(evaluate, "EVAL_BUDGET", 1)  # one position per block
    blocks = evaluate_pairs(model, pairs)
    assert 0 < whole.correct.mean() and not whole.correct.all()  # a mix, so the comparison means something
    assert np.array_equal(whole.failure, blocks.failure) and np.array_equal(whole.first_error, blocks.first_error)
    assert blocks.answer_loss == pytest.approx(whole.answer_loss, rel=1e-4)


@pytest.mark.slow
def test_evaluate_cli_scores_the_checkpoint_and_answers_prompts(trained, tmp_path, capsys):
    cfg, best = trained
    out_json = tmp_path / "scores.json"
    assert evaluate_main(["--checkpoint", str(best), "--split", "val", "--json", str(out_json)]) == 0
    report = json.loads(out_json.read_text())
    assert set(report["by_length"]) == {str(n) for n in range(6, 21)}
    assert 0.9 <= report["exact_match"] <= 1.0 and report["pairs"] == len(load_splits(cfg.data)["val"])
    assert report["errors"] == sum(c["errors"] for c in report["by_length"].values())
    assert "length   pairs  errors" in capsys.readouterr().out
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("SoS 3 9 >\nSoS 12 8 >\n")
    answers = tmp_path / "answers.txt"
    assert evaluate_main(["--checkpoint", str(best), "--prompts", str(prompts), "--output", str(answers)]) == 0
    lines = answers.read_text().splitlines()
    assert lines[0] == "3 4 5 6 7 8 9 EoS" and lines[1] == "12 11 10 9 8 EoS"


@pytest.mark.slow
def test_evaluate_writes_the_checkpoints_splits_where_none_exist(trained, tmp_path, capsys):
    cfg, best = trained
    scores = []
    for data_dir in (cfg.data.data_dir, tmp_path / "fresh"):
        out_json = tmp_path / "scores.json"
        assert evaluate_main(["--checkpoint", str(best), "--data_dir", str(data_dir), "--json", str(out_json)]) == 0
        scores.append(json.loads(out_json.read_text())["by_length"])
    assert (tmp_path / "fresh" / "metadata.json").is_file() and "generating it" in capsys.readouterr().out
    assert scores[0] == scores[1]  # the same splits, rebuilt from the checkpoint's data config


@pytest.mark.slow
def test_evaluate_scores_a_checkpoint_on_a_changed_data_config(trained, tmp_path):
    cfg, best = trained
    out_json = tmp_path / "scores.json"
    args = ["--checkpoint", str(best), "--split", "ood_val", "--data_dir", str(tmp_path / "d"), "--json", str(out_json)]
    assert evaluate_main([*args, "data.n_ood_val_per_length=4"]) == 0
    n_lengths = cfg.data.test_max_len - cfg.data.test_min_len + 1
    assert cfg.data.n_ood_val_per_length != 4
    assert json.loads(out_json.read_text())["pairs"] == 4 * n_lengths


@pytest.mark.slow
def test_best_checkpoint_is_ranked_by_its_own_ood_val_selection_score(trained):
    cfg, best = trained
    state = torch.load(best, weights_only=True)
    callbacks = {k: v for k, v in state["callbacks"].items() if "ModelCheckpoint" in k}
    (mc,) = callbacks.values()
    assert mc["monitor"] == "ood_val/selection_score"
    model, _ = load_checkpoint(best)
    rescored = selection_score(evaluate_pairs(model, load_splits(cfg.data)["ood_val"]).summary())
    assert mc["best_model_score"].dtype == torch.float64  # float32 cannot tell 1 - 1e-5 x loss from 1
    assert float(mc["best_model_score"]) == pytest.approx(rescored, rel=0, abs=1e-12)


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_help_describes_every_flag(in_process):
    out = in_process("train_lightning.py", "--help").stdout
    for flag in ("--config", "--seed", "--output_dir", "--fast_dev_run", "--resume_from", "--max_steps", "--precision"):
        assert flag in out


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["counting_tiny", "counting_small"])
def test_fast_dev_run_generates_missing_data_and_finishes(tmp_path, preset, in_process):
    data_dir = tmp_path / "data"
    proc = in_process(
        "train_lightning.py",
        "--config",
        preset,
        "--fast_dev_run",
        "--output_dir",
        str(tmp_path / "run"),
        f"data.data_dir={data_dir}",
    )
    assert proc.returncode == 0, proc.stderr
    assert (data_dir / "metadata.json").is_file()
    assert "ood_val" in proc.stdout and not (tmp_path / "run" / "checkpoints").exists()


def test_selection_score_ranks_by_exact_match_then_by_lower_answer_loss():
    def score(exact_match: float, loss: float) -> float:
        return selection_score({"exact_match": exact_match, "answer_loss": loss})

    assert score(1.0, 50.0) > score(1619 / 1620, 0.0)  # one more ood_val sequence right beats any loss below 60
    assert score(1.0, 0.01) > score(1.0, 0.02)  # a tie goes to the surer checkpoint


@pytest.mark.slow
def test_both_trainers_run_the_same_training_from_the_same_command_line(tmp_path):
    from config import SMALL_TASK, load_config

    common = ["--config", "counting_tiny", "--seed", "2", "--max_steps", "30", f"data.data_dir={tmp_path / 'data'}"]
    common += [f"{k}={v}" for k, v in SMALL_TASK.items()]
    for script, out in (("train.py", "plain"), ("train_lightning.py", "lightning")):
        proc = run_cli(script, *common, "--output_dir", str(tmp_path / out), *(["--logger", "none"] * (out != "plain")))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip().splitlines()[-1].startswith("Done in ")  # 30 < eval_every: scored at the end
    configs = [load_config(str(tmp_path / out / "config.yaml")).to_dict() for out in ("plain", "lightning")]
    for c in configs:
        c["train"] = {k: v for k, v in c["train"].items() if k not in ("output_dir", "logger")}
    assert configs[0] == configs[1]  # the same flags resolve to the same run
    weights = [torch.load(tmp_path / out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for out in
               ("plain", "lightning")]  # fmt: skip
    assert max((weights[0][k] - weights[1][k]).abs().max().item() for k in weights[0]) < 1e-4  # the same 30 steps
    summaries = [json.loads((tmp_path / out / "summary.json").read_text()) for out in ("plain", "lightning")]
    assert [s["best"]["step"] for s in summaries] == [30, 30]
    assert summaries[0]["sets"]["test"]["pairs"] == summaries[1]["sets"]["test"]["pairs"] > 0
    assert evaluate_main(["--checkpoint", str(tmp_path / "plain" / "checkpoints" / "best.ckpt"), "--split", "val"]) == 0
