"""ESH-Vision's block: a per-patch router between attention and an SSM, then an MLP, and ACT
pondering for the attention patches (`zoo.families.eshvision.model` builds the model from these).

    hard (default): out = x + [alpha > 0.5] a + [alpha <= 0.5] s   (straight-through on alpha)
    soft (seed):    out = x + alpha a + (1 - alpha) s

Sparse execution runs each branch on its own patches only (packed rows for attention, the
images that hold SSM patches for the scan); dense execution runs both and mixes them.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn
from timm.layers import DropPath, Mlp, SwiGLU

from ...layers.routed import dense_mix, dense_under_compile, rows_with, single_choice, taken_weight, unselected
from ...layers.routed_block import RoutedBlock
from ...layers.router import Route, Router
from ...ops.dispatch import Packed, gather_items, gather_rows, pack_rows, packed_rows_index, select_items, unpack_rows
from .act import ACTPonder
from .rel_attention import RelPosAttention
from .vssm import BidirectionalVSSM

__all__ = ["ESHBlock"]


def _take(x: torch.Tensor, packed: Packed) -> torch.Tensor:
    """(B, N, C) -> (B, M, C): each image's packed patches."""
    return gather_rows(x, packed.index)


class ESHBlock(RoutedBlock):
    """One ESH-Vision block. `policy` None: routed per patch; "ssm" / "attention": a static
    block with that branch alone and no router (a static per-layer plan; an attention block
    lets every patch ponder, as a routed patch with alpha = 1 would).

    Its routed part (`run_routed`, `static_choice`) takes (x, LN(x), (h, w)) and gives the
    residual stream after the mixer, before the MLP and pondering."""
    choices = ("ssm", "attention")

    def __init__(self, dim: int, num_heads: int, grid: Tuple[int, int], spec, layer: str,
                 drop_path: float = 0.0, policy: Optional[str] = None):
        super().__init__()
        # on the mixer's update and the MLP's; ACT's extra steps refine kept patches and keep theirs
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.policy = policy
        self.norm1 = nn.LayerNorm(dim)
        if policy is None:
            router_spec = spec.router if spec.router.hidden else spec.router.replace(hidden=max(dim // 4, 32))
            # full form: attention, because ACT ponders attention patches only; a dense reference
            # forced to "ssm" would drop the ponder steps that hard routing takes
            self.router = Router(dim, self.choices, "patch", router_spec, layer=layer,
                                 binary=True, extra_features=1, full="attention")
        else:
            self.router = None
        self.capacity = spec.router.capacity if policy is None else None
        use_attn, use_ssm = policy in (None, "attention"), policy in (None, "ssm")
        self.attn = RelPosAttention(dim, num_heads, grid, spec.attention.qkv_bias) if use_attn else None
        self.ssm = BidirectionalVSSM(dim, spec.ssm) if use_ssm else None
        self.branch_norm = spec.branch_norm
        if spec.branch_norm:  # the seed's LN(branch(n) + n) on each branch's update
            self.norm_attn = nn.LayerNorm(dim) if use_attn else None
            self.norm_ssm = nn.LayerNorm(dim) if use_ssm else None
        self.norm2 = nn.LayerNorm(dim)
        hidden = spec.mlp.hidden or int(dim * spec.mlp.ratio)
        self.mlp = SwiGLU(dim, hidden) if spec.mlp.act == "swiglu" else Mlp(dim, hidden)
        self.act = ACTPonder(dim, spec.act) if spec.act.enabled and use_attn else None
        self.ponder_threshold = spec.act.threshold
        if self.router is not None:
            n = grid[0] * grid[1]
            self.router.set_costs(self.choice_costs(n), items=n)

    def choice_costs(self, n: int) -> dict:
        """FLOPs a patch spends on each choice when the whole image (n patches) takes it, and
        nothing else: pondering is not part of the attention choice (it happens only to attention
        patches whose alpha passes the ponder threshold, and its cost is `ponder_costs`). In a
        mixed image the SSM's scan and attention's keys/values still run over every patch
        (module docstring of `zoo.families.eshvision.model`), so a mixed image costs more than the sum."""
        return dict(ssm=self.ssm.flops_per_patch(n), attention=self.attn.flops_per_patch(n))

    def ponder_costs(self, n: int) -> dict:
        """What ACT pondering executes, in FLOPs, at n patches per image. The steps run on packed
        rows (`zoo.ops.dispatch.pack_rows`: each image's pondering patches, padded to the most in
        any image of the step), and padding rows are computed like the others:

        * `image`: once per image with a pondering patch, the first step's keys and values of
          every patch, whose states the block has just changed;
        * `step`: per packed row and step, its query, attention over n keys, output projection,
          FFN and halting unit;
        * `refresh`: per packed row of a step that another step follows, its new key/value row.

        `ponder_flops` adds them up for the steps a forward took."""
        if self.act is None:
            return dict(image=0, step=0, refresh=0)
        D = self.attn.dim
        ffn = sum(2 * m.in_features * m.out_features for m in self.mlp.modules() if isinstance(m, nn.Linear))
        kv_row = 4 * D * D
        return dict(image=n * kv_row, step=self.attn.flops_per_patch(n) - kv_row + ffn + 2 * D, refresh=kv_row)

    def ponder_flops(self, steps: torch.Tensor) -> float:
        """FLOPs pondering executed, from the extra steps each patch took ((B, N), `ACTOutput.steps`)."""
        costs = self.ponder_costs(steps.shape[1])
        images = int((steps > 0).any(dim=1).sum())  # ACT ponders on these images only
        total = float(images) * costs["image"]
        rows = []
        for k in range(1, int(steps.max()) + 1 if steps.numel() else 1):
            # every step packs every one of those images, padded to its longest running row
            rows.append(images * int((steps >= k).sum(dim=1).max()))
        total += sum(rows) * costs["step"] + sum(rows[:-1]) * costs["refresh"]
        return total

    def forward(self, x: torch.Tensor, entropy: torch.Tensor, hw: Tuple[int, int]):
        """x (B, N, D), entropy (B, N) -> (out, route or None for a static block, `ACTOutput` or
        None without ACT); alpha = route.probs[..., 1]."""
        n = self.norm1(x)
        if self.router is None:
            return self._static(x, n, hw)
        route = self.router(torch.cat([n, entropy.unsqueeze(-1).to(n.dtype)], dim=-1))
        mixed = self.dispatch((x, n, hw), route)
        out = mixed + self.drop_path(self.mlp(self.norm2(mixed)))
        if self.act is None:
            return out, route, None
        ponder = route.mask("attention") & (route.probs[..., route.index("attention")] > self.ponder_threshold)
        res = self.act(out, ponder, _PonderStep(self, hw), rows=self._ponder_rows(route, out))
        return res.output, route, res

    def _ponder_rows(self, route: Route, out: torch.Tensor) -> Optional[torch.Tensor]:
        """Fixed rows for ACT to ponder on in shapes known before the data (docs/DESIGN.md,
        "Compiled execution"), or None for its packing: in fixed-capacity training the k
        attention patches of each image (pondering patches are attention patches); at eval
        under torch.compile every patch."""
        if route.selected is not None:
            return route.selected
        if self.capacity is not None and torch.compiler.is_compiling():
            B, N = out.shape[:2]
            return torch.arange(N, device=out.device).expand(B, N)
        return None

    def _static(self, x, n, hw):
        mixed = self.static_choice(self.policy, (x, n, hw))
        out = mixed + self.drop_path(self.mlp(self.norm2(mixed)))
        if self.act is None:
            return out, None, None
        res = self.act(out, torch.ones(out.shape[:2], dtype=torch.bool, device=out.device), _PonderStep(self, hw))
        return res.output, None, res

    def attn_update(self, out: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """What the attention branch adds to the residual, from its output for patches n."""
        return self.norm_attn(out + n) if self.branch_norm else out

    def ssm_update(self, out: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return self.norm_ssm(out + n) if self.branch_norm else out

    def run_routed(self, inputs: tuple, route: Route) -> torch.Tensor:
        x, n, hw = inputs
        if route.sparse and not dense_under_compile(route, self.capacity):
            return self._mix_sparse(x, n, route, hw)
        return self._mix_dense(x, n, route, hw)

    def static_choice(self, choice: str, inputs: tuple) -> torch.Tensor:
        x, n, hw = inputs
        if choice == "attention":
            return x + self.drop_path(self.attn_update(self.attn(n, hw), n))
        return x + self.drop_path(self.ssm_update(self.ssm(n, hw), n))

    def _mix_dense(self, x, n, route: Route, hw):
        return x + self.drop_path(dense_mix(route, {"attention": self.attn_update(self.attn(n, hw), n),
                                                    "ssm": self.ssm_update(self.ssm(n, hw), n)}))

    def _mix_sparse(self, x, n, route: Route, hw):
        """Each patch's update comes from its own branch only; one multiply by the taken
        weight and one add finish the block, as in the dense combine."""
        only = None if route.selected is not None else single_choice(route)
        if only == "attention":
            update = self.attn_update(self.attn(n, hw), n)
        elif only == "ssm":
            update = self.ssm_update(self.ssm(n, hw), n)
        elif route.selected is not None:
            update = self._fixed_update(x, n, route.selected, hw)
        else:
            update = self._split_update(x, n, route.mask("attention"), hw)
        update = self.drop_path(update)
        w = taken_weight(route, x.dtype)
        return x + update if w is None else torch.addcmul(x, update, w)

    def _split_update(self, x, n, attn_mask, hw):
        """Both branches have patches. Every patch is in exactly one branch, so the two write
        disjoint rows of one buffer that covers all rows (plus scratch rows for the packing's
        padding). SSM first: its full scan is the largest temporary, and it then runs before
        any attention buffer exists."""
        B, N, D = x.shape
        rows = B * N
        ssm_mask = ~attn_mask
        images, mask = rows_with(ssm_mask)
        n_img = n if images is None else n.index_select(0, images)
        local = select_items(mask)
        y = gather_items(self.ssm.scan(n_img, hw), local, item_dims=2)  # the full scan freed here
        n_items = gather_items(n_img, local, item_dims=2)
        s = self.ssm_update(self.ssm.gate(y, n_items), n_items)
        ssm_index = local if images is None else select_items(ssm_mask)
        del y, n_items, n_img

        images, mask = rows_with(attn_mask)
        n_img = n if images is None else n.index_select(0, images)
        packed = pack_rows(mask)
        nq = gather_rows(n_img, packed.index)
        a = self.attn_update(self.attn.attend(nq, self.attn.kv(n_img), hw, packed.index), nq)
        b, M = packed.index.shape
        # padding entries go to scratch rows past the end, each to its own
        index = packed_rows_index(packed, N, images, total_rows=rows)
        # in place into one fresh buffer (autograd-safe: index_copy_ saves no values)
        update = x.new_empty(rows + b * M, D)
        update.index_copy_(0, index, a.reshape(b * M, D).to(x.dtype))
        update.index_copy_(0, ssm_index, s.to(x.dtype))
        return update[:rows].view(B, N, D)


    def _fixed_update(self, x, n, selected, hw):
        """`_split_update` for a fixed-capacity route in training, in shapes known before the
        data (docs/DESIGN.md, "Compiled execution"): the k `selected` patches of each image on
        attention, the other N - k on the SSM. Every image holds patches of both branches (k is
        at least 1 and at most N - 1), so the scan and the keys/values span every image, as
        `_split_update` computes them then; the same ops in the same order, with no padding."""
        B, N, D = x.shape
        start = (torch.arange(B, device=x.device) * N).unsqueeze(1)
        ssm_index = (unselected(selected, N) + start).reshape(-1)
        y = gather_items(self.ssm.scan(n, hw), ssm_index, item_dims=2)
        n_items = gather_items(n, ssm_index, item_dims=2)
        s = self.ssm_update(self.ssm.gate(y, n_items), n_items)
        del y, n_items
        nq = gather_rows(n, selected)
        a = self.attn_update(self.attn.attend(nq, self.attn.kv(n), hw, selected), nq)
        update = x.new_empty(B * N, D)   # every row written once (autograd-safe: index_copy_ saves no values)
        update.index_copy_(0, (selected + start).reshape(-1), a.reshape(-1, D).to(x.dtype))
        update.index_copy_(0, ssm_index, s.to(x.dtype))
        return update.view(B, N, D)


class _PonderStep:
    """One ACT step for the packed pondering patches: the block's attention path + FFN.

    Queries are the pondering patches; keys/values are the current states of all patches of
    the image. Only rows that changed since the last step get new keys/values.
    """

    def __init__(self, block: ESHBlock, hw):
        self.block, self.hw = block, hw
        self.kv = None
        self.changed = None

    def __call__(self, states: torch.Tensor, packed: Packed) -> torch.Tensor:
        blk = self.block
        if self.kv is None:
            self.kv = blk.attn.kv(blk.norm1(states))
        else:
            rows = blk.attn.kv(blk.norm1(_take(states, self.changed)))
            self.kv = unpack_rows(self.kv, self.changed, rows)
        s = _take(states, packed)
        nq = blk.norm1(s)
        s = s + blk.attn_update(blk.attn.attend(nq, self.kv, self.hw, packed.index), nq)
        self.changed = packed
        return s + blk.mlp(blk.norm2(s))
