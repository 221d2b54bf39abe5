"""The counting task: token format, deterministic splits on disk, and training batch streams.

A sequence is `SoS a b > a a±1 ... b EoS`; its length is every token, SoS and EoS included
(|b-a| + 6). This module is the single home of that format.

    python data_generation.py [--config PRESET_OR_YAML] [--seed N] [--data_dir DIR]
"""

import argparse
import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from config import EOS, NUMBER_OFFSET, PAD, SEP, SOS, SPECIALS, ConfigError, DataConfig, load_config

PROMPT_LEN = 4  # SoS a b >
SPLITS = ("train", "val", "ood_val", "test")
PAIR_CAP = 400  # a reported length with more pairs than this (wide number ranges) is sampled down to it
FORMAT_VERSION = 1


class DataError(Exception):
    """Data on disk is missing, stale or damaged; the message says how to fix it."""


class CountingTokenizer:
    """Maps the text format to ids: specials first, then one token per integer 0..max_number."""

    def __init__(self, max_number: int):
        self.max_number = max_number
        self.vocab_size = NUMBER_OFFSET + max_number + 1

    def encode(self, text: str) -> list[int]:
        ids = []
        for word in text.split():
            if word in SPECIALS:
                ids.append(SPECIALS.index(word))
            elif word.isdigit() and int(word) <= self.max_number:
                ids.append(NUMBER_OFFSET + int(word))
            else:
                raise ValueError(f"unknown token {word!r} (numbers must be 0..{self.max_number})")
        return ids

    def decode(self, ids) -> str:
        words = []
        for i in ids:
            i = int(i)
            words.append(SPECIALS[i] if i < NUMBER_OFFSET else str(i - NUMBER_OFFSET))
        return " ".join(words)

    def parse_prompt(self, text: str) -> tuple[int, int]:
        """(a, b) from a prompt line `SoS a b >`; raises ValueError naming what is wrong."""
        words = text.split()
        if len(words) != 4 or words[0] != "SoS" or words[3] != ">":
            raise ValueError(f"expected 'SoS a b >', got {text.strip()!r}")
        a, b = (self.encode(w)[0] - NUMBER_OFFSET for w in words[1:3])
        if min(a, b) < 0:
            raise ValueError(f"expected numbers after SoS, got {text.strip()!r}")
        return a, b


def seq_length(a, b):
    """Total tokens of the sequence counting from a to b (works on arrays too)."""
    return np.abs(np.asarray(b) - np.asarray(a)) + 6


def encode_batch(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """Right-padded token ids (B, max length) for the pairs (a, b), built without Python loops."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    lengths = seq_length(a, b)
    T = int(lengths.max())
    k = np.arange(T)[None, :] - PROMPT_LEN  # answer index of each column
    step = np.sign(b - a)[:, None]
    d = np.abs(b - a)[:, None]
    ids = np.where((k >= 0) & (k <= d), NUMBER_OFFSET + a[:, None] + step * k, PAD)
    ids = np.where(k == d + 1, EOS, ids)
    ids[:, 0], ids[:, 1], ids[:, 2], ids[:, 3] = SOS, NUMBER_OFFSET + a, NUMBER_OFFSET + b, SEP
    return torch.from_numpy(ids)


def answer_mask(tokens: torch.Tensor) -> torch.Tensor:
    """(B, T-1) True where tokens[:, 1:] is an answer token (after '>', EoS included): what is predicted.

    A row may hold several examples back to back (data.pack_len): a token is an answer when it sits
    at least PROMPT_LEN places after the latest SoS; the prompts (SoS a b >) are given, not predicted.
    """
    place = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
    since_sos = place - torch.where(tokens == SOS, place, 0).cummax(dim=1).values  # (B, T)
    return (since_sos[:, 1:] >= PROMPT_LEN) & (tokens[:, 1:] != PAD)


def answer_loss(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy and token accuracy on answer tokens only (after '>', EoS included).

    logits (B, T-1, V) are the model's predictions for tokens[:, 1:]; prompt and pad targets are masked.
    """
    targets = tokens[:, 1:]
    mask = answer_mask(tokens)
    loss = torch.nn.functional.cross_entropy(logits[mask].float(), targets[mask])
    accuracy = (logits[mask].argmax(-1) == targets[mask]).float().mean()
    return loss, accuracy


def pairs_of_length(length: int, max_number: int, direction: str = "both") -> np.ndarray:
    """Every distinct (a, b) whose sequence has this length, shape (n, 2), up counts first.

    direction "up" keeps a <= b only (the paper's task); "both" adds the down counts.
    """
    d = length - 6
    starts = np.arange(max_number + 1 - d)
    up = np.stack([starts, starts + d], axis=1)
    if d == 0 or direction == "up":
        return up
    return np.concatenate([up, up[:, ::-1]])


def pairs_for_range(
    min_len: int,
    max_len: int,
    max_number: int,
    per_length: int | None = None,
    seed: int = 0,
    direction: str = "both",
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Every pair (of `direction`) at each length in [min_len, max_len] that is not in `exclude`;
    with per_length, a length with more is sampled down to that many (different for each seed)."""
    if not 6 <= min_len <= max_len:
        raise ValueError(f"lengths must satisfy 6 <= --min_len <= --max_len, got {min_len}..{max_len}")
    if max_len - 6 > max_number:
        raise ValueError(f"length {max_len} needs numbers up to {max_len - 6}, beyond max_number={max_number}")
    rng = np.random.default_rng(seed)
    excluded = np.zeros(0, dtype=np.int64) if exclude is None else exclude[:, 0] * (max_number + 1) + exclude[:, 1]
    chunks = []
    for n in range(min_len, max_len + 1):
        pool = pairs_of_length(n, max_number, direction)
        pool = pool[~np.isin(pool[:, 0] * (max_number + 1) + pool[:, 1], excluded)]
        if per_length is not None and len(pool) > per_length:
            pool = pool[np.sort(rng.choice(len(pool), per_length, replace=False))]
        chunks.append(pool)
    return np.concatenate(chunks)


def pair_count(min_len: int, max_len: int, max_number: int, direction: str) -> int:
    """How many pairs the lengths [min_len, max_len] hold in all."""
    return sum(len(pairs_of_length(n, max_number, direction)) for n in range(min_len, max_len + 1))


def set_ranges(data: DataConfig) -> dict[str, tuple[int, int]]:
    """The length ranges a finished run is reported on: training, between training and test, test, and up to
    50 tokens beyond (while the numbers reach); {name: (shortest, longest)}, empty ranges left out."""
    ranges = {
        "in_distribution": (data.train_min_len, data.train_max_len),
        "between": (data.train_max_len + 1, data.test_min_len - 1),  # empty when training reaches the test range
        "test": (data.test_min_len, data.test_max_len),
        "far": (data.test_max_len + 1, min(data.test_max_len + 50, data.max_number + 6)),
    }
    return {name: (lo, hi) for name, (lo, hi) in ranges.items() if lo <= hi}


def report_sets(data: DataConfig, ood_val: np.ndarray, seed: int = 0) -> dict[str, tuple[np.ndarray, str]]:
    """Every pair of each set_ranges range that selection never saw (lengths with more than PAIR_CAP pairs
    sampled down, differently for each seed): {name: (pairs, label)}."""
    return {
        name: (pairs_for_range(lo, hi, data.max_number, PAIR_CAP, seed, data.direction, ood_val), f"{lo}-{hi}")
        for name, (lo, hi) in set_ranges(data).items()
    }


def pairs_in_range(pairs: np.ndarray, lo: int, hi: int) -> int:
    """How many of these pairs have a length in [lo, hi]."""
    lengths = seq_length(pairs[:, 0], pairs[:, 1])
    return int(((lengths >= lo) & (lengths <= hi)).sum())


def _spread(total: int, n_bins: int, rng: np.random.Generator) -> np.ndarray:
    """Split total into n_bins near-equal counts, the remainder on randomly chosen bins."""
    counts = np.full(n_bins, total // n_bins)
    counts[rng.choice(n_bins, total % n_bins, replace=False)] += 1
    return counts


def _draw_disjoint(cfg: DataConfig, lengths: range, counts: dict[str, np.ndarray], rng) -> dict:
    """For each length, draw disjoint pair sets for each split named in counts."""
    out = {name: [] for name in counts}
    for i, length in enumerate(lengths):
        pool = pairs_of_length(length, cfg.max_number, cfg.direction)
        need = sum(int(c[i]) for c in counts.values())
        if need > len(pool):
            raise ConfigError(
                f"length {length} has only {len(pool)} distinct sequences with max_number={cfg.max_number}, "
                f"but the splits ask for {need}; lower the sample counts or raise max_number"
            )
        pool = pool[rng.permutation(len(pool))]
        taken = 0
        for name, c in counts.items():
            out[name].append(pool[taken : taken + int(c[i])])
            taken += int(c[i])
    return {name: np.concatenate(parts) for name, parts in out.items()}


def make_splits(cfg: DataConfig) -> dict[str, np.ndarray]:
    """The four splits as (n, 2) arrays of (a, b), a pure function of cfg (its seed included)."""
    rng = np.random.default_rng(cfg.seed)
    short = range(cfg.train_min_len, cfg.train_max_len + 1)
    long = range(cfg.test_min_len, cfg.test_max_len + 1)
    counts_short = {"train": _spread(cfg.n_train, len(short), rng), "val": _spread(cfg.n_val, len(short), rng)}
    counts_long = {
        "test": np.full(len(long), cfg.n_test_per_length),
        "ood_val": np.full(len(long), cfg.n_ood_val_per_length),
    }
    splits = {**_draw_disjoint(cfg, short, counts_short, rng), **_draw_disjoint(cfg, long, counts_long, rng)}
    for name in SPLITS:  # shuffle so a file read in order is not sorted by length
        splits[name] = splits[name][rng.permutation(len(splits[name]))]
    return splits


def target_answer(a: int, b: int) -> list[int]:
    """The ids that must follow '>': a .. b then EoS."""
    step = 1 if b >= a else -1
    return [NUMBER_OFFSET + v for v in range(a, b + step, step)] + [EOS]


def split_text(pairs: np.ndarray) -> str:
    """The human-readable file body: one full sequence per line, written by the tokenizer."""
    tokenizer = CountingTokenizer(int(pairs.max()) if len(pairs) else 0)
    return "".join(
        tokenizer.decode([SOS, NUMBER_OFFSET + a, NUMBER_OFFSET + b, SEP, *target_answer(a, b)]) + "\n"
        for a, b in pairs.tolist()
    )


def write_splits(cfg: DataConfig) -> dict:
    """Write <split>.txt files and metadata.json (parameters, counts, sha256). Returns metadata."""
    data_dir = Path(cfg.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    meta = {"format_version": FORMAT_VERSION, "params": _data_params(cfg), "splits": {}}
    for name, pairs in make_splits(cfg).items():
        body = split_text(pairs).encode()
        (data_dir / f"{name}.txt").write_bytes(body)
        meta["splits"][name] = {"count": len(pairs), "sha256": hashlib.sha256(body).hexdigest()}
    (data_dir / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def _data_params(cfg: DataConfig) -> dict:
    """The parameters that determine the split files (not where they live or how training samples)."""
    params = asdict(cfg)
    for key in ("data_dir", "sampling", "prefix_fraction", "pack_len"):
        params.pop(key)
    if params["direction"] == "both":  # the default, left out so folders written before it existed stay valid
        params.pop("direction")
    return params


def load_splits(cfg: DataConfig) -> dict[str, np.ndarray]:
    """Read and verify the split files against cfg; DataError says what to run if stale."""
    data_dir = Path(cfg.data_dir)
    fix = f"run: python data_generation.py --data_dir {data_dir} (with the same --config and data seed)"
    meta_path = data_dir / "metadata.json"
    if not meta_path.is_file():
        raise DataError(f"no data in {data_dir}/ (metadata.json missing); {fix}")
    try:
        meta = json.loads(meta_path.read_text())
        recorded = {name: meta["splits"][name]["sha256"] for name in SPLITS}
    except (json.JSONDecodeError, KeyError, TypeError):
        raise DataError(f"{meta_path} is not valid metadata JSON; {fix}") from None
    if meta.get("params") != _data_params(cfg) or meta.get("format_version") != FORMAT_VERSION:
        raise DataError(f"data in {data_dir}/ was generated with other parameters than this config; {fix}")
    splits = {}
    for name in SPLITS:
        path = data_dir / f"{name}.txt"
        if not path.is_file():
            raise DataError(f"{path} is missing; {fix}")
        body = path.read_bytes()
        if hashlib.sha256(body).hexdigest() != recorded[name]:
            raise DataError(f"{path} does not match its checksum (truncated or edited); {fix}")
        lines = body.decode().splitlines()
        if not lines:
            raise DataError(f"{path} is empty; {fix}")
        splits[name] = np.array([[int(w) for w in line.split()[1:3]] for line in lines], dtype=np.int64)
    return splits


def ensure_splits(cfg: DataConfig) -> dict[str, np.ndarray]:
    """Load the splits, generating them first if the data dir holds nothing yet."""
    if not (Path(cfg.data_dir) / "metadata.json").exists():
        print(f"No data in {cfg.data_dir}/, generating it (data seed {cfg.seed}) ...")
        write_splits(cfg)
    return load_splits(cfg)


class TrainStream(torch.utils.data.IterableDataset):
    """Training batches for steps start_step, start_step+1, ...; batch s is a function of (seed, s).

    With several processes (DDP), process `rank` of `world_size` takes batch s*world_size + rank.
    Batches are length-bucketed (lengths within `bucket_width` of each other) so little compute is
    spent on padding. 'fixed' reshuffles the train split every epoch; 'online' samples fresh pairs
    of the training lengths (both directions, or up only with cfg.direction="up"), never one from
    `exclude` (the val split).

    With cfg.prefix_fraction > 0 (a labelled option, not the strict task), that share of batches are
    the first <= train_max_len tokens of counts too long to train on whole (|b-a| > train_max_len-6),
    never of a pair in `exclude_long` (the long splits): prompts then show a and b far apart.
    """

    def __init__(
        self, cfg: DataConfig, batch_size: int, seed: int, train_pairs=None, exclude=None, exclude_long=None,
        bucket_width=5,
    ):  # fmt: skip
        super().__init__()
        self.cfg, self.batch_size, self.seed = cfg, batch_size, seed
        self.start_step, self.rank, self.world_size = 0, 0, 1
        self._epoch_plan: tuple[int, list, np.ndarray] | None = None
        self.lengths = np.arange(cfg.train_min_len, cfg.train_max_len + 1)
        self.bucket_of_length = (self.lengths - cfg.train_min_len) // bucket_width
        self.train_pairs = train_pairs
        n = cfg.max_number + 1
        self.excluded = np.zeros((n, n), dtype=bool)
        for pairs in (exclude, exclude_long):
            if pairs is not None:
                self.excluded[pairs[:, 0], pairs[:, 1]] = True
        if cfg.sampling == "fixed":
            assert train_pairs is not None, "fixed sampling needs the train split"
            buckets = (seq_length(train_pairs[:, 0], train_pairs[:, 1]) - cfg.train_min_len) // bucket_width
            self.members = [np.flatnonzero(buckets == k) for k in np.unique(buckets)]
            self.batches_per_epoch = sum(-(-len(m) // batch_size) for m in self.members)

    @classmethod
    def for_training(cls, cfg: DataConfig, batch_size: int, seed: int, splits: dict[str, np.ndarray]) -> "TrainStream":
        """The stream every trainer uses: the train split, never a val pair, prefixes never of ood_val/test."""
        long_splits = np.concatenate([splits["ood_val"], splits["test"]])
        return cls(cfg, batch_size, seed, splits["train"], splits["val"], long_splits)

    def batch_pairs(self, step: int) -> np.ndarray:
        """The (a, b) pairs of training step `step`, shape (batch_size or fewer, 2)."""
        if self.cfg.sampling == "fixed":
            return self._fixed_batch(step)
        return self._online_batch(step)

    def _fixed_batch(self, step: int) -> np.ndarray:
        epoch, index = divmod(step, self.batches_per_epoch)
        if self._epoch_plan is None or self._epoch_plan[0] != epoch:  # reshuffle once per epoch
            rng = np.random.default_rng([self.seed, epoch])
            batches = []
            for members in self.members:
                shuffled = members[rng.permutation(len(members))]
                batches += [shuffled[i : i + self.batch_size] for i in range(0, len(shuffled), self.batch_size)]
            self._epoch_plan = (epoch, batches, rng.permutation(len(batches)))
        _, batches, order = self._epoch_plan
        return self.train_pairs[batches[order[index]]]

    def batch_tokens(self, index: int) -> torch.Tensor:
        """Token ids of batch `index`: whole sequences, rows of packed sequences, or (prefix option) cut long counts."""
        if self.cfg.pack_len:
            return self._packed_rows(index)
        rng = np.random.default_rng([self.seed, index, 1])
        if rng.random() >= self.cfg.prefix_fraction:
            pairs = self.batch_pairs(index)
            return encode_batch(pairs[:, 0], pairs[:, 1])
        cut = int(rng.integers(self.cfg.train_min_len, self.cfg.train_max_len + 1))
        d = rng.integers(self.cfg.train_max_len - 5, self.cfg.max_number + 1, self.batch_size)
        pairs = self._draw_pairs(rng, d)
        return encode_batch(pairs[:, 0], pairs[:, 1])[:, :cut]

    def _online_batch(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step])
        bucket = self.bucket_of_length[rng.integers(len(self.lengths))]  # uniform over lengths overall
        lengths = rng.choice(self.lengths[self.bucket_of_length == bucket], self.batch_size)
        return self._draw_pairs(rng, lengths - 6)

    def _packed_rows(self, step: int) -> torch.Tensor:
        """batch_size rows of pack_len tokens: whole examples of uniform training lengths back to back, then pad."""
        rng = np.random.default_rng([self.seed, step])
        per_row = self.cfg.pack_len // self.cfg.train_min_len  # more examples than a row can hold
        lengths = rng.integers(self.cfg.train_min_len, self.cfg.train_max_len + 1, (self.batch_size, per_row))
        pairs = self._draw_pairs(rng, lengths.ravel() - 6)
        examples = encode_batch(pairs[:, 0], pairs[:, 1]).view(self.batch_size, per_row, -1)
        fits = torch.from_numpy(np.cumsum(lengths, axis=1) <= self.cfg.pack_len)
        rows = torch.full((self.batch_size, self.cfg.pack_len), PAD)
        for i in range(self.batch_size):
            tokens = examples[i][fits[i]]
            tokens = tokens[tokens != PAD]  # the row's examples, one after the other
            rows[i, : len(tokens)] = tokens
        return rows

    def _draw_pairs(self, rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
        """Uniform pairs with |b-a| = d (either direction, or up only), none of them excluded."""
        a = rng.integers(0, self.cfg.max_number + 1 - d)
        down = (rng.random(len(d)) < 0.5) & (self.cfg.direction == "both")  # drawn either way: same stream
        pairs = np.stack([np.where(down, a + d, a), np.where(down, a, a + d)], axis=1)
        for _ in range(100):  # resample the few pairs that belong to an excluded split
            bad = self.excluded[pairs[:, 0], pairs[:, 1]]
            if not bad.any():
                break
            a_new = rng.integers(0, self.cfg.max_number + 1 - d[bad])
            pairs[bad] = np.stack(
                [np.where(down[bad], a_new + d[bad], a_new), np.where(down[bad], a_new, a_new + d[bad])], 1
            )
        return pairs

    def __iter__(self):
        step = self.start_step
        while True:
            yield self.batch_tokens(step * self.world_size + self.rank)
            step += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the deterministic train/val/ood_val/test splits.")
    parser.add_argument("--config", default="counting_small", help="preset name or YAML path (default: counting_small)")
    parser.add_argument("--seed", type=int, default=None, help="data seed (default: the config's data.seed)")
    parser.add_argument("--data_dir", default=None, help="output folder (default: the config's data.data_dir)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
        if args.data_dir:
            cfg.data.data_dir = args.data_dir
        if args.seed is not None:
            cfg.data.seed = args.seed
        cfg.data.check()
        meta = write_splits(cfg.data)
    except (ConfigError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{k} {v['count']}" for k, v in meta["splits"].items())
    print(f"Wrote {cfg.data.data_dir}/ (data seed {cfg.data.seed}): {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
