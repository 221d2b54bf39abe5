import math

import pytest
import torch

import evaluate
from config import load_config
from data_generation import EOS, PROMPT_LEN, encode_batch
from model import (
    NUMBER_ENCODINGS,
    POS_ENCODINGS,
    AttentionContext,
    CausalSelfAttention,
    CountingTransformer,
    ModelConfig,
    order_code_features,
)

VARIANTS = (
    [(pe, "learned", False, 0, {}) for pe in POS_ENCODINGS]
    + [("none", enc, ssmax, 0, {}) for enc in NUMBER_ENCODINGS for ssmax in (False, True)]
    + [("none", "order+code", True, 1, {}), ("rope", "learned", False, 1, {})]
    + [("none", "order+code", True, 1, {"value_bias": True}), ("none", "learned", False, 0, {"value_bias": True})]
    + [("none", "order+code", True, 1, {"value_bias": True, "value_bias_scaled": True})]
    + [("none", "order+code", True, 1, {"value_bias": True, "value_bias_scaled": True, "number_head": "features"})]
)


def tiny(pos_encoding="none", number_encoding="learned", scalable_softmax=False, local_heads=0, **kw):
    torch.manual_seed(0)
    cfg = ModelConfig(
        n_layer=2,
        n_head=2,
        d_model=32,
        d_ff=64,
        pos_encoding=pos_encoding,
        number_encoding=number_encoding,
        scalable_softmax=scalable_softmax,
        local_heads=local_heads,
        local_window=4,
        max_number=199,
        vocab_size=204,
        **kw,
    )
    return CountingTransformer(cfg).eval()


@pytest.mark.parametrize("pe,enc,ssmax,local,extra", VARIANTS)
def test_model_is_causal(pe, enc, ssmax, local, extra):
    model = tiny(pe, enc, ssmax, local, **extra)
    tokens = encode_batch([10], [40])
    changed = tokens.clone()
    changed[0, 20] = 4 + 150
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert torch.allclose(a[:, :20], b[:, :20], atol=1e-5)
    assert not torch.allclose(a[:, 20:], b[:, 20:])


@pytest.mark.parametrize("pe,enc,ssmax,local,extra", VARIANTS)
def test_scoring_in_blocks_gives_the_one_pass_predictions(pe, enc, ssmax, local, extra, monkeypatch):
    """Long answers are scored through the KV cache a block at a time; on short ones it must change nothing."""
    model = tiny(pe, enc, ssmax, local, **extra)
    tokens = encode_batch([10, 150, 7], [40, 120, 7])  # up, down and a = b, padded to one length
    with torch.no_grad():
        whole, whole_loss = evaluate._teacher_forced(model, tokens)
        monkeypatch.setattr(evaluate, "EVAL_BUDGET", 3 * tokens.shape[0] * model.cfg.n_head * tokens.shape[1])
        blocks, blocks_loss = evaluate._teacher_forced(model, tokens)  # blocks of 3 positions
    assert torch.equal(whole, blocks)
    assert blocks_loss == pytest.approx(whole_loss, rel=1e-5)


@pytest.mark.parametrize("pe,enc,ssmax,local,extra", VARIANTS)
def test_kv_cached_generation_equals_full_recomputation(pe, enc, ssmax, local, extra):
    model = tiny(pe, enc, ssmax, local, **extra)
    with torch.no_grad():  # sharpen the random model so it emits varied tokens and sometimes EoS
        model.ln_f.weight.mul_(30)
    prompts = encode_batch(torch.arange(0, 160, 10).numpy(), torch.arange(40, 200, 10).numpy())[:, :PROMPT_LEN]
    cached = model.generate(prompts, 60, use_cache=True)
    full = model.generate(prompts, 60, use_cache=False)
    assert cached.shape == full.shape and torch.equal(cached, full)
    assert cached.unique().numel() > 3  # not a degenerate constant output


def test_feature_head_scores_numbers_through_their_features_at_any_range():
    """number_head=features: the output layer's size does not grow with the number range."""
    heads = {}
    for max_number in (199, 5999):
        cfg = ModelConfig(vocab_size=4 + max_number + 1, max_number=max_number, d_model=16, n_head=2)
        cfg.number_head = "features"
        model = CountingTransformer(cfg).eval()
        heads[max_number] = sum(p.numel() for n, p in model.named_parameters() if n.startswith("head"))
        with torch.no_grad():
            logits = model(torch.tensor([[1, 10, 2000 % (max_number + 1), 2]]))
            assert logits.shape == (1, 4, cfg.vocab_size)
            model.head_project.weight.zero_()  # numbers' rows vanish with their projection, the specials' stay
            zeroed = model(torch.tensor([[1, 10, 2000 % (max_number + 1), 2]]))
        assert torch.equal(zeroed[..., 4:], torch.zeros_like(zeroed[..., 4:]))
        assert torch.equal(zeroed[..., :4], logits[..., :4])
    assert heads[199] == heads[5999] == 16 * 4 + 96 * 16


def test_generate_stops_each_row_at_eos_and_pads_the_rest():
    model = tiny()
    with torch.no_grad():  # force EoS always
        model.head.weight.zero_()
        model.head.weight[EOS] = 1.0
        model.ln_f.bias.fill_(1.0)
    out = model.generate(encode_batch([1, 2], [5, 9])[:, :PROMPT_LEN], 20)
    assert out.tolist() == [[EOS], [EOS]]


def test_learned_positions_shift_only_in_training():
    model = tiny("learned", random_pos_offset=True)
    tokens = encode_batch([10], [40])
    with torch.no_grad():
        assert torch.equal(model(tokens), model(tokens))  # eval: no shift
        model.train()
        torch.manual_seed(1)
        first = model(tokens)
        torch.manual_seed(2)
        assert not torch.allclose(first, model(tokens))


def test_fixed_position_tables_refuse_sequences_beyond_their_size():
    model = tiny("sinusoidal", max_positions=32)
    with pytest.raises(ValueError, match="max_positions"):
        model(encode_batch([0], [40]))


def test_order_code_features_separate_order_from_identity():
    feats = order_code_features(199)
    order, code, waves = feats[:, 0], feats[:, 1:33], feats[:, 33:]
    assert torch.all(order[1:] > order[:-1])  # 'a < b' is the sign of the order difference at any gap
    unit = code / code.norm(dim=1, keepdim=True)
    cosine = unit @ unit.T - 2 * torch.eye(200)
    assert cosine.max() < 0.8  # every number has its own identity, far-apart ones included
    wave_similarity = waves @ waves.T - 2 * torch.eye(200)
    assert wave_similarity.max() < 0.5  # random frequencies: no gap at which two numbers' waves match
    assert torch.equal(feats, order_code_features(199))  # fixed: a checkpoint rebuilds the same features


def test_order_stretch_scales_only_the_order_channel_and_only_in_training():
    cfg = ModelConfig(vocab_size=24, max_number=19, d_model=16, n_head=2, number_encoding="order+code", order_stretch=3)
    embed = CountingTransformer(cfg).embed
    tokens = torch.tensor([[1, 8, 20, 2, 8, 9]] * 64)
    embed.project.weight.data.zero_()
    embed.project.weight.data[0, 0] = 1.0  # model dim 0 reads the order channel alone
    stretched = embed(tokens)[:, 1, 0] / order_code_features(19)[4, 0]  # number 4 at position 1
    assert stretched.min() >= 1 and stretched.max() <= 3 and stretched.std() > 0.3  # one factor per sequence
    embed.eval()
    assert torch.allclose(embed(tokens)[:, 1, 0], order_code_features(19)[4, 0].expand(64))


def _bias_only_attention(slope: float, **kw) -> torch.Tensor:
    """A 2-head attention (1 local, 1 global) with zero queries and keys, so scores are the value bias
    alone, and values that copy the input: returns its output at position 3 for the numbers 10 15 12 11."""
    cfg = ModelConfig(d_model=8, n_head=2, local_heads=1, local_window=2, value_bias=True, **kw)
    attn = CausalSelfAttention(cfg)
    with torch.no_grad():
        attn.qkv.weight.zero_(), attn.qkv.bias.zero_(), attn.proj.bias.zero_()
        attn.qkv.weight[16:].copy_(torch.eye(8)), attn.proj.weight.copy_(torch.eye(8))
        attn.value_slope.fill_(slope)
        x = torch.eye(8)[None, :4] + torch.eye(8)[None, 4:]  # position t: dims t and 4+t
        ctx = AttentionContext.build(cfg, torch.tensor([[10.0, 15.0, 12.0, 11.0]]), n_past=0, T=4, device="cpu")
        return attn(x, ctx)[0, 3]


@pytest.mark.parametrize("slope,picked", [(20.0, 1), (-20.0, 0)])
def test_value_bias_points_a_global_head_up_or_down_the_number_line(slope, picked):
    out = _bias_only_attention(slope)
    assert torch.allclose(out[4:], torch.eye(4)[picked], atol=1e-3)  # 15 is the largest number, 10 the smallest
    assert torch.allclose(out[:4], torch.tensor([0, 0, 0.5, 0.5]))  # the local head: no bias, window of 2


def test_scaled_value_bias_grows_with_log_n_like_scalable_softmax_queries():
    out = _bias_only_attention(1.0, scalable_softmax=True, value_bias_scaled=True)
    weights = torch.softmax(math.log(4) * (torch.tensor([10.0, 15.0, 12.0, 11.0]) - 11), dim=0)  # 4 keys seen
    assert torch.allclose(out[4:], weights, atol=1e-5)
    unscaled = _bias_only_attention(1.0, scalable_softmax=True)
    assert torch.allclose(unscaled[4:], torch.softmax(torch.tensor([10.0, 15.0, 12.0, 11.0]) - 11, dim=0), atol=1e-5)


def test_counting_config_is_the_recipe_at_the_seed_sizes_and_seed_system_the_seed_model():
    cfg = load_config("counting_config")
    m = cfg.model
    assert (m.n_layer, m.n_head, m.d_model, m.d_ff, cfg.train.batch_size) == (6, 8, 512, 2048, 32)
    assert m.local_heads == 4 and m.pos_encoding == "none" and m.scalable_softmax
    assert m.value_bias and m.value_bias_scaled and m.number_encoding == "order+code" and m.order_stretch > 1
    assert cfg.data.sampling == "online" and cfg.data.direction == "both"
    model = CountingTransformer(m)
    assert len(model.blocks) == 6 and model.blocks[0].attn.value_slope.numel() == 4  # one slope per global head
    seed = load_config("seed_system")
    assert (seed.model.n_layer, seed.model.n_head, seed.model.d_model, seed.train.batch_size) == (6, 8, 512, 32)
    assert seed.model.pos_encoding == "sinusoidal" and seed.model.number_encoding == "learned"
    assert not (seed.model.value_bias or seed.model.local_heads or seed.model.scalable_softmax)
