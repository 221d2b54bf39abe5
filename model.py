"""A small decoder-only transformer for the counting task, with KV-cached greedy generation.

Reads like nanoGPT: a dataclass config, attention / MLP / block modules, and one model class.
The model knows nothing about the task beyond the ids it is given in its config.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

POS_ENCODINGS = ("learned", "sinusoidal", "rope", "none")
NUMBER_ENCODINGS = ("learned", "order+code")
NUMBER_HEADS = ("free", "features")


@dataclass
class ModelConfig:
    """Architecture; everything needed to rebuild the model from a checkpoint. The defaults are the standard
    decoder-only transformer of the study: one positional encoding for every head, free number embeddings."""

    vocab_size: int = 204  # number tokens plus specials; set from the tokenizer
    pad_id: int = 0
    eos_id: int = 3
    number_offset: int = 4  # token id of the number 0; numbers are contiguous after it
    max_number: int = 199
    n_layer: int = 3
    n_head: int = 4
    d_model: int = 96
    d_ff: int = 384
    dropout: float = 0.0
    pos_encoding: str = "none"  # learned | sinusoidal | rope | none
    max_positions: int = 256  # size of the learned/sinusoidal position table
    random_pos_offset: bool = False  # learned only: shift positions randomly while training
    number_encoding: str = "learned"  # learned | order+code (see NumberEmbedding)
    order_stretch: float = 1.0  # order+code, training only: each sequence's order channel times U[1, this]
    number_head: str = "free"  # free: an output row per token | features: numbers' rows are projected code+waves
    scalable_softmax: bool = False  # scale queries by s*log(n) (Nakanishi 2025)
    local_heads: int = 0  # this many heads use RoPE inside a sliding window; the rest use pos_encoding
    local_window: int = 8  # keys a local head sees: itself and the window-1 before it
    value_bias: bool = False  # global heads add s_h * (v_key - v_query) between numbers; s_h learned, init +-1
    value_bias_scaled: bool = False  # with scalable_softmax, the value bias is scaled like the queries (s*log n)


def sinusoid_table(n_rows: int, dim: int, max_wavelength: float = 10000.0) -> torch.Tensor:
    """The classic fixed sin/cos table, shape (n_rows, dim)."""
    position = torch.arange(n_rows, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(max_wavelength) / dim))
    table = torch.zeros(n_rows, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)
    return table


def order_code_features(max_number: int, order_scale: float = 8.0) -> torch.Tensor:
    """Fixed features that split a number's order from its identity, shape (max_number+1, 97).

    order: one linear channel in [-order_scale, order_scale], so 'a < b' is the sign of a
    difference and holds at any gap. code: a fixed random 32-dim vector per number (seed 0, norm
    about 1) for identity. waves: sin/cos of v at 32 random frequencies (seed 1), so v -> v±1 is a
    fixed rotation and the pattern never repeats at any gap.
    """
    v = torch.arange(max_number + 1, dtype=torch.float32)[:, None]
    order = order_scale * (2 * v / max_number - 1)
    code = torch.randn(max_number + 1, 32, generator=torch.Generator().manual_seed(0)) / math.sqrt(32)
    angles = v * torch.empty(32).uniform_(0.3, math.pi, generator=torch.Generator().manual_seed(1))
    waves = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1) / math.sqrt(32)  # unit norm
    return torch.cat([order, code, waves], dim=1)


class NumberEmbedding(nn.Module):
    """Token embedding; with order+code, number tokens are a learned projection of fixed features.

    learned: a free vector per token. order+code: order_code_features. Special tokens (SoS, '>',
    EoS, pad) always keep free vectors.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.table = nn.Embedding(cfg.vocab_size, cfg.d_model)
        if cfg.number_encoding == "order+code":
            self.register_buffer("features", order_code_features(cfg.max_number), persistent=False)
            self.project = nn.Linear(self.features.shape[1], cfg.d_model, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        emb = self.table(idx)  # (B, T, C)
        if self.cfg.number_encoding == "learned":
            return emb
        value = idx - self.cfg.number_offset
        is_number = ((value >= 0) & (value <= self.cfg.max_number))[..., None]  # (B, T, 1)
        feats = self.features[value.clamp(0, self.cfg.max_number)]  # (B, T, F)
        if self.training and self.cfg.order_stretch > 1:
            stretch = 1 + (self.cfg.order_stretch - 1) * torch.rand(idx.shape[0], 1, 1, device=idx.device)
            feats = torch.cat([feats[..., :1] * stretch, feats[..., 1:]], dim=-1)
        feats = self.project(feats)  # (B, T, C)
        return torch.where(is_number, feats, emb)


def rope_tables(pos: torch.Tensor, hs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles at integer positions pos (T,), each (T, hs/2)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, hs, 2, device=pos.device, dtype=torch.float32) / hs))
    angles = pos.to(torch.float32)[:, None] * inv_freq[None, :]  # (T, hs/2)
    return angles.cos(), angles.sin()


def rope_rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x (B, nh, T, hs) with the tables of rope_tables."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.flatten(-2)


class KVCache:
    """Every layer's keys and values for the tokens seen so far, their numbers (for the value bias),
    and the feature head's number rows: what a cached decode or a blocked scoring pass carries along."""

    def __init__(self, n_layer: int):
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer
        self.numbers: torch.Tensor | None = None  # (B, S) the number of every cached token, NaN for specials
        self.number_rows: torch.Tensor | None = None  # (max_number+1, C) feature-head rows, projected once

    @property
    def length(self) -> int:
        return 0 if self.k[0] is None else self.k[0].shape[2]


@dataclass
class AttentionContext:
    """What every layer's attention shares in one forward pass, built once by AttentionContext.build."""

    rope: tuple[torch.Tensor, torch.Tensor] | None  # cos, sin (T, hs/2) for rotary heads
    log_keys: torch.Tensor | None  # (nh, T) log of how many keys each query sees (Scalable-Softmax)
    allowed: torch.Tensor | None  # (nh, T, S) causal, and within the window for local heads; None: plain causal
    blocked: torch.Tensor | None  # (nh, T, S) 0 where allowed, -inf elsewhere (value bias)
    gap: torch.Tensor | None  # (B, 1, T, S) v_key - v_query between two numbers, 0 otherwise (value bias)

    @staticmethod
    def build(cfg: "ModelConfig", numbers: torch.Tensor | None, n_past: int, T: int, device) -> "AttentionContext":
        """numbers (B, S): every key's number (NaN for specials) when the value bias is on."""
        nh, nl = cfg.n_head, cfg.local_heads
        pos = torch.arange(n_past, n_past + T, device=device)  # (T,)
        rope = rope_tables(pos, cfg.d_model // nh) if cfg.pos_encoding == "rope" or nl else None
        log_keys = None
        if cfg.scalable_softmax:  # the query at position t sees n = t+1 keys (at most a window if local)
            n_keys = torch.arange(n_past + 1, n_past + T + 1, device=device, dtype=torch.float32)
            log_keys = torch.log(torch.stack([n_keys.clamp(max=cfg.local_window)] * nl + [n_keys] * (nh - nl)))
        allowed = blocked = gap = None
        if nl or cfg.value_bias or (n_past and T > 1):
            k_pos = torch.arange(n_past + T, device=device)[None, :]
            causal = k_pos <= pos[:, None]  # (T, S)
            local = causal & (pos[:, None] - k_pos < cfg.local_window)
            allowed = torch.stack([local] * nl + [causal] * (nh - nl))
        if cfg.value_bias:
            blocked = torch.zeros(allowed.shape, device=device).masked_fill(~allowed, float("-inf"))
            gap = (numbers[:, None, :] - numbers[:, -T:, None]).nan_to_num(0.0)[:, None]  # 0 unless both numbers
        return AttentionContext(rope, log_keys, allowed, blocked, gap)


class CausalSelfAttention(nn.Module):
    """Causal multi-head attention. The first local_heads heads are rotary inside a sliding window;
    with value_bias the others add s_h * (v_key - v_query) to scores between two numbers, an order
    comparison of token values (like RASP-L's select on k > q) that holds for any pair.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        assert cfg.d_model % cfg.n_head == 0
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout
        if cfg.scalable_softmax:
            self.ssmax_scale = nn.Parameter(torch.ones(cfg.n_head))
        if cfg.value_bias:  # one slope per global head: +1 looks up the number line, -1 down
            self.value_slope = nn.Parameter(torch.tensor([(-1.0) ** h for h in range(cfg.n_head - cfg.local_heads)]))

    def forward(self, x: torch.Tensor, ctx: AttentionContext, cache: KVCache | None = None, layer: int = 0):
        B, T, C = x.shape
        q, k, v, mask = self._inputs(x, ctx, cache, layer)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            is_causal=mask is None and T > 1,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return F.dropout(self.proj(y), self.dropout, self.training)

    def weights(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        """The attention pattern (B, nh, T, S) forward computes, written out: for reading a trained model."""
        q, k, _, mask = self._inputs(x, ctx)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is None:
            mask = torch.ones(scores.shape[-2:], dtype=torch.bool, device=x.device).tril()
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        return torch.softmax(scores, dim=-1)

    def _inputs(self, x: torch.Tensor, ctx: AttentionContext, cache: KVCache | None = None, layer: int = 0):
        """Queries (rotated, scaled), keys and values over every token seen (B, nh, T or S, hs), and the mask."""
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.cfg.n_head, -1).transpose(1, 2) for t in self.qkv(x).split(C, dim=2))
        q, k = self._rotate(q, ctx), self._rotate(k, ctx)  # (B, nh, T, hs)
        if cache is not None:  # attend over everything seen so far
            if cache.k[layer] is not None:
                k, v = torch.cat([cache.k[layer], k], dim=2), torch.cat([cache.v[layer], v], dim=2)
            cache.k[layer], cache.v[layer] = k, v
        logit_scale = 1.0
        if ctx.log_keys is not None:  # Scalable-Softmax: queries scaled by s_h * log n
            logit_scale = self.ssmax_scale.view(1, -1, 1, 1) * ctx.log_keys.to(q.dtype)[None, :, :, None]
            q = q * logit_scale
        return q, k, v, self._mask(ctx, logit_scale)

    def _rotate(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        """Rotary positions on every head (pos_encoding=rope) or on the local heads only."""
        nl = self.cfg.local_heads
        if self.cfg.pos_encoding == "rope":
            return rope_rotate(x, *ctx.rope)
        if nl:
            return torch.cat([rope_rotate(x[:, :nl], *ctx.rope), x[:, nl:]], dim=1)
        return x

    def _mask(self, ctx: AttentionContext, logit_scale) -> torch.Tensor | None:
        """The boolean mask, or with the value bias a float one: the bias where allowed, -inf elsewhere."""
        if not self.cfg.value_bias:
            return ctx.allowed
        slope = torch.cat([self.value_slope.new_zeros(self.cfg.local_heads), self.value_slope]).view(1, -1, 1, 1)
        if self.cfg.value_bias_scaled:  # keep its balance with the content scores at every length
            slope = slope * logit_scale
        return torch.addcmul(ctx.blocked, slope, ctx.gap)  # (B, nh, T, S)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.d_ff)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.gelu(self.up(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, ctx: AttentionContext, cache: KVCache | None, layer: int) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), ctx, cache, layer)
        return x + self.mlp(self.ln2(x))


class CountingTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = NumberEmbedding(cfg)
        if cfg.pos_encoding == "learned":
            self.pos_table = nn.Embedding(cfg.max_positions, cfg.d_model)
        elif cfg.pos_encoding == "sinusoidal":
            self.register_buffer("pos_table_fixed", sinusoid_table(cfg.max_positions, cfg.d_model), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.d_model)
        if cfg.number_head == "features":  # free rows for the specials, a projection of identity features for numbers
            self.head = nn.Linear(cfg.d_model, cfg.number_offset, bias=False)
            identity = order_code_features(cfg.max_number)[:, 1:]  # code and waves; a monotone order logit can't peak
            self.register_buffer("head_features", identity, persistent=False)
            self.head_project = nn.Linear(self.head_features.shape[1], cfg.d_model, bias=False)
        else:
            self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _position_offsets(self, B: int, T: int, device: torch.device) -> torch.Tensor:
        """Per-row start position: random while training with random_pos_offset, else 0. (B,)"""
        if self.training and self.cfg.random_pos_offset and self.cfg.pos_encoding == "learned":
            return torch.randint(0, self.cfg.max_positions - T + 1, (B,), device=device)
        return torch.zeros(B, dtype=torch.long, device=device)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits (B, T, vocab) for tokens idx (B, T); with a cache they follow the cache's tokens."""
        B, T = idx.shape
        start = 0 if cache is None else cache.length
        if start + T > self.cfg.max_positions and self.cfg.pos_encoding in ("learned", "sinusoidal"):
            raise ValueError(f"sequence of {start + T} tokens exceeds max_positions={self.cfg.max_positions}")
        pos = torch.arange(start, start + T, device=idx.device)  # (T,)
        x = self.embed(idx)  # (B, T, C)
        if self.cfg.pos_encoding == "learned":
            x = x + self.pos_table(pos[None, :] + self._position_offsets(B, T, idx.device)[:, None])
        elif self.cfg.pos_encoding == "sinusoidal":
            x = x + self.pos_table_fixed[pos]
        x = self.drop(x)
        ctx = AttentionContext.build(self.cfg, self._key_numbers(idx, cache), start, T, idx.device)
        for i, block in enumerate(self.blocks):
            x = block(x, ctx, cache, i)
        x = self.ln_f(x)
        if self.cfg.number_head == "free":
            return self.head(x)
        # numbers share output features, so rows seen rarely still fit; a cached decode projects them once
        rows = None if cache is None else cache.number_rows
        if rows is None:
            rows = self.head_project(self.head_features)  # (max_number+1, C)
            if cache is not None:
                cache.number_rows = rows
        return torch.cat([self.head(x), x @ rows.T], dim=-1)  # (B, T, vocab)

    @torch.inference_mode()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's attention weights (B, nh, T, T) on tokens idx (B, T), as forward computes them."""
        seen: list[torch.Tensor] = []
        hooks = [
            b.attn.register_forward_hook(lambda m, args, out: seen.append(m.weights(*args[:2]))) for b in self.blocks
        ]
        try:
            self(idx)
        finally:
            for hook in hooks:
                hook.remove()
        return seen

    def _key_numbers(self, idx: torch.Tensor, cache: KVCache | None) -> torch.Tensor | None:
        """(B, S) the number of every token attended to, NaN for specials; only the value bias reads them."""
        if not self.cfg.value_bias:
            return None
        numbers = (idx - self.cfg.number_offset).float()
        numbers = numbers.masked_fill((numbers < 0) | (numbers > self.cfg.max_number), float("nan"))
        if cache is not None:
            numbers = numbers if cache.numbers is None else torch.cat([cache.numbers, numbers], dim=1)
            cache.numbers = numbers
        return numbers

    @torch.no_grad()
    def generate(self, prompts: torch.Tensor, max_new_tokens: int, use_cache: bool = True) -> torch.Tensor:
        """Greedy continuation of equal-length prompts (B, P); returns (B, <=max_new_tokens).

        Each row stops at EoS; finished rows are filled with pad. use_cache=False recomputes the
        whole prefix every step (the reference the KV cache must match).
        """
        B = prompts.shape[0]
        limit = max_new_tokens
        if self.cfg.pos_encoding in ("learned", "sinusoidal"):
            limit = min(limit, self.cfg.max_positions - prompts.shape[1])
        cache = KVCache(self.cfg.n_layer) if use_cache else None
        seq = prompts
        logits = self(prompts, cache)
        done = torch.zeros(B, dtype=torch.bool, device=prompts.device)
        out = []
        for _ in range(limit):
            nxt = logits[:, -1].argmax(-1)  # (B,)
            nxt = torch.where(done, torch.full_like(nxt, self.cfg.pad_id), nxt)
            out.append(nxt)
            done |= nxt == self.cfg.eos_id
            if done.all():
                break
            if use_cache:
                logits = self(nxt[:, None], cache)
                seq = torch.cat([seq, nxt[:, None]], dim=1)
            else:
                seq = torch.cat([seq, nxt[:, None]], dim=1)
                logits = self(seq)
        if not out:
            return prompts.new_zeros(B, 0)
        return torch.stack(out, dim=1)
