"""Make the recurrent ops visible to `torch.utils.flop_counter.FlopCounterMode`.

The scan and delta-rule ops loop in Python over chunks or tokens, and part of their work is
elementwise or a triangular solve, which the counter does not count; what it would see of
their inner matmuls depends on how each op happens to be written. So while FLOPs are being
counted (`counting()`), the public op names dispatch to `torch.library` custom ops whose
FLOP formulas are the ones written beside each op:

    zoo::gated_delta_rule   -> delta_rule.chunk.gated_delta_rule_flops
    zoo::selective_scan     -> selective_scan.chunk.selective_scan_flops
    zoo::ssd_scan           -> selective_scan.chunk.ssd_scan_flops

A TorchDispatchMode runs an op's kernel with the mode switched off, so the aten calls inside
a custom op are not counted a second time. Outside `counting()` nothing goes through the
custom ops (they have no autograd formula, and the wrapper would only cost time): the package
`__init__`s call the plain functions directly.

This module also teaches the counter the CPU SDPA kernel
(`aten._scaled_dot_product_flash_attention_for_cpu`), which it otherwise counts as 0, with
torch's own SDPA formula (QK^T and AV over the full score matrix, causal or not, as torch
counts every SDPA kernel and as thop does), and `aten.mkldnn_convolution`, which the zoo's
1x1 convs call directly at inference, with torch's own conv formula.

Two attention conventions (`CONVENTIONS`), chosen in one place, `flop_convention(name)` (a
context variable, so per thread and per task), and read by every formula that counts attention
(the CPU SDPA kernel here, `CausalSelfAttention.flops_per_token`, `sorted_query_pairs`):
  * "allowed" (the default, the zoo's long-standing count): QK^T and AV over the (query, key)
    pairs the mask allows, `attention_pairs`;
  * "computed": the pairs the CPU kernel really multiplies, `cpu_sdpa_pairs`: whole key blocks,
    masked entries included. Everything else the counter counts (matmuls, the scan and delta-rule
    formulas, padding of packed rows) already is what runs, so the two differ only in attention.
"""
from __future__ import annotations

import contextlib
import contextvars
import inspect
from typing import Callable, Iterator, Optional, Tuple

import torch
from torch.utils import flop_counter as _fc

from .delta_rule import chunk as _delta_chunk
from .selective_scan import chunk as _scan_chunk

__all__ = ["counting", "is_counting", "declare_flops", "counted_gated_delta_rule",
           "counted_selective_scan", "counted_ssd_scan", "attention_pairs", "cpu_sdpa_pairs",
           "CONVENTIONS", "flop_convention", "current_convention", "check_convention", "convention_pairs"]

_depth = 0


@contextlib.contextmanager
def counting() -> Iterator[None]:
    """While active, `chunk_gated_delta_rule`, `selective_scan` and `ssd_scan` run as custom ops
    the FLOP counter understands. Forward only (no autograd through them)."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1


def is_counting() -> bool:
    return _depth > 0


# ----------------------------------------------------------------------------- custom ops
# The ops are called with plain fp32/bf16 tensors; outputs are fresh tensors (never views of
# inputs), as custom_op requires.

@torch.library.custom_op("zoo::gated_delta_rule", mutates_args=())
def _gated_delta_rule_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
                         beta: torch.Tensor, scale: Optional[float], initial_state: Optional[torch.Tensor],
                         output_final_state: bool, chunk_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    o, final = _delta_chunk.chunk_gated_delta_rule(q, k, v, g, beta, scale=scale, initial_state=initial_state,
                                                   output_final_state=output_final_state,
                                                   chunk_size=chunk_size)
    # a custom op cannot return None: an empty tensor stands for "no final state"
    return o, (final if final is not None else q.new_empty(0))


@torch.library.custom_op("zoo::selective_scan", mutates_args=())
def _selective_scan_op(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                       C: torch.Tensor, D: Optional[torch.Tensor], z: Optional[torch.Tensor],
                       reverse: bool, block: int) -> torch.Tensor:
    return _scan_chunk.selective_scan(u, delta, A, B, C, D, z, reverse=reverse, block=block)


@torch.library.custom_op("zoo::ssd_scan", mutates_args=())
def _ssd_scan_op(u: torch.Tensor, delta: torch.Tensor, A_head: torch.Tensor, B: torch.Tensor,
                 C: torch.Tensor, D: Optional[torch.Tensor], z: Optional[torch.Tensor], reverse: bool,
                 head_dim: Optional[int], chunk_size: int) -> torch.Tensor:
    return _scan_chunk.ssd_scan(u, delta, A_head, B, C, D, z, reverse=reverse, head_dim=head_dim,
                                chunk_size=chunk_size)


@torch.library.custom_op("zoo::declared_flops", mutates_args=())
def _declared_flops_op(anchor: torch.Tensor, flops: int) -> torch.Tensor:
    """Computes nothing: carries `flops` to the counter for work it cannot see in any op."""
    return anchor.new_empty(0)


def declare_flops(anchor: torch.Tensor, flops: int) -> None:
    """While counting, add `flops` to the active FlopCounterMode (attributed to the running
    module). For modules whose arithmetic is elementwise code the counter ignores but that
    is, by meaning, a counted layer (e.g. a depthwise conv written as shifted multiply-adds)."""
    if is_counting():
        torch.ops.zoo.declared_flops(anchor, int(flops))


def _register(target, formula: Callable, get_raw: bool = False) -> None:
    # guarded: a torch release that learns one of these ops itself keeps its own formula
    if target not in _fc.flop_registry:
        _fc.register_flop_formula(target, get_raw=get_raw)(formula)


def _gated_delta_rule_flops(q, k, v, g, beta, scale, initial_state, output_final_state, chunk_size,
                            *, out_shape=None, **kwargs) -> int:
    B, T, H, K = q
    return _delta_chunk.gated_delta_rule_flops(B, T, H, K, v[-1], chunk_size=chunk_size)


def _selective_scan_flops(u, delta, A, B, C, D, z, reverse, block, *, out_shape=None, **kwargs) -> int:
    Bt, L, Dm = u
    return _scan_chunk.selective_scan_flops(Bt, L, Dm, B[-1])


def _ssd_scan_flops(u, delta, A_head, B, C, D, z, reverse, head_dim, chunk_size, *, out_shape=None,
                    **kwargs) -> int:
    Bt, L, Dm = u
    return _scan_chunk.ssd_scan_flops(Bt, L, Dm, B[-1], delta[-1], chunk_size=chunk_size)


def _declared_flops(anchor, flops, *, out_shape=None, **kwargs) -> int:
    return flops


_register(torch.ops.zoo.declared_flops, _declared_flops)
_register(torch.ops.zoo.gated_delta_rule, _gated_delta_rule_flops)
_register(torch.ops.zoo.selective_scan, _selective_scan_flops)
_register(torch.ops.zoo.ssd_scan, _ssd_scan_flops)
def attention_pairs(q_len: int, k_len: int, is_causal: bool = False,
                    attn_mask: Optional[torch.Tensor] = None, batch_heads: int = 1) -> int:
    """(query, key) pairs one attention call computes, by the zoo's convention: the pairs its
    mask allows. Causal (query i sees keys <= i) is a triangle; a mask counts its allowed entries
    (True, or finite for an additive float mask; SDPA hands the kernel a boolean mask as a float
    one with -inf), broadcast over batch and heads; no mask counts all pairs."""
    if is_causal:
        per = sum(min(i + 1, k_len) for i in range(q_len)) if q_len != k_len else q_len * (q_len + 1) // 2
        return batch_heads * per
    if attn_mask is not None:
        allowed = attn_mask if attn_mask.dtype == torch.bool else attn_mask != float("-inf")
        allowed = allowed.expand(*allowed.shape[:-2], q_len, k_len)
        return int(allowed.sum()) * (batch_heads // max(1, allowed[..., 0, 0].numel()))
    return batch_heads * q_len * k_len


# ----------------------------------------------------------------------------- conventions

CONVENTIONS = ("allowed", "computed")
_CONVENTION: contextvars.ContextVar = contextvars.ContextVar("zoo_flop_convention", default="allowed")


def check_convention(name: str) -> str:
    if name not in CONVENTIONS:
        raise ValueError(f"FLOP convention must be one of {CONVENTIONS}, got {name!r}")
    return name


def current_convention() -> str:
    """The attention convention the FLOP formulas use right now ("allowed" unless set)."""
    return _CONVENTION.get()


@contextlib.contextmanager
def flop_convention(name: str) -> Iterator[None]:
    """Count attention by convention `name` ("allowed" or "computed") inside the block."""
    token = _CONVENTION.set(check_convention(name))
    try:
        yield
    finally:
        _CONVENTION.reset(token)


# The CPU flash kernel's blocking (aten/src/ATen/native/cpu/FlashAttentionKernel.cpp, torch 2.x):
# queries in blocks of 32 / 64 / 256 rows (query length < 192 / < 768 / longer), keys in blocks
# of 512 (or all keys, if fewer). A causal query block [m, m + qb) runs every key block that
# starts before m + qb, each block whole (`kvBlockSize = min(kvSplitSize, kvSize - n)`); the
# causal entries above the diagonal are multiplied and then overwritten with -inf. With a mask
# (or no causal flag) every key block runs for every query. Measured on torch 2.14.1, 1 thread,
# 12 heads x 64: causal / non-causal time is 1.08 at T=200 (whole blocks: 1.0; blocks cut at
# the diagonal: 0.65) and 0.77 at T=1024 (whole blocks: 0.75). The fp16 path that packs K/V
# for oneDNN rounds key blocks up to 64 more; it is not modelled (the zoo counts fp32 / bf16).
_KV_SPLIT = 512


def _q_split(q_len: int) -> int:
    return 256 if q_len >= 768 else 64 if q_len >= 192 else 32


def cpu_sdpa_pairs(q_len: int, k_len: int, is_causal: bool = False, batch_heads: int = 1) -> int:
    """(query, key) pairs the CPU SDPA kernel multiplies (QK^T, and the same pairs in AV)."""
    if not is_causal:
        return batch_heads * q_len * k_len  # a mask changes values, not the blocks that run
    qs, kvs = min(_q_split(q_len), q_len), min(_KV_SPLIT, k_len)
    per = 0
    for m in range(0, q_len, qs):
        rows = min(qs, q_len - m)
        keys = min(m + rows, k_len)                   # num_keys: the causal reach of the block
        per += rows * min(-(-keys // kvs) * kvs, k_len)  # whole key blocks up to it
    return batch_heads * per


def convention_pairs(q_len: int, k_len: int, is_causal: bool = False, attn_mask: Optional[torch.Tensor] = None,
                     batch_heads: int = 1, convention: Optional[str] = None) -> int:
    """Pairs one SDPA call counts under `convention` (the current one when None)."""
    if check_convention(convention or current_convention()) == "computed":
        return cpu_sdpa_pairs(q_len, k_len, is_causal, batch_heads)
    return attention_pairs(q_len, k_len, is_causal, attn_mask, batch_heads)


def _cpu_sdpa_flops(query, key, value, dropout_p=0.0, is_causal=False, *, attn_mask=None, scale=None,
                    out_val=None, **kwargs) -> int:
    """QK^T and AV over the pairs the current convention counts. "allowed": dense causal
    attention and packed queries under a causal mask count the same pairs (torch's own formula
    counts every SDPA as the full square, causal or not); "computed": the kernel's blocks."""
    b, h, sq, d = query.shape
    sk, dv = key.shape[-2], value.shape[-1]
    pairs = convention_pairs(sq, sk, bool(is_causal), attn_mask, b * h)
    return 2 * pairs * d + 2 * pairs * dv


# CPU SDPA (torch counts it as 0): by the current convention (above)
_register(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu, _cpu_sdpa_flops, get_raw=True)
_register(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward, _fc.sdpa_backward_flop,
          get_raw=True)


def _mkldnn_conv_flops(x_shape, w_shape, bias, padding, stride, dilation, groups, *, out_shape=None,
                       **kwargs) -> int:
    return _fc.conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


# oneDNN's conv called directly (zoo.families.dhvn.conv_branch.PointwiseConv2d): torch's conv formula
_register(torch.ops.aten.mkldnn_convolution, _mkldnn_conv_flops)


# ----------------------------------------------------------------------------- dispatch

def _bind(fn: Callable, args, kwargs) -> dict:
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound.arguments


def counted_gated_delta_rule(*args, **kwargs):
    """`chunk_gated_delta_rule` through zoo::gated_delta_rule (same arguments and results)."""
    a = _bind(_delta_chunk.chunk_gated_delta_rule, args, kwargs)
    o, final = torch.ops.zoo.gated_delta_rule(
        a["q"], a["k"], a["v"], a["g"], a["beta"], None if a["scale"] is None else float(a["scale"]),
        a["initial_state"], bool(a["output_final_state"]), int(a["chunk_size"]))
    return o, (final if a["output_final_state"] else None)


def counted_selective_scan(*args, **kwargs):
    a = _bind(_scan_chunk.selective_scan, args, kwargs)
    return torch.ops.zoo.selective_scan(a["u"], a["delta"], a["A"], a["B"], a["C"], a["D"], a["z"],
                                        bool(a["reverse"]), int(a["block"]))


def counted_ssd_scan(*args, **kwargs):
    a = _bind(_scan_chunk.ssd_scan, args, kwargs)
    head_dim = None if a["head_dim"] is None else int(a["head_dim"])
    return torch.ops.zoo.ssd_scan(a["u"], a["delta"], a["A_head"], a["B"], a["C"], a["D"], a["z"],
                                  bool(a["reverse"]), head_dim, int(a["chunk_size"]))
