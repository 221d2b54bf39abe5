"""The RASP-L interpreter is causal, and the counting program predicts every answer token of the real splits."""

import numpy as np
import pytest

from config import DataConfig
from data_generation import EOS, PAD, PROMPT_LEN, encode_batch, make_splits, seq_length
from rasp import aggregate, count_ops, count_program, indices, main, select

SPLITS = make_splits(DataConfig())  # the default task: numbers 0..199, train 6..60, test 70..150


def answer_mask(seqs: np.ndarray) -> np.ndarray:
    """True at answer positions of full, equal-length sequences: '>' up to b, whose next token is a..b or EoS."""
    mask = np.zeros(seqs.shape, dtype=bool)
    mask[:, PROMPT_LEN - 1 : -1] = True
    return mask


def wrong_sequences(program, pairs: np.ndarray) -> np.ndarray:
    """Per pair: does program miss the true next token at any answer position? One batched run per length."""
    wrong = np.zeros(len(pairs), dtype=bool)
    lengths = seq_length(pairs[:, 0], pairs[:, 1])
    for n in np.unique(lengths):
        rows = np.flatnonzero(lengths == n)
        seqs = encode_batch(pairs[rows, 0], pairs[rows, 1]).numpy()
        predicted = program(seqs)
        want = np.roll(seqs, -1, axis=1)  # the next token at each position
        wrong[rows] = ((predicted != want) & answer_mask(seqs)).any(1)
    return wrong


def count_up(seq) -> np.ndarray:
    """The paper's up-only program: it never compares start with end."""
    return count_program(seq, direction="up")


@pytest.mark.parametrize("split, lengths", [("train", (6, 60)), ("test", (70, 150))])
def test_program_predicts_every_answer_token_of_the_split(split, lengths):
    pairs = SPLITS[split]
    seen = seq_length(pairs[:, 0], pairs[:, 1])
    assert (seen.min(), seen.max()) == lengths and (pairs[:, 0] > pairs[:, 1]).any()  # both directions present
    wrong = wrong_sequences(count_program, pairs)
    assert not wrong.any(), f"{wrong.sum()} of {len(pairs)} wrong, first {pairs[wrong][:3].tolist()}"


def test_checker_catches_a_program_with_the_wrong_direction():
    pairs = np.concatenate([SPLITS["train"], SPLITS["test"]])
    wrong = wrong_sequences(count_up, pairs)
    up = pairs[:, 0] <= pairs[:, 1]
    assert not wrong[up].any() and wrong[~up].all()


@pytest.mark.parametrize("split", ["train", "test"])
def test_up_program_predicts_every_answer_token_of_the_up_only_splits(split):
    pairs = make_splits(DataConfig(direction="up"))[split]
    assert (pairs[:, 0] <= pairs[:, 1]).all()
    assert not wrong_sequences(count_up, pairs).any()


def test_program_outputs_pad_where_no_answer_token_follows():
    seqs = encode_batch(np.array([3, 9, 5]), np.array([9, 3, 5])).numpy()  # up, down, a == b (length 6)
    predicted = count_program(seqs)
    prompt_or_eos = (np.arange(seqs.shape[1]) < PROMPT_LEN - 1) | (seqs == EOS)
    assert (predicted[prompt_or_eos] == PAD).all()
    assert predicted[2, PROMPT_LEN - 1] == seqs[2, PROMPT_LEN] and predicted[2, PROMPT_LEN] == EOS


def test_program_reads_only_the_prefix():
    """Run on each prefix alone: its last prediction is the next true token, as in generation."""
    for a, b in [(0, 144), (144, 0), (7, 7), (120, 180)]:
        seq = encode_batch(np.array([a]), np.array([b])).numpy()[0]
        for p in range(PROMPT_LEN, len(seq)):
            assert count_program(seq[:p])[-1] == seq[p], (a, b, p)


def test_program_handles_sequences_packed_into_one_context():
    parts = [encode_batch(np.array([a]), np.array([b])).numpy()[0] for a, b in [(12, 8), (5, 5), (30, 41)]]
    predicted = count_program(np.concatenate(parts))
    offset = 0
    for part in parts:
        mask = answer_mask(part[None])[0]
        assert (predicted[offset : offset + len(part)][mask] == part[1:][mask[:-1]]).all()
        offset += len(part)


def test_future_tokens_never_change_earlier_outputs():
    seq = encode_batch(np.array([40]), np.array([20])).numpy()[0]
    before = count_program(seq)
    rng = np.random.default_rng(0)
    for i in range(len(seq) - 1):
        changed = seq.copy()
        changed[i + 1 :] = rng.integers(0, 204, len(seq) - i - 1)
        assert (count_program(changed)[: i + 1] == before[: i + 1]).all(), i


def test_select_is_causal_and_passes_key_then_query():
    idx = indices(np.zeros(4))
    assert (select(idx, idx, lambda k, q: k >= 0) == np.tril(np.ones((4, 4), dtype=bool))).all()
    keys, queries = np.array([5, 6, 7, 8]), np.array([7, 7, 7, 7])
    want = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]], dtype=bool)  # key < query, causal
    assert (select(keys, queries, lambda k, q: k < q) == want).all()


def test_aggregate_sees_only_the_past():
    values = np.array([3, 1, 4, 1, 5, 0])
    everything = select(values, values, lambda k, q: k >= 0)
    assert aggregate(everything, values, "max").tolist() == [3, 3, 4, 4, 5, 5]
    assert aggregate(everything, values, "min").tolist() == [3, 1, 1, 1, 1, 0]
    assert aggregate(everything, indices(values), "mean").tolist() == [0, 0.5, 1, 1.5, 2, 2.5]
    nothing = select(values, values, lambda k, q: k == 9)
    assert aggregate(nothing, values, "max", default=-1).tolist() == [-1] * 6
    with pytest.raises(ValueError, match="reduce"):
        aggregate(everything, values, "sum")


def test_batched_run_equals_row_by_row():
    pairs = SPLITS["test"][:5]
    seqs = encode_batch(pairs[:, 0], pairs[:, 1]).numpy()  # right-padded: pads follow each row's EoS
    batched = count_program(seqs)
    for row, seq in zip(batched, seqs):
        n = int((seq != PAD).sum())
        assert (row[:n] == count_program(seq[:n])).all()


def test_op_count_matches_the_docstring():
    ops = count_ops()
    assert dict(ops) == {"select": 4, "aggregate": 4, "numerical_map": 2, "seq_map": 4}
    assert f"{sum(ops.values())} primitive operations" in count_program.__doc__
    assert sum(count_ops(direction="up").values()) == 13  # no comparison of start with end


def test_cli_shows_predictions(capsys):
    assert main(["SoS 12 8 >"]) == 0
    assert "12" in capsys.readouterr().out.splitlines()[4]
    assert main(["SoS 3 x >"]) == 2
