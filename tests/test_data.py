import hashlib

import numpy as np
import pytest

from config import ConfigError, DataConfig
from data_generation import (
    EOS,
    NUMBER_OFFSET,
    PAD,
    SPLITS,
    CountingTokenizer,
    DataError,
    TrainStream,
    answer_loss,
    encode_batch,
    load_splits,
    make_splits,
    pairs_of_length,
    seq_length,
    split_text,
    write_splits,
)


def test_format_round_trips_through_tokenizer_and_batch_encoding():
    tok = CountingTokenizer(199)
    text = "SoS 24 18 > 24 23 22 21 20 19 18 EoS"
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(encode_batch([24], [18])[0]) == text
    assert tok.decode(encode_batch([7], [7])[0]) == "SoS 7 7 > 7 EoS"
    assert split_text(np.array([[3, 5]])) == "SoS 3 5 > 3 4 5 EoS\n"


def test_encode_batch_pads_right_and_matches_length_definition():
    batch = encode_batch(np.array([0, 10]), np.array([3, 10]))
    assert batch.shape == (2, 9)  # |3-0| + 6
    assert batch[1, 6:].eq(PAD).all() and batch[1, 5] == EOS and batch[1, 4] == NUMBER_OFFSET + 10
    assert list(seq_length([0, 10], [3, 10])) == [9, 6]


def test_tokenizer_rejects_out_of_range_and_unknown_tokens():
    tok = CountingTokenizer(50)
    with pytest.raises(ValueError, match="0..50"):
        tok.encode("SoS 51 3 >")
    with pytest.raises(ValueError, match="expected 'SoS a b >'"):
        tok.parse_prompt("SoS 1 2")


def test_pairs_of_length_are_all_distinct_sequences_of_that_length():
    pairs = pairs_of_length(10, 20)
    assert len(pairs) == 2 * (21 - 4)
    assert set(seq_length(pairs[:, 0], pairs[:, 1])) == {10}
    assert len({tuple(p) for p in pairs.tolist()}) == len(pairs)
    assert len(pairs_of_length(6, 20)) == 21  # a == b: one sequence per number


def test_splits_have_specified_lengths_are_flat_disjoint_and_deterministic():
    cfg = DataConfig()
    splits = make_splits(cfg)
    lengths = {k: seq_length(v[:, 0], v[:, 1]) for k, v in splits.items()}
    assert lengths["train"].min() == 6 and lengths["train"].max() == 60
    assert lengths["val"].min() >= 6 and lengths["val"].max() <= 60
    for name in ("test", "ood_val"):
        assert lengths[name].min() == 70 and lengths[name].max() == 150
    counts = np.bincount(lengths["train"])[6:61]
    assert counts.max() - counts.min() <= 1  # flat over length
    assert np.bincount(lengths["test"])[70:151].min() == cfg.n_test_per_length
    sets = {k: {tuple(p) for p in v.tolist()} for k, v in splits.items()}
    assert not sets["train"] & sets["val"] and not sets["test"] & sets["ood_val"]
    assert len(sets["train"]) == cfg.n_train  # no duplicates inside a split
    up = splits["train"][:, 1] > splits["train"][:, 0]
    assert 0.4 < up.mean() < 0.6  # both directions
    assert splits["train"].max() > 190  # starts spread over the whole range
    again = make_splits(DataConfig())
    assert all(np.array_equal(splits[k], again[k]) for k in SPLITS)
    other = make_splits(DataConfig(seed=7))
    assert not np.array_equal(splits["train"], other["train"])


def test_a_larger_selection_split_keeps_the_test_set_and_the_training_data():
    def as_set(pairs: np.ndarray) -> set:
        return {tuple(p) for p in pairs.tolist()}

    small, large = make_splits(DataConfig(n_ood_val_per_length=5)), make_splits(DataConfig(n_ood_val_per_length=20))
    assert as_set(small["test"]) == as_set(large["test"])  # the reported numbers stay comparable
    assert as_set(small["ood_val"]) < as_set(large["ood_val"])  # the old selection split is inside the new one
    assert np.array_equal(small["train"], large["train"]) and np.array_equal(small["val"], large["val"])


def test_written_files_are_byte_identical_for_the_same_seed(tmp_path):
    digests = []
    for folder in ("a", "b"):
        write_splits(DataConfig(data_dir=str(tmp_path / folder)))
        digests.append([hashlib.sha256((tmp_path / folder / f"{s}.txt").read_bytes()).hexdigest() for s in SPLITS])
    assert digests[0] == digests[1]
    assert (tmp_path / "a" / "metadata.json").read_text() == (tmp_path / "b" / "metadata.json").read_text()


def test_impossible_parameters_are_errors_not_silent_fixes():
    with pytest.raises(ConfigError, match="max_number"):
        DataConfig(max_number=100).check()  # length 150 needs 144
    with pytest.raises(ConfigError, match="distinct sequences"):
        make_splits(DataConfig(n_train=20000))


def test_load_splits_detects_stale_and_damaged_data(tmp_path):
    cfg = DataConfig(data_dir=str(tmp_path))
    with pytest.raises(DataError, match="python data_generation.py"):
        load_splits(cfg)
    write_splits(cfg)
    assert len(load_splits(cfg)["train"]) == cfg.n_train
    with pytest.raises(DataError, match="other parameters"):
        load_splits(DataConfig(data_dir=str(tmp_path), n_train=4000))
    path = tmp_path / "test.txt"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="checksum"):
        load_splits(cfg)


@pytest.mark.parametrize("sampling", ["fixed", "online"])
def test_train_stream_is_a_function_of_seed_and_step(sampling):
    cfg = DataConfig(sampling=sampling)
    splits = make_splits(cfg)
    stream = TrainStream(cfg, 64, seed=3, train_pairs=splits["train"], exclude=splits["val"])
    first = [stream.batch_pairs(s) for s in range(200)]
    stream.start_step = 150
    resumed = iter(stream)
    for s in range(150, 160):  # a resumed stream yields exactly the batches of those steps
        expect = first[s]
        assert encode_batch(expect[:, 0], expect[:, 1]).equal(next(resumed))
    lengths = np.concatenate([seq_length(p[:, 0], p[:, 1]) for p in first])
    assert lengths.min() == 6 and lengths.max() == 60
    assert max(np.ptp(seq_length(p[:, 0], p[:, 1])) for p in first) < 5  # length-bucketed batches
    val = {tuple(p) for p in splits["val"].tolist()}
    assert not val & {tuple(p) for b in first for p in b.tolist()}  # never trains on val


def test_answer_loss_covers_answer_tokens_only():
    import torch

    tokens = encode_batch(np.array([5, 9]), np.array([7, 9]))  # lengths 8 and 6
    logits = torch.zeros(2, tokens.shape[1] - 1, 260)
    targets = tokens[:, 1:]
    logits.scatter_(2, targets[..., None], 20.0)  # perfect predictions everywhere ...
    logits[:, :3] = 0.0  # ... except the prompt, which is not scored
    logits[1, 5:] = 0.0  # and the padding of the short row
    loss, acc = answer_loss(logits, tokens)
    assert acc == 1.0 and loss < 1e-3
    logits[0, 3] = 0.0  # break the first answer token's prediction: now it counts
    assert answer_loss(logits, tokens)[0] > loss


def test_prefix_option_cuts_long_counts_and_never_touches_evaluation_pairs():
    cfg = DataConfig(sampling="online", prefix_fraction=0.5)
    splits = make_splits(cfg)
    long_pairs = np.concatenate([splits["ood_val"], splits["test"]])
    stream = TrainStream(cfg, 64, seed=0, exclude=splits["val"], exclude_long=long_pairs)
    batches = [stream.batch_tokens(i) for i in range(100)]
    prefixes = [b for b in batches if not (b == EOS).any()]
    assert 30 < len(prefixes) < 70  # about half
    forbidden = {tuple(p) for p in long_pairs.tolist()}
    for b in prefixes:
        assert b.shape[1] <= 60 and not (b == PAD).any()
        a, z = b[:, 1] - NUMBER_OFFSET, b[:, 2] - NUMBER_OFFSET
        assert ((z - a).abs() > 54).all()  # counts too long to train on whole
        assert not forbidden & set(zip(a.tolist(), z.tolist()))
    assert DataConfig().prefix_fraction == 0.0  # the strict task is the default


def test_up_only_task_holds_no_descending_count_anywhere(tmp_path):
    cfg = DataConfig(direction="up", sampling="online", prefix_fraction=0.3, data_dir=str(tmp_path))
    splits = make_splits(cfg)
    for name, pairs in splits.items():
        assert (pairs[:, 0] <= pairs[:, 1]).all(), name
    lengths = seq_length(splits["test"][:, 0], splits["test"][:, 1])
    assert np.bincount(lengths)[70:151].min() == cfg.n_test_per_length  # every test length still full
    stream = TrainStream.for_training(cfg, 64, 0, splits)
    for i in range(60):  # whole counts and prefixes alike
        tokens = stream.batch_tokens(i)
        assert (tokens[:, 2] >= tokens[:, 1]).all()
    write_splits(cfg)
    assert "direction" in (tmp_path / "metadata.json").read_text()  # kept apart from both-direction folders
    with pytest.raises(DataError, match="other parameters"):
        load_splits(DataConfig(data_dir=str(tmp_path)))


def test_default_direction_keeps_the_splits_and_stream_as_before():
    both = make_splits(DataConfig())
    assert (both["train"][:, 0] > both["train"][:, 1]).any()
    stream = TrainStream(DataConfig(sampling="online"), 64, seed=3, exclude=both["val"])
    up = TrainStream(DataConfig(sampling="online", direction="up"), 64, seed=3, exclude=both["val"])
    a, b = stream.batch_pairs(7), up.batch_pairs(7)
    assert np.array_equal(np.abs(a[:, 1] - a[:, 0]), np.abs(b[:, 1] - b[:, 0]))  # the same draws, only flipped up
