"""ESH's relative-bias attention: the baddbmm + softmax + bmm form equals SDPA with the float mask."""
import pytest
import torch
import torch.nn.functional as F

from zoo.families.eshvision.rel_attention import RelPosAttention, biased_attention


@pytest.mark.parametrize("B,N,heads,d", [(3, 49, 4, 64), (2, 196, 2, 64), (2, 16, 4, 128), (1, 5, 1, 8)])
def test_biased_attention_equals_sdpa_with_a_float_mask(B, N, heads, d):
    g = torch.Generator().manual_seed(N)
    # the layouts the block hands over: q a transposed view, k and v a permuted view of one kv
    q = torch.randn(B, N, heads * d, generator=g).view(B, N, heads, d).transpose(1, 2).requires_grad_()
    kv = torch.randn(B, N, 2 * heads * d, generator=g).requires_grad_()
    bias = (torch.randn(heads, N, N, generator=g) * 2).requires_grad_()
    k, v = kv.view(B, N, 2, heads, d).permute(2, 0, 3, 1, 4)
    ours = biased_attention(q, k, v, bias)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)
    up = torch.randn(ref.shape, generator=g)
    got = torch.autograd.grad((ours * up).sum(), (q, kv, bias))
    want = torch.autograd.grad((ref * up).sum(), (q, kv, bias))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_block_output_is_unchanged_for_full_and_packed_queries():
    torch.manual_seed(0)
    attn = RelPosAttention(64, 4, (7, 7))
    attn.init_weights()
    x = torch.randn(4, 49, 64)
    kv = attn.kv(x)
    q = attn._linear(x, slice(0, 64)).view(4, 49, 4, 16).transpose(1, 2)
    k, v = kv.view(4, 49, 2, 4, 16).permute(2, 0, 3, 1, 4)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=attn.bias((7, 7), None, x.device))
    ref = attn.proj(ref.transpose(1, 2).reshape(4, 49, 64))
    torch.testing.assert_close(attn(x, (7, 7)), ref, atol=1e-6, rtol=1e-6)
    # packed query rows (the sparse path) still agree with the full attention's rows
    pos = torch.stack([torch.randperm(49)[:20].sort().values for _ in range(4)])
    rows = attn.attend(torch.take_along_dim(x, pos[..., None], 1), kv, (7, 7), pos)
    torch.testing.assert_close(rows, torch.take_along_dim(ref, pos[..., None], 1), atol=1e-6, rtol=1e-6)
