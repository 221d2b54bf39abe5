"""What the loggers receive, read back from disk: TensorBoard event files and the offline W&B run."""

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


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
        "val/gen_acc",
        "ood_val/gen_acc",
        "test/gen_acc",
        "test/gen_acc/len_020-029",
        "test/stop_error_rate",
        "ood_val/best_gen_acc",
    ):
        assert tag in tags, tag
    steps = [e.step for e in acc.Scalars("test/gen_acc")]
    assert len(steps) == 3 and steps[1] - steps[0] == steps[2] - steps[1] == 200  # one per evaluation
    assert all(0.0 <= e.value <= 1.0 for e in acc.Scalars("val/gen_acc"))
    assert "length_curve" in acc.Tags()["images"]
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
        b"test/gen_acc",
        b"ood_val/best_gen_acc",
        b"examples/test",
    ):
        assert key in log, key
