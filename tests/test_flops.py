"""Executed-FLOP counting (zoo.flops): compared with ultralytics-thop on every variant, against
hand-written formulas for one block of each kind, and for what routing saves.

The thop comparison is independent for the matmuls, convolutions and attention thop sees; for
the recurrences (scans, delta rule, short conv) thop is given the zoo's own formulas (THOP_RULES),
so there it only checks the plumbing, and the hand-formula tests below are what check the counts.

FLOPs = 2 x MACs throughout; thop reports MACs.
"""
import contextlib
import math

import pytest
import thop
import torch
import torch.nn as nn
from hypothesis import given, settings, strategies as st
from thop.vision.basic_hooks import zero_ops
from timm.layers import SwiGLU

import zoo
import zoo.flops as zf
from zoo.families.exp11.causal_attention import CausalSelfAttention
from zoo.families.dhvn.conv_branch import ConvBranch
from zoo.families.exp11.gdn import GatedDeltaNet, ShortConv
from zoo.families.dhvn.pooled_attention import PooledAttention
from zoo.families.eshvision.rel_attention import RelPosAttention
from zoo.families.eshvision.vssm import BidirectionalVSSM, _SelectiveScan
from zoo.ops.delta_rule import gated_delta_rule_flops
from zoo.ops.selective_scan import selective_scan_flops, ssd_scan_flops
from zoo.specs import AttentionSpec, ConvBranchSpec, GDNSpec, SSMSpec



pytestmark = pytest.mark.usefixtures("one_thread")  # tiny shapes (tests/conftest.py)


# ----------------------------------------------------------------------------- thop comparison
# thop counts module calls through forward hooks and functional matmul / linear / SDPA through
# a TorchFunctionMode; FlopCounterMode counts dispatched aten ops. To compare like with like:
#   * thop's norm and average-pool rules count elementwise work FlopCounterMode does not: zeroed;
#   * the scan and delta-rule modules get rules from the op formulas (the ops loop in Python and
#     thop would see an arbitrary subset of their inner products; their formulas are checked by
#     hand below); thop's functional counter then skips their inner products;
#   * ShortConv is a depthwise conv written as shifted multiply-adds, which neither counter sees
#     as a conv: zoo.flops declares its MACs (MODULE_FLOPS), thop gets the same rule.


def _scan_rule(m, x, y):
    Bt, L, Dm = x[0].shape
    if m.kind == "mamba1":
        m.total_ops += selective_scan_flops(Bt, L, Dm, m.d_state) / 2
    else:
        m.total_ops += ssd_scan_flops(Bt, L, Dm, m.d_state, m.dt_proj.out_features) / 2


def _gdn_rule(m, x, y):
    B, T, _ = x[0].shape
    m.total_ops += gated_delta_rule_flops(B, T, m.num_heads, m.head_k_dim, m.head_v_dim, m.spec.chunk_size) / 2


def _short_conv_rule(m, x, y):
    B, T, C = x[0].shape
    visible = x[1] if len(x) > 1 else None
    if visible is None:
        m.total_ops += B * T * C * m.size
    else:  # history taps over the packed visible row (one step longer for the left pad), last tap
        m.total_ops += B * (int(visible.sum(1).max()) + 1) * C * (m.size - 1) + B * T * C


THOP_RULES = {nn.LayerNorm: zero_ops, nn.GroupNorm: zero_ops, nn.RMSNorm: zero_ops, nn.BatchNorm2d: zero_ops,
              nn.AvgPool2d: zero_ops,
              nn.AdaptiveAvgPool2d: zero_ops, _SelectiveScan: _scan_rule, GatedDeltaNet: _gdn_rule,
              ShortConv: _short_conv_rule}

# small inputs; the bigger variants keep their depths, heads and layer plans but get narrower
# widths, so that building them stays cheap (the counts are checked, not the sizes)
_NARROW_DHVN = dict(img_size=16, stem_width=16, widths=(32, 64, 128))
_NARROW_LM = dict(max_seq_len=32, hidden=96, mlp=dict(hidden=192), gdn=dict(num_heads=4),
                  attn=dict(num_heads=4))
SMALL = {
    "dhvn_base": _NARROW_DHVN, "dhvn_base_static": _NARROW_DHVN,
    "dhvn_small": _NARROW_DHVN, "dhvn_small_static": _NARROW_DHVN,
    "dhvn_tiny": _NARROW_DHVN, "dhvn_tiny_static": _NARROW_DHVN,
    "dhvn_nano": dict(img_size=16), "dhvn_nano_static": dict(img_size=16),
    "dhvn_nano_ccc": dict(img_size=16), "dhvn_nano_cbc": dict(img_size=16),
    "eshvision_l": dict(img_size=32, embed_dim=48), "eshvision_m": dict(img_size=32, embed_dim=32),
    "eshvision_s": dict(img_size=32, embed_dim=32), "eshvision_s_soft": dict(img_size=32, embed_dim=32),
    "exp11_baseline": _NARROW_LM, "exp11_dynamic": _NARROW_LM,
}


def _small_model(name):
    torch.manual_seed(0)
    model = zoo.create_model(name, **SMALL.get(name, {})).eval()
    info = zoo.model_info(name)
    if info["task"] == "causal-lm":
        x = torch.randint(0, model.vocab_size, (2, min(32, model.max_seq_len)))
    else:
        size = model.spec.img_size
        x = torch.randn(2, model.spec.in_chans, size, size)
    return model, x


def _mixed_policy(router, shape):
    """Every choice used: deterministic, item i takes choice i mod n (per sample or per position)."""
    n = len(router.choices)
    idx = torch.arange(int(torch.Size(shape).numel())) % n
    return idx.reshape(tuple(shape))


def test_thop_covers_every_variant():
    assert set(SMALL) | {"eshvision_xs", "eshvision_xs_soft", "eshvision_xs_ssm", "eshvision_xs_attn",
                         "exp11_baseline_tiny", "exp11_dynamic_tiny", "exp11_gggg_tiny", "exp11_ggss_tiny",
                         "exp11_ssss_tiny", "exp11_ggbs_tiny", "exp11_gbbs_tiny", "exp11_read_tiny", "exp11_read2_tiny",
                         "exp11_gggn_tiny", "exp11_ggns_tiny", "exp11_ggnn_tiny"} == set(zoo.list_models())


@pytest.mark.parametrize("name", zoo.list_models())
def test_counts_agree_with_thop(name):
    model, x = _small_model(name)
    settings = [contextlib.nullcontext]
    if zoo.routing.routers(model):
        settings = [  # dense + full policy (the dense reference), and sparse with every branch used
            lambda: _both(zoo.routing.execution(model, "dense"), zoo.routing.force(model, zf.full_policy)),
            lambda: _both(zoo.routing.execution(model, "sparse"), zoo.routing.force(model, _mixed_policy)),
        ]
    for setting in settings:
        with setting():
            ours = zf.count_flops(model, x)
            macs, _ = thop.profile(model, (x,), custom_ops=THOP_RULES, verbose=False)
        assert ours > 0
        assert abs(ours - 2 * macs) <= 0.05 * ours, (name, ours, 2 * macs)


@contextlib.contextmanager
def _both(a, b):
    with a, b:
        yield


# ----------------------------------------------------------------------------- blocks by hand


def _count(module, *args, **kwargs):
    return zf.count_flops(module, *args, **kwargs)


def test_conv_branch_by_hand():
    B, Ci, Co, H, W = 2, 8, 16, 12, 12
    blk = ConvBranch(Ci, Co, stride=2, spec=ConvBranchSpec(num_blocks=2))
    h, w = H // 2, W // 2
    first = 2 * B * Ci * h * w * 9 + 2 * B * Co * Ci * h * w + 2 * B * Co * Ci * h * w  # dw, pw, shortcut 1x1
    second = 2 * B * Co * h * w * 9 + 2 * B * Co * Co * h * w
    assert _count(blk, torch.randn(B, Ci, H, W)) == first + second


def test_pooled_attention_by_hand():
    B, C, heads, H, W, p = 2, 32, 2, 10, 10, 7
    N, Nk = H * W, p * p
    attn = PooledAttention(C, heads, kv_pool=p)
    q, kv, proj = 2 * B * N * C * C, 2 * B * Nk * C * 2 * C, 2 * B * N * C * C
    scores_and_values = 2 * 2 * B * N * Nk * C     # QK^T and AV, summed over heads
    assert _count(attn, torch.randn(B, N, C), (H, W)) == q + kv + scores_and_values + proj


def test_rel_pos_attention_by_hand():
    B, D, heads, h, w = 2, 32, 4, 5, 5
    N = h * w
    attn = RelPosAttention(D, heads, (h, w))
    expected = 2 * B * N * D * 3 * D + 2 * 2 * B * N * N * D + 2 * B * N * D * D
    assert _count(attn, torch.randn(B, N, D), (h, w)) == expected


@pytest.mark.parametrize("kind", ["mamba1", "ssd"])
def test_vssm_by_hand(kind):
    B, dim, h, w = 2, 32, 4, 5
    spec = SSMSpec(d_state=8, expand=2, d_conv=3, directions=2, kind=kind, head_dim=16)
    vssm = BidirectionalVSSM(dim, spec)
    N, di, r, S, k, dirs = h * w, 2 * dim, math.ceil(dim / 16), 8, 3, 2
    Bt, L = dirs * B, N
    proj = 2 * B * N * dim * di * 2 + 2 * B * N * di * dim           # in_proj (x and z halves), out_proj
    conv = 2 * Bt * di * (L + k - 1) * k                               # depthwise, padded outputs included
    xdt = 2 * Bt * L * di * (r + 2 * S) + 2 * Bt * L * r * (di if kind == "mamba1" else di // 16)
    if kind == "mamba1":
        scan = 7 * Bt * L * di * S + Bt * L * di
    else:  # chunk Q=16 over L=20: 2 chunks; H = di / 16 heads of P = 16
        Q, nc, H, P = 16, 2, di // 16, 16
        scan = Bt * nc * (2 * Q * Q * S + H * (2 * Q * Q * P + 4 * Q * P * S + 2 * P * S))
    assert _count(vssm, torch.randn(B, N, dim), (h, w)) == proj + conv + xdt + scan


def test_gdn_by_hand():
    B, T, dim, H = 2, 40, 32, 2
    K = V = dim // H
    gdn = GatedDeltaNet(dim, GDNSpec(num_heads=H, conv_size=4, chunk_size=16))
    Cc = 2 * H * K + H * V
    proj = 2 * B * T * dim * (Cc + H * V + 2 * H) + 2 * B * T * H * V * dim
    conv = 2 * B * T * Cc * 4
    C, N = 16, 3                                                      # 3 chunks, the last padded
    per_chunk = (4 * C * C * K + C * C * (C - 1) + 2 * C * C * K + 2 * C * C * V
                 + 4 * C * K * V + 2 * C * (C + K) * V)
    assert _count(gdn, torch.randn(B, T, dim)) == proj + conv + B * H * N * per_chunk


def test_short_conv_with_hidden_tokens_by_hand():
    B, T, C, size = 2, 10, 8, 4
    conv = ShortConv(C, size)
    visible = torch.zeros(B, T, dtype=torch.bool)
    visible[0, :3] = True
    visible[1, 2:7] = True                                            # the longest row: 5 visible
    history = 2 * B * (5 + 1) * C * (size - 1)                        # packed row, left pad included
    last_tap = 2 * B * T * C
    assert _count(conv, torch.randn(B, T, C), visible) == history + last_tap
    assert _count(conv, torch.randn(B, T, C)) == 2 * B * T * C * size


def test_causal_attention_by_hand():
    # convention: QK^T and AV over the pairs the causal mask allows, T (T + 1) / 2 per sequence
    B, T, dim, H = 2, 24, 32, 4
    attn = CausalSelfAttention(dim, AttentionSpec(num_heads=H, qkv_bias=False, rope=True))
    expected = 2 * B * T * dim * dim * 3 + 2 * 2 * B * (T * (T + 1) // 2) * dim + 2 * B * T * dim * dim
    assert _count(attn, torch.randn(B, T, dim)) == expected
    assert attn.flops_per_token(T) * B * T == expected
    # keys_only: the key/value projection alone, what a token that skips a read layer still costs
    # when its sequence has readers (`ReadBlock.choice_costs`)
    assert attn.flops_per_token(T, keys_only=True) * B * T == 2 * B * T * dim * dim * 2


@given(st.integers(1, 3), st.integers(1, 300), st.floats(0.0, 1.0), st.integers(0, 2**16))
@settings(max_examples=10, deadline=None)
def test_packed_causal_queries_count_by_the_same_convention(B, T, share, seed):
    """A query at position t counts its t + 1 keys, whether it runs in the dense causal kernel
    or packed with the routed queries: every query packed counts exactly what dense counts."""
    from zoo.ops.dispatch import pack_rows
    dim = 16
    attn = CausalSelfAttention(dim, AttentionSpec(num_heads=2, qkv_bias=False, rope=True)).eval()
    x = torch.randn(B, T, dim, generator=torch.Generator().manual_seed(seed))
    every = pack_rows(torch.ones(B, T, dtype=torch.bool))
    assert _count(attn, x, queries=every) == _count(attn, x)
    mask = torch.rand(B, T, generator=torch.Generator().manual_seed(seed + 1)) < share
    packed = pack_rows(mask)
    projections = 2 * B * T * dim * 2 * dim + 2 * 2 * packed.index.numel() * dim * dim
    pairs = int((packed.index + 1).sum())  # padding queries run too, and count
    assert _count(attn, x, queries=packed) == projections + 2 * 2 * pairs * dim


def test_swiglu_by_hand():
    B, T, dim, hidden = 2, 10, 32, 48
    mlp = SwiGLU(dim, hidden, bias=False)
    assert _count(mlp, torch.randn(B, T, dim)) == 2 * B * T * dim * hidden * 2 + 2 * B * T * hidden * dim


def test_cpu_sdpa_is_counted():
    q = k = v = torch.randn(1, 2, 8, 4)
    counter = torch.utils.flop_counter.FlopCounterMode(display=False)
    with counter:
        torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert counter.get_total_flops() == 2 * 2 * 1 * 2 * 8 * 8 * 4


def test_counting_leaves_ops_unchanged():
    gdn = GatedDeltaNet(32, GDNSpec(num_heads=2, chunk_size=16)).eval()
    x = torch.randn(2, 20, 32)
    with torch.no_grad():
        ref = gdn(x)
        with zoo.ops.counting.counting():
            out = gdn(x)
    assert torch.equal(ref, out)
    assert not zoo.ops.counting.is_counting()


# ----------------------------------------------------------------------------- what routing saves


def _fraction_policy(default, other, share):
    """The first round(share * n) items of each row (or of the batch) take `other`."""
    def policy(router, shape):
        shape = tuple(shape)
        n = shape[-1]
        d = torch.full(shape, router.choices.index(default), dtype=torch.long)
        d[..., :round(share * n)] = router.choices.index(other)
        return d
    return policy


@pytest.mark.parametrize("name", ["dhvn_nano", "eshvision_xs", "exp11_dynamic_tiny", "exp11_read_tiny"])
def test_saved_is_zero_for_the_full_policy_and_for_models_without_routing(name):
    model, x = _small_model(name)
    report = zf.flops_report(model, x)
    with zoo.routing.execution(model, "dense"), zoo.routing.force(model, zf.full_policy):
        assert zf.count_flops(model, x) == report["dense"]
    assert report["executed"] <= report["dense"]
    static = {"dhvn_nano": "dhvn_nano_static", "eshvision_xs": "eshvision_xs_soft",
              "exp11_dynamic_tiny": "exp11_baseline_tiny", "exp11_read_tiny": "exp11_baseline_tiny"}[name]
    static_model = _small_model(static)[0]
    if static == "eshvision_xs_soft":  # spread alpha so that some patches ponder (alpha > 0.7)
        torch.manual_seed(1)
        for r in zoo.routing.routers(static_model):
            nn.init.normal_(r.net[-1].weight, std=2.0)
    report = zf.flops_report(static_model, x)
    assert report["saved"] == 0 and report["executed"] == report["dense"] > 0


def test_dhvn_saves_more_as_more_samples_skip_a_branch():
    model, _ = _small_model("dhvn_nano")
    x = torch.randn(4, 3, 16, 16)
    saved = []
    for share in (0, 0.25, 0.5, 0.75, 1.0):
        with zoo.routing.force(model, _fraction_policy("both", "conv", share)):
            saved.append(zf.flops_report(model, x)["saved"])
    assert saved[0] == 0
    assert all(a < b for a, b in zip(saved, saved[1:])), saved
    # random mixes lie between their neighbours' extremes
    gen = torch.Generator().manual_seed(0)
    with zoo.routing.force(model, zoo.routing.random_policy({"both": 0.5, "conv": 0.5}, gen)):
        assert saved[0] < zf.flops_report(model, x)["saved"] < saved[-1]


# Which branch costs more per item depends on the sizes: at eshvision_xs (dims 32/64 over 49/16
# patches) an SSM patch's z projection and out_proj cost more than an attention patch's query,
# scores and output projection. In exp11_dynamic_tiny a softmax token runs the GDN too, plus
# its attention read; in exp11_read_tiny a skipping token runs no read (its key/value projection only).
@pytest.mark.parametrize("name, costly, cheap", [("eshvision_xs", "ssm", "attention"),
                                                 ("exp11_dynamic_tiny", "softmax", "gdn"),
                                                 ("exp11_read_tiny", "softmax", "skip")])
def test_per_item_routing_saves_more_as_items_leave_the_costlier_branch(name, costly, cheap):
    # With both branches in use in every image / sequence, the shared work (keys and values of
    # every item; the scan over every patch) is fixed, and each item moved from the costlier
    # per-item branch to the cheaper one saves the difference.
    model, x = _small_model(name)
    saved = []
    for share in (0.2, 0.4, 0.6, 0.8):
        with zoo.routing.force(model, _fraction_policy(costly, cheap, share)):
            saved.append(zf.flops_report(model, x)["saved"])
    assert all(0 < a < b for a, b in zip(saved, saved[1:])), saved


def test_report_units():
    model, x = _small_model("exp11_dynamic_tiny")
    r = zf.flops_report(model, x)
    assert r["unit"] == "FLOPs (2 x MACs)" and r["per"] == "token" and r["items"] == x.numel()
    assert r["executed_per_item"] == r["executed"] / x.numel()
    model, x = _small_model("dhvn_nano")
    r = zf.flops_report(model, x)
    assert r["per"] == "sample" and r["items"] == 2
    assert math.isclose(r["saved"], 1 - r["executed"] / r["dense"])
