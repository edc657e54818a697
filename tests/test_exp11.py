"""Exp11: per-token GDN / softmax routing in a small causal LM."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

import zoo
from zoo import routing
from zoo.families.exp11.causal_attention import CausalSelfAttention
from zoo.families.exp11.gdn import GatedDeltaNet, ShortConv
from zoo.families.exp11.model import Exp11, Exp11Spec
from zoo.ops.delta_rule import naive_recurrent_gated_delta_rule
from zoo.ops.dispatch import pack_rows
from zoo.ops.gating import load_balance_loss
from zoo.specs import AttentionSpec, GDNSpec

from exp11_testutils import MIXES, TINY, check_causal, decisions, make

VARIANTS = ["exp11_baseline", "exp11_dynamic", "exp11_baseline_tiny", "exp11_dynamic_tiny"]


# ----------------------------------------------------------------------------- registry, spec

def test_variants_registered_with_honest_tags():
    assert set(VARIANTS) <= set(zoo.list_models("exp11*"))
    for name in VARIANTS:
        info = zoo.model_info(name)
        assert info["family"] == "exp11" and info["task"] == "causal-lm"
        assert info["routing"] == ("token" if "dynamic" in name else "static")
    # tied embeddings: the 49152 x 768 table is counted once
    assert 70e6 < zoo.model_info("exp11_baseline")["params"] < 85e6


def test_spec_round_trip_and_validation():
    spec = zoo.resolve_spec("exp11_dynamic_tiny")[1]
    assert Exp11Spec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="layer 0"):
        Exp11Spec(layers=("routed", "gdn"))
    with pytest.raises(ValueError, match="layers"):
        Exp11Spec(layers=("gdn", "mamba"))
    with pytest.raises(TypeError, match="valid keys"):
        zoo.create_model("exp11_dynamic_tiny", hiden=3)


def test_builds_on_meta_and_ties_embeddings():
    with torch.device("meta"):
        model = Exp11(Exp11Spec(layers=("gdn", "routed", "softmax")))
    assert model.lm_head.weight is model.embed.weight
    untied = zoo.create_model("exp11_baseline_tiny", tie_embeddings=False)
    assert untied.lm_head.weight is not untied.embed.weight


# ----------------------------------------------------------------------------- blocks

def test_short_conv_is_a_causal_depthwise_conv_and_all_visible_changes_nothing():
    torch.manual_seed(0)
    conv = ShortConv(6, 4)
    x = torch.randn(2, 11, 6)
    ref = torch.nn.functional.conv1d(torch.nn.functional.pad(x.transpose(1, 2), (3, 0)),
                                     conv.weight.unsqueeze(1), groups=6).transpose(1, 2)
    torch.testing.assert_close(conv(x), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(conv(x, torch.ones(2, 11, dtype=torch.bool)), ref, atol=1e-6, rtol=0)


@settings(max_examples=10)
@given(st.integers(0, 2**31 - 1), st.integers(1, 30))
def test_gdn_on_visible_tokens_equals_gdn_on_the_packed_subsequence(seed, T):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    gdn = GatedDeltaNet(16, GDNSpec(num_heads=2, chunk_size=8)).eval()
    x = torch.randn(1, T, 16, generator=g)
    visible = torch.rand(1, T, generator=g) < 0.6
    visible[0, -1] = True  # the packed reference needs at least one token
    out, state = gdn(x, visible=visible, output_final_state=True)
    ref, ref_state = gdn(x[visible].unsqueeze(0), output_final_state=True)
    torch.testing.assert_close(out[visible].unsqueeze(0), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(state, ref_state, atol=1e-5, rtol=0)


def test_invisible_token_leaves_gdn_state_unchanged():
    torch.manual_seed(0)
    gdn = GatedDeltaNet(16, GDNSpec(num_heads=2, chunk_size=4)).eval()
    x = torch.randn(1, 9, 16)
    visible = torch.ones(1, 9, dtype=torch.bool)
    visible[0, 5] = False
    _, before = gdn(x[:, :5], output_final_state=True)
    _, after = gdn(x[:, :6], visible=visible[:, :6], output_final_state=True)
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)
    # whatever the invisible token holds, no visible token's output changes
    y = x.clone()
    y[0, 5] = 100 * torch.randn(16)
    vis_out = gdn(x, visible=visible)[visible]
    torch.testing.assert_close(gdn(y, visible=visible)[visible], vis_out, atol=1e-6, rtol=0)


def test_gdn_state_matches_naive_delta_rule_reference():
    # the mixer's recurrence is the op's: check its final state against the token loop
    torch.manual_seed(1)
    gdn = GatedDeltaNet(16, GDNSpec(num_heads=2, chunk_size=4)).eval()
    x = torch.randn(2, 10, 16)
    out, state = gdn(x, output_final_state=True)
    q, k, v, g, beta, _ = gdn.features(x)
    ref_out, ref = naive_recurrent_gated_delta_rule(q, k, v, g, beta, output_final_state=True)
    torch.testing.assert_close(state, ref, atol=1e-5, rtol=0)


@settings(max_examples=10)
@given(st.integers(0, 2**31 - 1), st.integers(1, 3), st.integers(1, 20))
def test_attention_queries_subset_equals_full_attention(seed, B, T):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    attn = CausalSelfAttention(16, AttentionSpec(num_heads=2, qkv_bias=False, rope=True))
    x = torch.randn(B, T, 16, generator=g)
    mask = torch.rand(B, T, generator=g) < 0.5
    packed = pack_rows(mask)
    full = attn(x)
    part = attn(x, queries=packed)
    for b in range(B):
        n = int(packed.counts[b])
        torch.testing.assert_close(part[b, :n], full[b, packed.index[b, :n]], atol=1e-5, rtol=0)


@settings(max_examples=10)
@given(st.integers(0, 2**31 - 1), st.integers(1, 3), st.integers(1, 40), st.sampled_from([1, 3, 4, 16]))
def test_blocked_sorted_queries_equal_full_attention(seed, B, T, block):
    # several query blocks, each reading keys only up to its last position; rows of different
    # lengths put padding queries (arbitrary positions) into the blocks
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    attn = CausalSelfAttention(16, AttentionSpec(num_heads=2, qkv_bias=False, rope=True))
    attn.query_block = block
    x = torch.randn(B, T, 16, generator=g)
    mask = torch.rand(B, T, generator=g) < torch.rand(B, 1, generator=g)
    packed = pack_rows(mask)
    full = attn(x)
    part = attn(x, queries=packed)
    assert part.shape == (B, packed.index.shape[1], 16)
    for b in range(B):
        n = int(packed.counts[b])
        torch.testing.assert_close(part[b, :n], full[b, packed.index[b, :n]], atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- causality

@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("mode", ["train", "sparse", "dense"])
@settings(max_examples=6)
@given(data=st.data())
def test_causal_in_every_mode(mode, mix, data):
    model = make(mix=mix)
    check_causal(model, data, mode)


# ----------------------------------------------------------------------------- load balance

def test_load_balance_uses_the_routes_taken():
    model = make()
    x = torch.randint(0, 64, (4, 32))
    model.train()
    logits = model(x)
    recs = routing.trace(model)
    expected = torch.stack([load_balance_loss(r.probs, r.decisions) for r in recs]).mean()
    torch.testing.assert_close(model.aux_losses()["load_balance"], expected)
    # forcing every token to gdn makes f = (1, 0): the loss is 2 * mean P(gdn)
    with routing.force(model, "gdn"):
        model(x)
        recs = routing.trace(model)
        forced = torch.stack([2 * r.probs[..., 0].mean() for r in recs]).mean()
        torch.testing.assert_close(model.aux_losses()["load_balance"], forced)
    assert logits.shape == (4, 32, 64)


def test_baseline_has_no_aux_and_no_routers():
    model = zoo.create_model("exp11_baseline_tiny", **TINY)
    model(torch.randint(0, 64, (1, 8)))
    assert model.aux_losses() == {} and routing.trace(model) == []


# ----------------------------------------------------------------------------- training

@pytest.mark.parametrize("name", ["exp11_dynamic_tiny", "exp11_baseline_tiny"])
@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_every_parameter_gets_a_finite_gradient(name, mode):
    model = make(name)
    model.train()
    x = torch.randint(0, 64, (3, 40))
    with routing.execution(model, mode):
        logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), x.flatten())
    loss = loss + 0.1 * sum(model.aux_losses().values(), torch.zeros(()))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_dense_training_gives_the_router_gradient_from_both_mixers():
    model = make()
    model.train()
    x = torch.randint(0, 64, (2, 24))
    for r in routing.routers(model):
        r.tau.fill_(1.0)
    logits = model(x)
    logits.square().mean().backward()  # no aux term: the gradient comes from the mixers only
    for r in routing.routers(model):
        assert r.net[-1].weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- inference

def test_eval_is_deterministic_and_independent_of_batch_mates():
    model = make().eval()
    x = torch.randint(0, 64, (4, 33), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, da = model(x), decisions(model)
        b, db = model(x), decisions(model)
        assert torch.equal(a, b) and all(torch.equal(p, q) for p, q in zip(da, db))
        for i in range(4):
            alone, d1 = model(x[i:i + 1]), decisions(model)
            torch.testing.assert_close(alone[0], a[i], atol=1e-5, rtol=0)
            assert all(torch.equal(p[0], q[i]) for p, q in zip(d1, da))


def test_trace_has_one_token_level_record_per_routed_layer():
    model = make().eval()
    with torch.no_grad():
        model(torch.randint(0, 64, (3, 17)))
    recs = routing.trace(model)
    assert [r.layer for r in recs] == ["layers.1", "layers.2"]
    for r in recs:
        assert r.granularity == "token" and r.choices == ("gdn", "softmax")
        assert r.decisions.shape == (3, 17) and r.probs.shape == (3, 17, 2)


@pytest.mark.parametrize("bad, match", [
    (torch.tensor([[1, 64]]), "token ids"),
    (torch.tensor([[-1, 3]]), "token ids"),
    (torch.zeros(1, 49, dtype=torch.long), "max_seq_len"),
    (torch.zeros(1, 4), "integer token ids"),
    (torch.zeros(4, dtype=torch.long), r"\(B, T\)"),
    (torch.zeros(2, 0, dtype=torch.long), "at least one token"),
])
def test_bad_input_is_a_one_line_value_error(bad, match):
    model = make()
    with pytest.raises(ValueError, match=match) as err:
        model(bad)
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- copies

@pytest.mark.parametrize("name", ["exp11_dynamic_tiny", "exp11_baseline_tiny"])
def test_deepcopy_after_a_training_forward(name):
    # a training forward leaves routes holding graph tensors on the model; deepcopy (EMA,
    # model soups, checkpoint averaging) must still work, and the copy must be independent
    import copy
    model = make(name)
    x = torch.randint(0, 64, (2, 20))
    model.train()
    model(x)
    twin = copy.deepcopy(model)
    assert twin.lm_head.weight is twin.embed.weight  # tying survives the copy
    assert twin.aux_losses() == {}  # the copy has not run a forward yet
    model.eval(), twin.eval()
    with torch.no_grad():
        torch.testing.assert_close(twin(x), model(x), atol=0, rtol=0)
        next(twin.parameters()).add_(1.0)
        assert not torch.equal(twin(x), model(x))


def test_add_mix_forced_to_gdn_is_a_gdn_layer_and_softmax_adds_the_attention_read():
    model = make(layers=("gdn", "routed", "softmax")).eval()
    mixer = model.layers[1].mixer
    h = torch.randn(2, 20, 32)
    rs = routing.routers(model)
    feats = torch.randn(2, 20, 32)
    with torch.no_grad():
        with routing.force(model, "gdn"):
            torch.testing.assert_close(mixer(h, rs[0](feats)), mixer.gdn(h), atol=1e-6, rtol=0)
        with routing.force(model, "softmax"):
            torch.testing.assert_close(mixer(h, rs[0](feats)), mixer.gdn(h) + mixer.attn(h), atol=1e-5, rtol=0)
