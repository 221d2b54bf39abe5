"""Configs: dataclasses that validate themselves, named presets, YAML in and out, key=value overrides."""

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from model import NUMBER_ENCODINGS, NUMBER_HEADS, POS_ENCODINGS, ModelConfig

# The vocabulary layout the tokenizer (data_generation.py) and the model share: specials, then numbers.
SPECIALS = ("PAD", "SoS", ">", "EoS")
PAD, SOS, SEP, EOS = range(4)
NUMBER_OFFSET = len(SPECIALS)  # token id of the number 0


class ConfigError(ValueError):
    """A config value or file is wrong; the message names the key and the fix."""


@dataclass
class DataConfig:
    """What the splits hold and how training batches are drawn."""

    max_number: int = 199  # numbers are 0..max_number, one token each
    train_min_len: int = 6  # shortest training sequence (SoS a b > a EoS has 6 tokens)
    train_max_len: int = 60  # longest training sequence
    test_min_len: int = 70  # the length-generalization range
    test_max_len: int = 150
    n_train: int = 5000  # size of the fixed train split
    n_val: int = 500  # in-distribution validation, disjoint from train
    n_test_per_length: int = 10
    n_ood_val_per_length: int = 20  # long-length split for checkpoint selection, disjoint from test
    direction: str = "both"  # both: count up (a < b) and down (a > b), the seed task; up: a <= b only, the paper's
    sampling: str = "online"  # online: fresh pairs every step; fixed: reshuffle the train split
    prefix_fraction: float = 0.0  # NOT the strict task: share of batches that are cut prefixes of long counts
    pack_len: int = 0  # 0: one example per training row; N: rows of N tokens holding whole examples back to back
    seed: int = 1234  # seed of the split files (the training seed is separate)
    data_dir: str = "data"

    def check(self) -> None:
        _positive(self, "max_number", "n_train", "n_val", "n_test_per_length", "n_ood_val_per_length")
        if not 6 <= self.train_min_len <= self.train_max_len:
            raise ConfigError("data.train_min_len must be >= 6 and <= data.train_max_len")
        if not self.test_min_len <= self.test_max_len:
            raise ConfigError("data.test_min_len must be <= data.test_max_len")
        if self.test_max_len - 6 > self.max_number:
            raise ConfigError(
                f"data.test_max_len={self.test_max_len} needs numbers up to {self.test_max_len - 6}, "
                f"beyond max_number={self.max_number}; raise data.max_number or lower data.test_max_len"
            )
        if not 0 <= self.prefix_fraction < 1:
            raise ConfigError("data.prefix_fraction must be in [0, 1)")
        if self.pack_len and (self.pack_len < self.train_max_len or self.prefix_fraction or self.sampling != "online"):
            raise ConfigError(
                "data.pack_len packs fresh examples (data.sampling=online, no prefix_fraction) into rows of at least "
                f"data.train_max_len={self.train_max_len} tokens; got pack_len={self.pack_len}"
            )
        if self.direction not in ("both", "up"):
            raise ConfigError(f"data.direction must be 'both' or 'up', got {self.direction!r}")
        if self.sampling not in ("fixed", "online"):
            raise ConfigError(f"data.sampling must be 'fixed' or 'online', got {self.sampling!r}")


@dataclass
class TrainConfig:
    """Optimisation, evaluation cadence and logging."""

    seed: int = 0  # training seed: init, data order, dropout
    batch_size: int = 64
    max_steps: int = 3000
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # 0 disables clipping
    eval_every: int = 500  # steps between generation evaluations
    eval_batch_size: int = 128  # sequences per scoring batch; small batches score faster on CPU
    n_examples: int = 6  # generation examples printed per evaluation, mistakes first
    precision: str = "32-true"  # Lightning precision, e.g. bf16-mixed
    accelerator: str = "auto"
    devices: str = "1"
    strategy: str = "auto"  # Lightning strategy, e.g. ddp for several processes
    num_nodes: int = 1
    logger: str = "tensorboard"  # tensorboard | wandb | both | none
    log_every: int = 25
    output_dir: str = "outputs/run"

    def check(self) -> None:
        _positive(self, "batch_size", "max_steps", "lr", "eval_every", "eval_batch_size", "log_every")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("train.warmup_steps, train.weight_decay and train.grad_clip must be >= 0")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("train.min_lr_ratio must be in [0, 1]")
        if self.logger not in ("tensorboard", "wandb", "both", "none"):
            raise ConfigError(f"train.logger must be tensorboard, wandb, both or none, got {self.logger!r}")


@dataclass
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Validate every section, and fill the model's token ids from the data's vocabulary."""
        self.data.check()
        self.train.check()
        m = self.model
        _positive(m, "n_layer", "n_head", "d_model", "d_ff", "max_positions")
        if m.d_model % m.n_head:
            raise ConfigError(f"model.d_model={m.d_model} must be divisible by model.n_head={m.n_head}")
        if not 0 <= m.local_heads <= m.n_head or m.local_window < 1:
            raise ConfigError("model.local_heads must be in [0, n_head] and model.local_window >= 1")
        if m.value_bias_scaled and not (m.value_bias and m.scalable_softmax):
            raise ConfigError("model.value_bias_scaled needs model.value_bias=true and model.scalable_softmax=true")
        if m.value_bias and m.local_heads == m.n_head:
            raise ConfigError("model.value_bias needs a global head to bias; set model.local_heads below model.n_head")
        if not 0 <= m.dropout < 1:
            raise ConfigError("model.dropout must be in [0, 1)")
        if m.pos_encoding not in POS_ENCODINGS:
            raise ConfigError(f"model.pos_encoding must be one of {', '.join(POS_ENCODINGS)}, got {m.pos_encoding!r}")
        if m.number_encoding not in NUMBER_ENCODINGS:
            raise ConfigError(f"model.number_encoding must be one of {', '.join(NUMBER_ENCODINGS)}")
        if m.number_head not in NUMBER_HEADS:
            raise ConfigError(f"model.number_head must be one of {', '.join(NUMBER_HEADS)}, got {m.number_head!r}")
        if m.order_stretch < 1:
            raise ConfigError(f"model.order_stretch must be >= 1 (1 turns it off), got {m.order_stretch}")
        longest = max(self.data.test_max_len, self.data.pack_len)
        if m.pos_encoding in ("learned", "sinusoidal") and m.max_positions < longest:
            raise ConfigError(
                f"model.max_positions={m.max_positions} is shorter than the longest sequence ({longest} tokens: "
                "data.test_max_len or data.pack_len); raise model.max_positions"
            )
        m.pad_id, m.eos_id, m.number_offset = PAD, EOS, NUMBER_OFFSET
        m.max_number = self.data.max_number
        m.vocab_size = NUMBER_OFFSET + self.data.max_number + 1

    def to_dict(self) -> dict:
        return asdict(self)


def _positive(obj, *names: str) -> None:
    section = {DataConfig: "data", TrainConfig: "train"}.get(type(obj), "model")
    for name in names:
        if getattr(obj, name) <= 0:
            raise ConfigError(f"{section}.{name} must be > 0, got {getattr(obj, name)}")


# Every preset is a flat set of differences from the defaults above: the standard decoder-only transformer
# (3 layers of 4 heads, width 96, no positional encoding, free number embeddings) counting both ways, trained
# 3000 steps on fresh pairs of lengths 6-60. The recipe adds its parts to it.
RECIPE = {
    "model.local_heads": 2,  # 2 rotary heads that see only the last 8 tokens: length-independent local steps
    "model.scalable_softmax": True,  # the other 2 are position-free, queries scaled by s*log(n)
    "model.value_bias": True,  # global heads add s * (v_key - v_query) between numbers: order at any gap
    "model.value_bias_scaled": True,  # ... scaled like the queries, so it keeps its weight on long counts
    "model.number_encoding": "order+code",  # numbers from fixed features: an order channel apart from identity
    "model.order_stretch": 3.0,  # while training, each sequence's order channel times U[1, 3]
    "train.max_steps": 1000,
}
SEED_SIZES = {"model.n_layer": 6, "model.n_head": 8, "model.d_model": 512, "model.d_ff": 2048}  # the seed system's
SEED_TRAIN = {"train.batch_size": 32, "train.lr": 3e-4, "train.eval_batch_size": 512}  # its batch and lr, for a GPU
PRESETS: dict[str, dict] = {
    # The main command: the standard transformer plus the value bias, counting both ways; minutes on 2 CPU cores.
    "counting_small": {"model.value_bias": True, "train.output_dir": "outputs/counting_small"},
    # The paper's setting: the standard transformer counting up only.
    "paper_count": {"data.direction": "up", "data.data_dir": "data/up", "train.output_dir": "outputs/paper_count"},
    # counting_small's model with numbers 0..5999 (counts to 6,000 tokens). Numbers' output rows are projected
    # from shared features: a free row per number is trained too rarely in a run to fit even 6-60.
    "counting_wide": {
        "model.value_bias": True,
        "data.max_number": 5999,
        "data.data_dir": "data/n6000",
        "model.number_head": "features",
        "train.output_dir": "outputs/counting_wide",
    },
    # The recipe at the seed system's sizes, for a GPU: 6 layers of 8 heads (4 local), width 512, batch 32
    # (the whole recipe, as measured at these sizes).
    "counting_config": {
        **RECIPE,
        **SEED_SIZES,
        "model.local_heads": 4,
        **SEED_TRAIN,
        "train.warmup_steps": 200,
        "train.max_steps": 3000,
        "train.output_dir": "outputs/counting",
    },
    # The seed system's own model at its sizes: sinusoidal positions, dropout 0.1, its fixed 5000-pair split.
    "seed_system": {
        **SEED_SIZES,
        "model.dropout": 0.1,
        "model.pos_encoding": "sinusoidal",
        "data.sampling": "fixed",
        **SEED_TRAIN,
        "train.max_steps": 10000,
        "train.output_dir": "outputs/seed_system",
    },
    # Seconds-long: for tests and --fast_dev_run checks.
    "counting_tiny": {
        "data.n_train": 1000,
        "data.n_val": 100,
        "data.n_test_per_length": 2,
        "data.n_ood_val_per_length": 1,
        "data.sampling": "fixed",
        "data.data_dir": "data/tiny",
        "model.n_layer": 2,
        "model.n_head": 2,
        "model.d_model": 32,
        "model.d_ff": 64,
        "train.batch_size": 32,
        "train.max_steps": 200,
        "train.eval_every": 100,
        "train.warmup_steps": 20,
        "train.output_dir": "outputs/tiny",
    },
}

# The counting task scaled down (numbers 0..39, training lengths 6..20, long lengths 22..30), for the
# tests and the debug scripts' minute-long checks on counting_tiny.
SMALL_TASK = {
    "data.max_number": 39,
    "data.train_max_len": 20,
    "data.test_min_len": 22,
    "data.test_max_len": 30,
    "data.n_train": 500,  # with n_val, at most 38 per length: length 6 has only 40 distinct sequences
    "data.n_val": 50,
    "data.n_test_per_length": 3,
    "data.n_ood_val_per_length": 2,
}


def _coerce(value, current, key: str):
    """Parse a YAML/CLI value into the type of the field's current value."""
    kind = type(current)
    if isinstance(value, str) and kind is not str:
        try:  # YAML reads "2e-3" as a string; Python's float() does not
            value = kind(value) if kind in (int, float) else yaml.safe_load(value)
        except ValueError:
            raise ConfigError(f"{key} must be {kind.__name__}, got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if type(value) is not kind:
        raise ConfigError(f"{key} must be {kind.__name__}, got {value!r}")
    return value


def _section_of(cfg: ExperimentConfig, key: str) -> tuple[object, str, str]:
    """Resolve 'section.name' or a bare unique 'name' to (section object, field name, full key)."""
    sections = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    if "." in key:
        sec, name = key.split(".", 1)
        if sec in sections and name in {f.name for f in fields(sections[sec])}:
            return sections[sec], name, key
    else:
        hits = [s for s, obj in sections.items() if key in {f.name for f in fields(obj)}]
        if len(hits) == 1:
            return sections[hits[0]], key, f"{hits[0]}.{key}"
        if len(hits) > 1:
            raise ConfigError(f"key {key!r} is ambiguous; write one of {', '.join(f'{h}.{key}' for h in hits)}")
    raise ConfigError(f"unknown config key {key!r}; see the keys in {Path(__file__).name}")


def apply_overrides(cfg: ExperimentConfig, overrides: dict) -> ExperimentConfig:
    """Set each key (dotted or bare) to its value, type-checked, then re-validate."""
    for key, value in overrides.items():
        obj, name, full = _section_of(cfg, key)
        setattr(obj, name, _coerce(value, getattr(obj, name), full))
    cfg.check()
    return cfg


def changed_keys(cfg: ExperimentConfig, overrides: dict) -> dict[str, tuple]:
    """{full key: (current value, new value)} for each override that would change cfg (cfg is not touched)."""
    changed = {}
    for key, value in overrides.items():
        obj, name, full = _section_of(cfg, key)
        new = _coerce(value, getattr(obj, name), full)
        if new != getattr(obj, name):
            changed[full] = (getattr(obj, name), new)
    return changed


def from_dict(raw: dict) -> ExperimentConfig:
    """A config from nested {section: {key: value}}, starting from the defaults."""
    if not isinstance(raw, dict):
        raise ConfigError("a config file must be a mapping of sections (data, model, train)")
    cfg = ExperimentConfig()
    flat = {}
    for sec, values in raw.items():
        if sec not in ("data", "model", "train"):
            raise ConfigError(f"unknown config section {sec!r}; expected data, model or train")
        if not isinstance(values, dict):
            raise ConfigError(f"config section {sec!r} must be a mapping")
        flat.update({f"{sec}.{k}": v for k, v in values.items()})
    return apply_overrides(cfg, flat)


def load_config(name_or_path: str, overrides: dict | None = None) -> ExperimentConfig:
    """A preset by name, or a YAML file (a full or partial config), then overrides."""
    if name_or_path in PRESETS:
        cfg = apply_overrides(ExperimentConfig(), PRESETS[name_or_path])
    elif name_or_path.endswith((".yaml", ".yml")) or Path(name_or_path).exists():
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found; pass a preset ({', '.join(PRESETS)}) or a YAML path")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            line = f" at line {where.line + 1}" if where else ""
            raise ConfigError(f"{path} is not valid YAML{line}; fix the syntax") from None
        cfg = from_dict(raw)
    else:
        raise ConfigError(f"unknown config {name_or_path!r}; use a preset ({', '.join(PRESETS)}) or a .yaml path")
    return apply_overrides(cfg, overrides or {})


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def parse_overrides(items: list[str]) -> dict:
    """['train.lr=3e-4', 'n_layer=2'] -> {'train.lr': '3e-4', 'n_layer': '2'}."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value, e.g. train.lr=3e-4")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out
