"""Two ESH-Vision costs at its small shapes, each old form against the new one, interleaved:

  packed   `RelPosAttention.attend` for packed query rows: SDPA with the (B, heads, M, N)
           float bias as its mask (the old path, kept here) against baddbmm + softmax + bmm
           (`biased_attention`, now used for packed rows as for full ones). Half the patches
           are queries; keys and values are computed outside the clock.
  silu     the SSM's causal depthwise conv + SiLU: SiLU on the sliced, transposed view of the
           conv output (old, strided) against SiLU in place on the contiguous conv output,
           then the slice (new, `_SelectiveScan.forward`).

Shapes are eshvision_xs's at 28 px (batch 64: 7x7 and 4x4 grids) and eshvision_s's at 224 px
(batch 8: 14x14 and 7x7). ms are min / median / max over --rounds; "old / new" is the ratio of
medians; "max |diff|" compares the outputs.

    python experiments/archive/issue12_esh_small_shapes.py [--threads 1 2] [--rounds 40]
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from experiments._timing import interleaved, min_med_max, prepare  # noqa: E402
from zoo.families.eshvision.rel_attention import RelPosAttention  # noqa: E402
from zoo.ops.dispatch import gather_rows, pack_rows  # noqa: E402

# (batch, grid, dim, heads) of the attention; (sequences, length, d_inner) of the SSM conv
ATTENTION = [(64, (7, 7), 32, 1), (64, (4, 4), 64, 2), (8, (14, 14), 128, 2), (8, (7, 7), 256, 4)]
CONV = [(128, 49, 64), (128, 16, 128), (16, 196, 256), (16, 49, 512)]


def sdpa_packed(a: RelPosAttention, xq, kv, hw, pos):
    """The packed branch of `RelPosAttention.attend` before this change."""
    B, M, _ = xq.shape
    N = kv.shape[1]
    q = a._linear(xq, slice(0, a.dim)).view(B, M, a.num_heads, a.head_dim).transpose(1, 2)
    k, v = kv.view(B, N, 2, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=a.bias(hw, pos, xq.device).to(q.dtype))
    return a.proj(out.transpose(1, 2).reshape(B, M, a.dim))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=40)
    args = p.parse_args(argv)
    for threads in args.threads:
        print(prepare(threads))
        with torch.no_grad():
            for B, hw, D, h in ATTENTION:
                a = RelPosAttention(D, h, hw)
                a.init_weights()
                x = torch.randn(B, hw[0] * hw[1], D)
                packed = pack_rows(torch.rand(B, hw[0] * hw[1]) < 0.5)
                xq, kv = gather_rows(x, packed.index), a.kv(x)
                forms = {"old": lambda: sdpa_packed(a, xq, kv, hw, packed.index),
                         "new": lambda: a.attend(xq, kv, hw, packed.index)}
                diff = (forms["old"]() - forms["new"]()).abs().max().item()
                med, cells = min_med_max(interleaved(forms, args.rounds), ".3f")
                print(f"  packed attention B={B} grid={hw} dim={D} heads={h} M={packed.index.shape[1]}: {cells}  "
                      f"old / new {med['old'] / med['new']:.2f}  max |diff| {diff:.1e}")
            for Bt, L, Dm in CONV:
                conv = torch.nn.Conv1d(Dm, Dm, 4, groups=Dm, padding=3)
                x = torch.randn(Bt, L, Dm)
                forms = {"old": lambda: F.silu(conv(x.transpose(1, 2))[..., :L].transpose(1, 2)),
                         "new": lambda: F.silu(conv(x.transpose(1, 2)), inplace=True)[..., :L].transpose(1, 2)}
                diff = (forms["old"]() - forms["new"]()).abs().max().item()
                med, cells = min_med_max(interleaved(forms, args.rounds), ".3f")
                print(f"  conv + silu Bt={Bt} L={L} d_inner={Dm}: {cells}  old / new {med['old'] / med['new']:.2f}  "
                      f"max |diff| {diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
