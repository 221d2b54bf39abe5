import math

import pytest
import torch

from config import load_config
from data_generation import EOS, PROMPT_LEN, encode_batch
from evaluate import load_checkpoint
from model import (
    NUMBER_ENCODINGS,
    POS_ENCODINGS,
    CausalSelfAttention,
    CountingTransformer,
    ModelConfig,
    order_code_features,
    thermometer_features,
    value_features,
)
from train import save_checkpoint

VARIANTS = (
    [(pe, "learned", False, 0, {}) for pe in POS_ENCODINGS]
    + [("none", enc, ssmax, 0, {}) for enc in NUMBER_ENCODINGS for ssmax in (False, True)]
    + [("none", "value", True, 1, {}), ("rope", "learned", False, 1, {})]
    + [("none", "order+code", True, 1, {"value_bias": True}), ("none", "learned", False, 0, {"value_bias": True})]
    + [("none", "order+code", True, 1, {"value_bias": True, "value_bias_scaled": True})]
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
def test_kv_cached_generation_equals_full_recomputation(pe, enc, ssmax, local, extra):
    model = tiny(pe, enc, ssmax, local, **extra)
    with torch.no_grad():  # sharpen the random model so it emits varied tokens and sometimes EoS
        model.head.weight.mul_(30)
    prompts = encode_batch(torch.arange(0, 160, 10).numpy(), torch.arange(40, 200, 10).numpy())[:, :PROMPT_LEN]
    cached = model.generate(prompts, 60, use_cache=True)
    full = model.generate(prompts, 60, use_cache=False)
    assert cached.shape == full.shape and torch.equal(cached, full)
    assert cached.unique().numel() > 3  # not a degenerate constant output


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
    harmonic = order_code_features(199, "harmonic")[:, 33:]
    assert torch.allclose(harmonic[:-24], harmonic[24:], atol=1e-4)  # harmonic waves repeat every 24
    assert torch.equal(feats, order_code_features(199))  # fixed: a checkpoint rebuilds the same features


def test_value_waves_append_the_longest_sinusoids_of_the_value_encoding():
    plain, fine = order_code_features(199), order_code_features(199, n_value_waves=3)
    assert fine.shape == (200, plain.shape[1] + 6) and torch.equal(fine[:, : plain.shape[1]], plain)
    value = value_features(199)  # [v/N, 8 sines, 8 cosines], longest wavelength first
    assert torch.equal(fine[:, -6:], torch.cat([value[:, 1:4], value[:, 9:12]], dim=1))


def test_thermometer_steps_once_per_number_and_never_repeats():
    steps = thermometer_features(199)
    assert steps.shape == (200, 199) and torch.allclose(steps.norm(dim=1), torch.ones(200))
    assert torch.equal((steps > 0).sum(dim=1), torch.arange(200))  # v columns are +1: the value, in unary
    flips = (steps[:, None, :] != steps[None, :, :]).sum(dim=-1)
    gaps = (torch.arange(200)[:, None] - torch.arange(200)[None, :]).abs()
    assert torch.equal(flips, gaps)  # as fine at gap 1 as at gap 150: no two numbers look alike
    feats = order_code_features(199, thermometer=True)
    assert torch.equal(feats, torch.cat([order_code_features(199), steps], dim=1))
    cfg = load_config("counting_small", {"model.thermometer": "true"}).model
    assert torch.equal(CountingTransformer(cfg).embed.features, feats)


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
    attn = CausalSelfAttention(ModelConfig(d_model=8, n_head=2, local_heads=1, local_window=2, value_bias=True, **kw))
    with torch.no_grad():
        attn.qkv.weight.zero_(), attn.qkv.bias.zero_(), attn.proj.bias.zero_()
        attn.qkv.weight[16:].copy_(torch.eye(8)), attn.proj.weight.copy_(torch.eye(8))
        attn.value_slope.fill_(slope)
        x = torch.eye(8)[None, :4] + torch.eye(8)[None, 4:]  # position t: dims t and 4+t
        return attn(x, torch.arange(4), torch.tensor([[10.0, 15.0, 12.0, 11.0]]))[0, 3]


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


def test_checkpoint_saved_before_number_waves_existed_loads_its_harmonic_waves(tmp_path):
    cfg = load_config("counting_small", {"model.number_waves": "harmonic", "train.output_dir": str(tmp_path)})
    ckpt = tmp_path / "old.ckpt"
    save_checkpoint(CountingTransformer(cfg.model), cfg, 0, ckpt)
    saved = torch.load(ckpt, weights_only=True)
    for key in ("number_waves", "value_waves", "thermometer"):  # as written before these keys existed
        del saved["hyper_parameters"]["config"]["model"][key]
    torch.save(saved, ckpt)
    model, loaded = load_checkpoint(ckpt)
    assert loaded.model.number_waves == "harmonic"
    assert torch.equal(model.embed.features, order_code_features(loaded.model.max_number, "harmonic"))
