"""Fast selective scans (Mamba-1 and SSD) against their token-loop references."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.ops.selective_scan import (
    naive_selective_scan,
    naive_ssd_scan,
    selective_scan,
    selective_scan_flops,
    ssd_scan,
    ssd_scan_flops,
)

TOL = dict(atol=1e-5, rtol=1e-5)


def make_inputs(Bt, L, Dm, N, seed, H=None, requires_grad=False):
    """Model-like magnitudes: delta = softplus(.), A in [-4, -0.5], unit-scale u, B, C, z.

    With H given, delta is per head (Bt, L, H) and A is (H,), as the SSD scan takes them.
    """
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(Bt, L, Dm, generator=gen)
    dshape, ashape = ((Bt, L, Dm), (Dm, N)) if H is None else ((Bt, L, H), (H,))
    delta = F.softplus(torch.randn(dshape, generator=gen) - 1.0)
    A = -(0.5 + 3.5 * torch.rand(ashape, generator=gen))
    B = torch.randn(Bt, L, N, generator=gen)
    C = torch.randn(Bt, L, N, generator=gen)
    D = torch.randn(Dm, generator=gen)
    z = torch.randn(Bt, L, Dm, generator=gen)
    xs = [u, delta, A, B, C, D, z]
    if requires_grad:
        xs = [x.requires_grad_() for x in xs]
    return xs


@settings(max_examples=40, deadline=None)
@given(
    Bt=st.integers(1, 3), L=st.integers(1, 70), Dm=st.sampled_from([1, 4, 8]),
    N=st.sampled_from([1, 3, 4]), block=st.sampled_from([1, 4, 16, 32]),
    use_D=st.booleans(), use_z=st.booleans(), reverse=st.booleans(), seed=st.integers(0, 2**16),
)
def test_selective_scan_matches_naive(Bt, L, Dm, N, block, use_D, use_z, reverse, seed):
    u, delta, A, B, C, D, z = make_inputs(Bt, L, Dm, N, seed)
    D, z = (D if use_D else None), (z if use_z else None)
    y_ref = naive_selective_scan(u, delta, A, B, C, D, z, reverse=reverse)
    y = selective_scan(u, delta, A, B, C, D, z, reverse=reverse, block=block)
    torch.testing.assert_close(y, y_ref, **TOL)


@settings(max_examples=40, deadline=None)
@given(
    Bt=st.integers(1, 3), L=st.integers(1, 70), H=st.integers(1, 3), P=st.sampled_from([1, 2, 4]),
    N=st.sampled_from([1, 3, 4]), chunk_size=st.sampled_from([1, 4, 16, 64]),
    use_D=st.booleans(), use_z=st.booleans(), reverse=st.booleans(), seed=st.integers(0, 2**16),
)
def test_ssd_scan_matches_naive(Bt, L, H, P, N, chunk_size, use_D, use_z, reverse, seed):
    u, delta, A, B, C, D, z = make_inputs(Bt, L, H * P, N, seed, H=H)
    D, z = (D if use_D else None), (z if use_z else None)
    y_ref = naive_ssd_scan(u, delta, A, B, C, D, z, reverse=reverse, head_dim=P)
    y = ssd_scan(u, delta, A, B, C, D, z, reverse=reverse, head_dim=P, chunk_size=chunk_size)
    torch.testing.assert_close(y, y_ref, **TOL)


def test_target_sizes_short():
    # The benchmark's channel and state sizes on a short sequence.
    u, delta, A, B, C, D, z = make_inputs(2, 50, 256, 16, seed=0)
    torch.testing.assert_close(selective_scan(u, delta, A, B, C, D, z),
                               naive_selective_scan(u, delta, A, B, C, D, z), **TOL)
    u, delta, A, B, C, D, z = make_inputs(2, 50, 256, 16, seed=0, H=4)
    torch.testing.assert_close(ssd_scan(u, delta, A, B, C, D, z),
                               naive_ssd_scan(u, delta, A, B, C, D, z), **TOL)


@pytest.mark.parametrize("chunk_size", [4, 16])
def test_ssd_long_sequence_crosses_segments(chunk_size):
    # ssd_scan works through 256-token segments; 600 tokens cross two segment boundaries.
    u, delta, A, B, C, D, z = make_inputs(1, 600, 4, 3, seed=7, H=2)
    torch.testing.assert_close(ssd_scan(u, delta, A, B, C, D, z, chunk_size=chunk_size),
                               naive_ssd_scan(u, delta, A, B, C, D, z), **TOL)


@pytest.mark.parametrize("ssd", [False, True])
def test_reverse_is_flip(ssd):
    u, delta, A, B, C, D, z = make_inputs(2, 19, 4, 3, seed=1, H=2 if ssd else None)
    for fn in ((naive_ssd_scan, ssd_scan) if ssd else (naive_selective_scan, selective_scan)):
        y_rev = fn(u, delta, A, B, C, D, z, reverse=True)
        flip = [x.flip(1) for x in (u, delta)] + [A] + [x.flip(1) for x in (B, C)]
        y_flip = fn(*flip, D, z.flip(1)).flip(1)
        torch.testing.assert_close(y_rev, y_flip, **TOL)


def test_ssd_with_one_head_per_channel_is_mamba1_with_shared_decay():
    # H = Dm heads of size 1 and A[d, n] = A_head[d]: the two scans define the same thing.
    u, delta, A, B, C, D, z = make_inputs(2, 23, 4, 3, seed=2, H=4)
    y_ssd = ssd_scan(u, delta, A, B, C, D, z, chunk_size=8)
    y_s6 = selective_scan(u, delta, A[:, None].expand(4, 3), B, C, D, z)
    torch.testing.assert_close(y_ssd, y_s6, **TOL)


def test_strong_decay_underflow_is_harmless():
    u, delta, A, B, C, D, z = make_inputs(1, 40, 4, 3, seed=3, H=2)
    delta = delta * 30.0  # per-token log-decays down to about -100s
    torch.testing.assert_close(ssd_scan(u, delta, A, B, C, D, z, chunk_size=16),
                               naive_ssd_scan(u, delta, A, B, C, D, z), **TOL)


def test_strong_decay_gradients_are_finite():
    """Regression: the masked upper triangle of the SSD decay overflowed to inf, and its zero
    gradient times inf made every input gradient NaN (eshvision_xs_soft diverged in training)."""
    ref = make_inputs(1, 40, 4, 3, seed=5, H=2, requires_grad=True)
    with torch.no_grad():
        ref[1].mul_(400.0)  # summed log-decays over a chunk reach thousands: exp(+s) overflows
    fast = [x.detach().clone().requires_grad_() for x in ref]
    w = torch.randn(1, 40, 4)
    (naive_ssd_scan(*ref) * w).sum().backward()
    (ssd_scan(*fast, chunk_size=16) * w).sum().backward()
    for a, b in zip(ref, fast):
        assert torch.isfinite(b.grad).all()
        torch.testing.assert_close(b.grad, a.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("ssd", [False, True])
def test_gradients_match_naive(ssd):
    ref = make_inputs(2, 13, 4, 3, seed=4, H=2 if ssd else None, requires_grad=True)
    fast = [x.detach().clone().requires_grad_() for x in ref]
    w = torch.randn(2, 13, 4)
    naive, fn = (naive_ssd_scan, ssd_scan) if ssd else (naive_selective_scan, selective_scan)
    (naive(*ref) * w).sum().backward()
    (fn(*fast) * w).sum().backward()
    for a, b in zip(ref, fast):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-4, rtol=1e-4)


def test_non_contiguous_inputs():
    # Models hand over views (e.g. channels-first conv outputs transposed back).
    u, delta, A, B, C, D, z = make_inputs(2, 21, 4, 3, seed=6)
    nc = [x.transpose(1, 2).contiguous().transpose(1, 2) for x in (u, delta, B, C, z)]
    assert not nc[0].is_contiguous()
    torch.testing.assert_close(selective_scan(nc[0], nc[1], A, nc[2], nc[3], D, nc[4]),
                               naive_selective_scan(u, delta, A, B, C, D, z), **TOL)
    u, delta, A, B, C, D, z = make_inputs(2, 21, 4, 3, seed=6, H=2)
    nc = [x.transpose(1, 2).contiguous().transpose(1, 2) for x in (u, delta, B, C, z)]
    torch.testing.assert_close(ssd_scan(nc[0], nc[1], A, nc[2], nc[3], D, nc[4], chunk_size=8),
                               naive_ssd_scan(u, delta, A, B, C, D, z), **TOL)


def test_dtype_round_trip():
    u, delta, A, B, C, D, z = make_inputs(1, 7, 4, 3, seed=5)
    y = selective_scan(u.to(torch.bfloat16), delta, A, B, C, D, z)
    assert y.dtype == torch.bfloat16


def test_flops_by_hand():
    # Mamba-1: 7 per (token, channel, state) + 1 per (token, channel): Bt=2, L=3, Dm=4, N=5
    assert selective_scan_flops(2, 3, 4, 5) == 7 * 2 * 3 * 4 * 5 + 2 * 3 * 4
    # SSD, Bt=1, L=5, Dm=4, N=3, H=2 (P=2), chunk 4 -> 2 chunks:
    # per chunk: CB 2*16*3=96; per head: intra 2*16*2=64, states + C@h0 4*4*2*3=96, carry 2*2*3=12
    # -> 96 + 2*(64+96+12) = 440 per chunk, 880 in all
    assert ssd_scan_flops(1, 5, 4, 3, 2, chunk_size=4) == 880
    # a sequence shorter than a chunk is one chunk of its own length, not padded to 16:
    # L=3 -> Q=3: CB 2*9*3=54; per head intra 2*9*2=36, states + C@h0 4*3*2*3=72, carry 12
    assert ssd_scan_flops(1, 3, 4, 3, 2, chunk_size=16) == 54 + 2 * (36 + 72 + 12)


@pytest.mark.parametrize("L", [1, 2, 4, 15])
def test_ssd_short_sequence_is_one_unpadded_chunk(L):
    # ESH's late stages scan 1x1 to 4x4 grids; padded to 16 tokens they cost as much as L=16
    u, delta, A, B, C, D, z = make_inputs(3, L, 8, 4, seed=L, H=2)
    y = ssd_scan(u, delta, A, B, C, D, z, chunk_size=16)
    torch.testing.assert_close(y, naive_ssd_scan(u, delta, A, B, C, D, z), **TOL)
    # the same arithmetic as an explicit chunk of L tokens
    assert torch.equal(y, ssd_scan(u, delta, A, B, C, D, z, chunk_size=L))


@pytest.mark.parametrize("L,use_D,use_z", [(45, True, True), (48, False, False), (300, True, False)])
def test_ssd_inference_and_autograd_paths_agree(L, use_D, use_z):
    # without autograd the decay matrix and the carried states are built in place; with it, out of
    # place: the same result either way, the inputs left alone, and the output a fresh tensor
    xs = make_inputs(2, L, 8, 4, seed=L, H=2)
    D, z = (xs[5] if use_D else None), (xs[6] if use_z else None)
    copies = [x.clone() for x in xs]
    with torch.no_grad():
        y_fast = ssd_scan(*xs[:5], D, z, chunk_size=16)
    grads = [x.detach().clone().requires_grad_() for x in xs]
    y_grad = ssd_scan(*grads[:5], grads[5] if use_D else None, grads[6] if use_z else None, chunk_size=16)
    torch.testing.assert_close(y_fast, y_grad.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(y_fast, naive_ssd_scan(*xs[:5], D, z), **TOL)
    assert y_fast.is_contiguous() and y_fast.shape == (2, L, 8)
    for x, c in zip(xs, copies):
        assert torch.equal(x, c)
