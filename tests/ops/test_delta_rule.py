"""The chunked gated delta rule against its token-loop reference."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.ops.delta_rule import (
    chunk_gated_delta_rule,
    gated_delta_rule_flops,
    naive_gated_delta_rule_flops,
    naive_recurrent_gated_delta_rule,
)

TOL = dict(atol=1e-5, rtol=1e-5)


def make_inputs(B, T, H, K, V, seed, g_min=-5.0, requires_grad=False):
    """Model-like magnitudes: q and k L2-normalised, beta in [0, 1], g in [g_min, 0]."""
    gen = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(B, T, H, K, generator=gen), dim=-1)
    k = F.normalize(torch.randn(B, T, H, K, generator=gen), dim=-1)
    v = torch.randn(B, T, H, V, generator=gen)
    g = torch.rand(B, T, H, generator=gen) * g_min
    beta = torch.rand(B, T, H, generator=gen)
    s0 = torch.randn(B, H, K, V, generator=gen)
    xs = [q, k, v, g, beta, s0]
    if requires_grad:
        xs = [x.requires_grad_() for x in xs]
    return xs


@settings(max_examples=40, deadline=None)
@given(
    B=st.integers(1, 2), T=st.integers(1, 80), H=st.integers(1, 3),
    K=st.sampled_from([4, 8, 16]), V=st.sampled_from([4, 8, 16]),
    chunk_size=st.sampled_from([4, 8, 16, 32, 64]),
    with_state=st.booleans(), seed=st.integers(0, 2**16),
)
def test_chunk_matches_naive(B, T, H, K, V, chunk_size, with_state, seed):
    q, k, v, g, beta, s0 = make_inputs(B, T, H, K, V, seed)
    s0 = s0 if with_state else None
    o_ref, s_ref = naive_recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=s0,
                                                    output_final_state=True)
    o, s = chunk_gated_delta_rule(q, k, v, g, beta, initial_state=s0, output_final_state=True,
                                  chunk_size=chunk_size)
    torch.testing.assert_close(o, o_ref, **TOL)
    torch.testing.assert_close(s, s_ref, **TOL)


@pytest.mark.parametrize("chunk_size", [32, 64, 128])
def test_chunk_matches_naive_target_head_sizes(chunk_size):
    # The benchmark's head sizes (K=64, V=128), a length that leaves a partial chunk.
    q, k, v, g, beta, s0 = make_inputs(1, 150, 2, 64, 128, seed=0)
    o_ref, s_ref = naive_recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=s0,
                                                    output_final_state=True)
    o, s = chunk_gated_delta_rule(q, k, v, g, beta, initial_state=s0, output_final_state=True,
                                  chunk_size=chunk_size)
    torch.testing.assert_close(o, o_ref, **TOL)
    torch.testing.assert_close(s, s_ref, **TOL)


def test_strong_decay_underflow_is_harmless():
    # g down to -60 per token: cumulative decays underflow fp32 inside a chunk.
    q, k, v, g, beta, s0 = make_inputs(1, 70, 2, 8, 8, seed=3, g_min=-60.0)
    o_ref, s_ref = naive_recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=s0,
                                                    output_final_state=True)
    o, s = chunk_gated_delta_rule(q, k, v, g, beta, initial_state=s0, output_final_state=True,
                                  chunk_size=32)
    torch.testing.assert_close(o, o_ref, **TOL)
    torch.testing.assert_close(s, s_ref, **TOL)


def test_strong_decay_gradients_are_finite():
    # Regression: the masked-out upper triangle of the intra-chunk decay is exp(+large);
    # it used to overflow to inf, and tril's zero gradient times inf made the backward NaN.
    q, k, v, g, beta, s0 = make_inputs(2, 64, 2, 8, 8, seed=7, g_min=-100.0, requires_grad=True)
    o, s = chunk_gated_delta_rule(q, k, v, g, beta, initial_state=s0, output_final_state=True,
                                  chunk_size=64)
    (o.sum() + s.sum()).backward()
    for x in (q, k, v, g, beta, s0):
        assert torch.isfinite(x.grad).all()


def test_no_output_state_unless_asked():
    q, k, v, g, beta, _ = make_inputs(1, 5, 1, 4, 4, seed=1)
    assert naive_recurrent_gated_delta_rule(q, k, v, g, beta)[1] is None
    assert chunk_gated_delta_rule(q, k, v, g, beta)[1] is None


def _with_masked_tokens(x, where, fill):
    """Insert a token holding `fill` before each position in `where` (on dim 1)."""
    parts, prev = [], 0
    for w in where:
        parts += [x[:, prev:w], torch.full_like(x[:, :1], fill)]
        prev = w
    return torch.cat(parts + [x[:, prev:]], dim=1)


@pytest.mark.parametrize("where", [[0], [3, 3, 7], [12]])
def test_masked_tokens_leave_state_unchanged(where):
    q, k, v, g, beta, s0 = make_inputs(2, 12, 2, 8, 8, seed=7)
    _, s_ref = naive_recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=s0,
                                                output_final_state=True)
    # Masked tokens: g=0 and beta=0, whatever their q/k/v hold.
    qm, km, vm = (_with_masked_tokens(x, where, 0.5) for x in (q, k, v))
    gm = _with_masked_tokens(g, where, 0.0)
    bm = _with_masked_tokens(beta, where, 0.0)
    _, s_naive = naive_recurrent_gated_delta_rule(qm, km, vm, gm, bm, initial_state=s0,
                                                  output_final_state=True)
    assert torch.equal(s_naive, s_ref)  # exactly: exp(0) == 1 and beta * anything == 0
    _, s_chunk = chunk_gated_delta_rule(qm, km, vm, gm, bm, initial_state=s0,
                                        output_final_state=True, chunk_size=4)
    torch.testing.assert_close(s_chunk, s_ref, **TOL)


def test_causal():
    q, k, v, g, beta, _ = make_inputs(1, 40, 2, 8, 8, seed=2)
    o1, _ = chunk_gated_delta_rule(q, k, v, g, beta, chunk_size=16)
    v2 = v.clone()
    v2[:, 20:] += 10.0
    o2, _ = chunk_gated_delta_rule(q, k, v2, g, beta, chunk_size=16)
    assert torch.equal(o1[:, :20], o2[:, :20])


def test_gradients_match_naive():
    ref = make_inputs(1, 21, 2, 8, 4, seed=5, requires_grad=True)
    fast = [x.detach().clone().requires_grad_() for x in ref]
    w = torch.randn(1, 21, 2, 4)
    for xs, fn in ((ref, naive_recurrent_gated_delta_rule),
                   (fast, lambda *a, **kw: chunk_gated_delta_rule(*a, **kw, chunk_size=8))):
        o, s = fn(*xs[:5], initial_state=xs[5], output_final_state=True)
        ((o * w).sum() + s.square().sum()).backward()
    for a, b in zip(ref, fast):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-4, rtol=1e-4)


def test_non_contiguous_inputs():
    q, k, v, g, beta, s0 = make_inputs(2, 19, 2, 8, 4, seed=6)
    nc = [x.transpose(1, 2).contiguous().transpose(1, 2) for x in (q, k, v, g, beta)]
    assert not nc[0].is_contiguous()
    o_ref, s_ref = naive_recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=s0,
                                                    output_final_state=True)
    o, s = chunk_gated_delta_rule(*nc, initial_state=s0, output_final_state=True, chunk_size=8)
    torch.testing.assert_close(o, o_ref, **TOL)
    torch.testing.assert_close(s, s_ref, **TOL)


def test_dtype_round_trip():
    q, k, v, g, beta, _ = make_inputs(1, 9, 1, 8, 8, seed=4)
    args = [x.to(torch.bfloat16) for x in (q, k, v)] + [g, beta]
    o_ref, _ = naive_recurrent_gated_delta_rule(*args)
    o, _ = chunk_gated_delta_rule(*args, chunk_size=4)
    assert o.dtype == o_ref.dtype == torch.bfloat16
    torch.testing.assert_close(o.float(), o_ref.float(), atol=1e-2, rtol=1e-2)


def test_flops_by_hand():
    # B=1, T=5, H=2, K=2, V=3, chunk 4 -> 2 chunks (the second padded). Per chunk:
    # [Q;K]K^T 4*16*2=128; trsm 16*3=48; T~(bK) 2*16*2=64; (D*T~)(bV) 2*16*3=96;
    # U and S1 4*4*2*3=96; O 2*4*(4+2)*3=144 -> 576, times B*H*N = 4 -> 2304
    assert gated_delta_rule_flops(1, 5, 2, 2, 3, chunk_size=4) == 2304
    # naive: per token and head 7*K*V + 3*V = 42 + 9 = 51; times 5 tokens * 2 heads
    assert naive_gated_delta_rule_flops(1, 5, 2, 2, 3) == 510


@pytest.mark.parametrize("with_state", [False, True])
def test_inference_and_autograd_paths_agree(with_state):
    # Without autograd the chunk loop writes into preallocated buffers in place; with it, the
    # loop stays out of place. Both must give the same result (and leave the inputs alone).
    xs = make_inputs(2, 45, 2, 8, 8, seed=11)
    s0 = xs[5] if with_state else None
    copies = [x.clone() for x in xs]
    with torch.no_grad():
        o_fast, s_fast = chunk_gated_delta_rule(*xs[:5], initial_state=s0,
                                                output_final_state=True, chunk_size=16)
    grads = [x.detach().clone().requires_grad_() for x in xs]
    o_grad, s_grad = chunk_gated_delta_rule(*grads[:5], initial_state=grads[5] if with_state else None,
                                            output_final_state=True, chunk_size=16)
    torch.testing.assert_close(o_fast, o_grad.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(s_fast, s_grad.detach(), atol=1e-6, rtol=1e-6)
    for x, c in zip(xs, copies):
        assert torch.equal(x, c)


@pytest.mark.parametrize("chunk_size", [None, 16, 64])
def test_flop_formula_is_what_the_op_executes(chunk_size):
    # the formula's default chunk is the op's, and its count is the matmuls torch sees run
    # (FlopCounterMode counts bmm/baddbmm; the unit-triangular solve is the formula's C*C*(C-1)).
    # With autograd: the inference loop's in-place baddbmm_ is invisible to FlopCounterMode.
    from torch.utils.flop_counter import FlopCounterMode
    B, T, H, K, V = 1, 100, 2, 16, 8
    q, k, v, g, beta, s0 = make_inputs(B, T, H, K, V, seed=2, requires_grad=True)
    kw = {} if chunk_size is None else dict(chunk_size=chunk_size)
    counter = FlopCounterMode(display=False)
    with counter:
        chunk_gated_delta_rule(q, k, v, g, beta, initial_state=s0, **kw)
    C = chunk_size or 32
    trsm = B * H * (-(-T // C)) * C * C * (C - 1)
    assert counter.get_total_flops() + trsm == gated_delta_rule_flops(B, T, H, K, V, **kw)
