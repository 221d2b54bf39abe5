"""The debug tools run from the repo root as scripts, report what they claim, and fail when they should."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from config import load_config
from data_generation import EOS, NUMBER_OFFSET, ensure_splits
from model import CountingTransformer
from train import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TOOLS = {  # each tool and the options its help must describe
    "quick_test.py": ["not slow"],
    "quick_train_test.py": ["--steps", "--min_accuracy", "--output_dir"],
    "debug_accuracy.py": ["--checkpoint", "--prompt", "--prediction", "--split"],
    "stop_margin.py": ["--checkpoint", "--min_len", "--max_len", "--per_length"],
    "close_pairs.py": ["--checkpoint", "--max_gap"],
    "direction_flips.py": ["--checkpoint", "--split"],
    "heads.py": ["--checkpoint", "--prompt", "--out", "--per_length", "--score_per_length"],
    "setup_wandb.py": ["--test_run", "--dir"],
}


def run_tool(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run debug/<name> from the repo root, as its usage line says."""
    cmd = [sys.executable, f"debug/{name}", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny models: one thread starts and runs fastest
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("name,options", TOOLS.items())
def test_help_describes_the_tools_options(name, options, in_process):
    result = in_process(f"debug/{name}", "--help")
    assert result.returncode == 0 and "usage:" in result.stdout
    assert all(option in result.stdout for option in options), result.stdout


@pytest.mark.slow
def test_quick_test_runs_the_fast_tests_and_none_that_train():
    result = run_tool("quick_test.py", "--collect-only")  # collecting, not running: they run in this suite
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_model.py::test_model_is_causal" in result.stdout  # a fast test
    assert "test_tiny_model_learns_to_count_in_distribution" not in result.stdout  # a slow one


# Hand-written answers and what debug_accuracy must report for each (one subprocess for all of them).
CASES = {
    "early stop": (
        "SoS 3 9 >",
        "3 4 5 6 EoS",
        [
            "exact match: 0 (first divergence at answer index 4: wanted 7, got EoS)",
            "first error: early_stop at answer index 4",
            "stop: early: EoS at answer index 4, the target's at 7",
        ],
    ),
    "wrong direction": (
        "SoS 12 8 >",
        "12 13 14 15 16 17 18",
        ["divergence at answer index 1: wanted 11, got 13", "first error: direction at answer index 1", "stop: never"],
    ),
    "skipped number": (
        "SoS 20 5 >",
        "20 19 18 16 15 14 13 12 11 10 9 8 7 6 5 EoS",
        ["first divergence at answer index 3: wanted 17, got 16", "first error: miscount", "stop: early"],
    ),
    "right": ("SoS 5 7 >", "5 6 7 EoS", ["exact match: 1 (all 4 target tokens match", "first error: none"]),
    "late stop": (
        "SoS 5 7 >",
        "5 6 7 8 EoS",
        ["first error: no_stop at answer index 3", "stop: late: EoS at answer index 4, the target's at 3"],
    ),
}


@pytest.fixture(scope="module")
def hand_written_reports() -> list[str]:
    """debug_accuracy's report on every CASES entry, one text block per case, in order."""
    args = [arg for prompt, prediction, _ in CASES.values() for arg in ("--prompt", prompt, "--prediction", prediction)]
    result = run_tool("debug_accuracy.py", *args)
    assert result.returncode == 0, result.stderr
    return [block for block in result.stdout.split("\n\n") if block.startswith("SoS ")]


@pytest.mark.parametrize("case", CASES)
def test_debug_accuracy_reports_the_divergence_of_a_hand_written_answer(case, hand_written_reports):
    report = hand_written_reports[list(CASES).index(case)]
    prompt, _, expected = CASES[case]
    assert report.startswith(prompt)
    for line in expected:
        assert line in report, f"{case}: {line!r} missing from\n{report}"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prompt", "SoS 3 9 >"], "one --prediction for each --prompt"),
        (["--prompt", "SoS 3 >", "--prediction", "3 EoS"], "expected 'SoS a b >'"),
        (["--checkpoint", "missing.ckpt"], "not found"),
    ],
)
@pytest.mark.slow
def test_debug_accuracy_rejects_bad_input_in_one_line(args, message, in_process):
    result = in_process("debug/debug_accuracy.py", *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_debug_accuracy_explains_a_checkpoint(tmp_path):
    cfg = load_config("counting_tiny", {"train.output_dir": str(tmp_path)})
    torch.manual_seed(0)
    ckpt = tmp_path / "untrained.ckpt"
    save_checkpoint(CountingTransformer(cfg.model), cfg, 0, ckpt)
    result = run_tool("debug_accuracy.py", "--checkpoint", str(ckpt), "--split", "val", "--n", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "val split: exact match 0/" in out and out.count("token accuracy (teacher-forced column)") == 2
    assert "exact match over these 2: 0/2" in out


def always_predicting(token_id: int, tmp_path: Path) -> Path:
    """A checkpoint of a tiny model rigged to predict token_id at every position, whatever the input."""
    cfg = load_config("counting_tiny", {"train.output_dir": str(tmp_path)})
    torch.manual_seed(0)
    model = CountingTransformer(cfg.model)
    model.ln_f.weight.data.zero_()  # the final hidden state is ln_f's bias at every position...
    model.ln_f.bias.data.zero_()
    model.ln_f.bias.data[0] = 1.0
    model.head.weight.data[token_id, 0] = 20.0  # ...which scores token_id 20 and every other token about 0
    ckpt = tmp_path / "constant.ckpt"
    save_checkpoint(model, cfg, 0, ckpt)
    return ckpt


@pytest.mark.slow
def test_stop_margin_reads_every_position_before_b(tmp_path, in_process):
    ckpt = always_predicting(EOS, tmp_path)
    result = in_process(
        "debug/stop_margin.py", "--checkpoint", str(ckpt), "--min_len", "70", "--max_len", "72", "--per_length", "1"
    )
    assert result.returncode == 0, result.stderr
    assert "3 answers, 195 positions before b; margin > 0 at 100.00%" in result.stdout  # (70-6)+(71-6)+(72-6)
    assert "would stop early" in result.stdout
    missing = in_process("debug/stop_margin.py", "--checkpoint", "missing.ckpt")
    assert missing.returncode == 2 and "not found" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.slow
def test_close_pairs_counts_a_wrong_direction_only_where_it_is_one(tmp_path, in_process):
    ckpt = always_predicting(NUMBER_OFFSET + 5, tmp_path)  # always the number 5
    result = in_process("debug/close_pairs.py", "--checkpoint", str(ckpt))
    assert result.returncode == 0, result.stderr
    # 5 is the wrong way only after a=6 counting up (b=7..15) and a=4 counting down (b=0..3)
    assert "3510 pairs with 1 <= |b-a| <= 9: wrong direction for 13 (0.37%)" in result.stdout
    assert "      1    398    0.5%" in result.stdout
    val = ensure_splits(load_config("counting_tiny").data)["val"]  # reported apart: never trained on
    gaps = abs(val[:, 1] - val[:, 0])
    close = val[(gaps >= 1) & (gaps <= 9)]
    wrong = ((close[:, 0] == 6) & (close[:, 1] > 6)) | ((close[:, 0] == 4) & (close[:, 1] < 4))
    share = f"{wrong.mean():.1%}" if len(close) else "-"
    assert f"of them {len(close)} val pairs, never trained on: wrong for {share}" in result.stdout
    bad = in_process("debug/close_pairs.py", "--checkpoint", str(ckpt), "--max_gap", "0")
    assert bad.returncode == 2 and "--max_gap" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_direction_flips_names_a_step_the_wrong_way_and_nothing_else(tmp_path, in_process):
    sys.path.insert(0, str(ROOT / "debug"))
    from direction_flips import flips

    pairs = np.array([[10, 20], [10, 20], [20, 10], [20, 10], [10, 20]])
    first_error = np.array([3, 3, 2, 2, 1])  # current numbers 12, 12, 19, 19; the last is a direction error
    got = np.array([11, 14, 20, 17, 9])  # flip, skip, flip, skip, (index 1: not a miscount)
    assert flips(pairs, first_error, got).tolist() == [True, False, True, False, False]
    ckpt = always_predicting(NUMBER_OFFSET + 5, tmp_path)
    result = in_process("debug/direction_flips.py", "--checkpoint", str(ckpt), "--split", "val")
    assert result.returncode == 0, result.stderr
    assert "val: 100 answers, 0.0% exact" in result.stdout and "0 of 0 a step the wrong way" in result.stdout
    missing = in_process("debug/direction_flips.py", "--checkpoint", str(tmp_path / "missing.ckpt"))
    assert missing.returncode == 2 and "not found" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.slow
def test_quick_train_test_fails_when_the_model_has_not_learned():
    too_short = run_tool("quick_train_test.py", "--steps", "10")  # the passing run is the trained fixture's
    assert too_short.returncode == 1 and "FAIL: " in too_short.stdout and "after 10 steps" in too_short.stdout


@pytest.mark.slow
def test_setup_wandb_reports_the_mode_and_writes_an_offline_test_run(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WANDB_MODE", None)
    env.pop("WANDB_API_KEY", None)
    proc = subprocess.run(
        [sys.executable, "debug/setup_wandb.py", "--test_run", "--dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "mode 'offline'" in proc.stdout and "wandb sync" in proc.stdout
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))


def _reads_end(direction: str = "both") -> CountingTransformer:
    """A hand-set one-layer model whose head 0 puts all its attention on position 2 (end), head 1 none anywhere."""
    cfg = load_config("counting_tiny", {"n_layer": 1, "pos_encoding": "learned", "data.direction": direction})
    model = CountingTransformer(cfg.model)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.blocks[0].ln1.weight.fill_(1.0)
        model.pos_table.weight[2, 0] = 10.0  # only position 2 carries a signal, in dimension 0
        model.blocks[0].attn.qkv.bias[0] = 10.0  # head 0's query: constant, along dimension 0
        model.blocks[0].attn.qkv.weight[cfg.model.d_model, 0] = 10.0  # head 0's key: dimension 0 of the input
    return model.eval()


def test_the_matcher_names_a_head_that_attends_to_position_2_read_end():
    sys.path.insert(0, str(ROOT / "debug"))
    import heads

    model = _reads_end()
    pairs = np.array([[3, 12], [15, 4], [0, 9], [30, 20]])
    rates = heads.match_rates(model, pairs)
    assert rates["0.0"]["end"] == 1.0 and rates["0.0"]["start"] == 0.0 and rates["0.0"]["largest"] < 1.0
    roles = heads.head_roles(rates)
    assert roles["0.0"][0] == "end" and roles["0.1"][0] == ""  # the other head spreads its attention
    assert heads.best_heads(rates)[SELECT_END]["head"] == "0.0"


SELECT_END = 2  # index of "end" in heads.SELECTS


def test_silencing_a_head_changes_the_logits_and_restoring_it_restores_them_bit_for_bit():
    sys.path.insert(0, str(ROOT / "debug"))
    import heads

    model = CountingTransformer(load_config("counting_small").model).eval()
    tokens = torch.tensor([[1, 14, 30, 2, 14, 15, 16, 17]])
    with torch.no_grad():
        before = model(tokens)
        with heads.ablated(model, layer=1, head=2):
            silenced = model(tokens)
        with heads.slopes(model, -1.0):
            flipped = model(tokens)
        after = model(tokens)
    assert not torch.allclose(before, silenced) and not torch.allclose(before, flipped)
    assert torch.equal(before, after)


@pytest.mark.slow
def test_heads_tool_reads_a_trained_model_and_writes_its_tables(trained, tmp_path):
    _, best = trained
    result = run_tool("heads.py", "--checkpoint", str(best), "--out", str(tmp_path), "--per_length", "2",
                      "--score_per_length", "3")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    table = (tmp_path / "heads.md").read_text()
    assert "| head 1.1 mean-ablated |" in table and "| none | " in table
    saved = json.loads((tmp_path / "heads.json").read_text())
    assert set(saved["rates"]) == {"0.0", "0.1", "1.0", "1.1"} and (tmp_path / "heads.png").stat().st_size > 10_000
