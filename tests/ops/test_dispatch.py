"""Per-row packing helpers of zoo.ops.dispatch."""
import torch
from hypothesis import given, settings, strategies as st

from zoo.ops.dispatch import gather_rows, pack_rows, unpack_rows


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(1, 30))
def test_pack_gather_unpack_round_trip(seed, B, N):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, 3, 2, generator=g)
    mask = torch.rand(B, N, generator=g) < torch.rand(B, 1, generator=g)
    packed = pack_rows(mask)
    rows = gather_rows(x, packed.index)
    assert rows.shape == (B, packed.index.shape[1], 3, 2)
    for b in range(B):
        pos = mask[b].nonzero().squeeze(1)
        n = int(packed.counts[b])
        assert n == len(pos) and bool(packed.valid[b, :n].all()) and not packed.valid[b, n:].any()
        assert torch.equal(packed.index[b, :n], pos)  # chosen positions first, in order
        assert torch.equal(rows[b], x[b, packed.index[b]])
    # writing the gathered rows back reproduces x at the chosen items and nowhere else
    back = unpack_rows(torch.zeros_like(x), packed, rows)
    torch.testing.assert_close(back, x * mask[..., None, None], atol=0, rtol=0)


def test_gather_rows_gradient_reaches_only_gathered_items():
    x = torch.randn(2, 5, 3, requires_grad=True)
    index = torch.tensor([[4, 0], [2, 2]])
    gather_rows(x, index).sum().backward()
    expected = torch.zeros(2, 5)
    expected[0, 4] = expected[0, 0] = 1
    expected[1, 2] = 2
    torch.testing.assert_close(x.grad, expected[..., None].expand(2, 5, 3))
